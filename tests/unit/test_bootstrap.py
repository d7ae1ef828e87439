"""The bootstrap that starts the host agent: it runs only what the controller named, from a
directory nobody else may write. Run here with this machine's python3, as a host would."""

import json
import os
import subprocess
import sys

from ccrollout import hostcode

ZIP, DIGEST = hostcode.bundle()


def bootstrap(state_dir, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(hostcode.agent_command(sys.executable, str(state_dir / hostcode.remote_name())),
                          input=stdin, capture_output=True, timeout=60)


def line(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


def test_a_host_without_the_agent_asks_for_it_on_the_same_channel_then_keeps_it_private(tmp_path):
    state_dir = tmp_path / "state"
    first = line({"id": 3, "state_dir": str(state_dir), "actions": [{"op": "watch_stop"}]})
    # As the controller does: the first message, then (asked) the zip and that message again.
    answered = bootstrap(state_dir, first + ZIP + first)
    assert answered.returncode == 0, answered.stderr
    asked, answer = answered.stdout.splitlines()
    assert asked.decode() == hostcode.NEED_CODE and json.loads(answer)["id"] == 3
    kept = state_dir / hostcode.remote_name()
    assert kept.read_bytes() == ZIP and kept.stat().st_mode & 0o777 == 0o600
    assert state_dir.stat().st_mode & 0o777 == 0o700
    unpacked = state_dir / kept.name.removesuffix(".pyz")
    assert sorted(p.name for p in state_dir.iterdir()) == [unpacked.name, kept.name]  # no temporary left
    again = bootstrap(state_dir, first)  # a host that holds it asks nothing
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == 3


def test_the_agent_runs_from_its_compiled_copy_and_a_changed_copy_is_unpacked_again(tmp_path):
    state_dir = tmp_path / "state"
    first = line({"id": 1, "state_dir": str(state_dir), "actions": [{"op": "drift"}]})
    assert bootstrap(state_dir, first + ZIP + first).returncode == 0
    unpacked = state_dir / hostcode.remote_name().removesuffix(".pyz")
    agent = unpacked / "ccrollout" / "host" / "agent.py"
    assert list((agent.parent / "__pycache__").glob("agent.*.pyc"))  # compiled once, when unpacked
    # Where it runs from shows in a traceback's file names: a host side that fails to import.
    agent.write_text(agent.read_text() + "\nraise SystemExit('ran the planted copy')\n")
    ran = bootstrap(state_dir, first)
    assert ran.returncode == 0 and b"planted" not in ran.stderr  # not its digest: unpacked again
    assert agent.read_bytes() == hostcode._members()["ccrollout/host/agent.py"]
    assert not list(state_dir.glob("*.partial")) and not list(state_dir.glob("*.stale"))


def test_a_planted_or_damaged_copy_is_never_run(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    planted = state_dir / hostcode.remote_name()
    planted.write_bytes(b"import os; os.system('touch /tmp/pwned')")  # the right name, other bytes
    first = line({"id": 1, "state_dir": str(state_dir), "actions": [{"op": "watch_stop"}]})
    asked = bootstrap(state_dir, first)  # it asks for the real one, and gets nothing
    assert asked.returncode != 0 and asked.stdout.decode().strip() == hostcode.NEED_CODE
    damaged = bootstrap(state_dir, first + ZIP[:-10] + b"0123456789" + first)
    assert damaged.returncode != 0 and b"arrived damaged" in damaged.stderr
    assert planted.read_bytes().startswith(b"import os")


def test_a_state_directory_others_may_write_is_refused(tmp_path):
    for mode in (0o777, 0o770, 0o702):
        state_dir = tmp_path / f"state-{mode:o}"
        state_dir.mkdir()
        os.chmod(state_dir, mode)
        refused = bootstrap(state_dir, ZIP)
        assert refused.returncode == 1 and b"no one else may write" in refused.stderr
        assert list(state_dir.iterdir()) == []


def test_agents_that_start_together_each_answer_and_leave_one_unpacked_copy(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / hostcode.remote_name()).write_bytes(ZIP)  # held, not yet unpacked: each may unpack
    first = line({"id": 7, "state_dir": str(state_dir), "actions": [{"op": "drift"}]})
    command = hostcode.agent_command(sys.executable, str(state_dir / hostcode.remote_name()))
    agents = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(4)]
    for agent in agents:
        out, err = agent.communicate(first, timeout=60)
        assert agent.returncode == 0 and json.loads(out)["id"] == 7, err
    assert sorted(p.name for p in state_dir.iterdir()) == sorted(
        [hostcode.remote_name(), hostcode.remote_name().removesuffix(".pyz")])
