"""ansible_connection=local: the host side of this machine as a child process, through the same
bootstrap (digest checks included) and protocol as over SSH; and ansible_python_interpreter=auto.
Only requests that change nothing are sent (facts, counters)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccrollout import fleet, hostcode
from ccrollout.host import protocol

REPO = Path(__file__).resolve().parents[2]
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def pyenv_python(minor: int) -> str | None:
    found = sorted(PYENV_VERSIONS.glob(f"3.{minor}.*/bin/python3"))
    return str(found[-1]) if found else None


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


def local_target(state_dir, **host_vars) -> fleet.Target:
    return fleet.Target.from_vars("here", {"ansible_connection": "local", "ccrollout_state_dir": str(state_dir),
                                           **host_vars})


def test_a_local_host_runs_the_same_bootstrap_and_agent_as_a_child_process(state_dir):
    session = fleet.connect(local_target(state_dir), fleet.Timeouts(command=30))
    assert isinstance(session, fleet.ProcessSession)
    try:
        (facts,) = session.call([protocol.action("facts")])
        assert facts.ok and facts.facts["netns"] == str(os.stat("/proc/self/ns/net").st_ino)
        assert session.agents_started == 1 and session.code_sent == 1  # it asked for the zip
        for _ in range(3):
            (counters,) = session.call([protocol.action("counters")])
            assert counters.ok
        assert session.agents_started == 1  # one agent answers every later message
    finally:
        session.close()
    pyz = state_dir / hostcode.remote_name()
    assert pyz.read_bytes() == hostcode.bundle()[0] and oct(pyz.stat().st_mode & 0o777) == "0o600"
    pyz.write_bytes(pyz.read_bytes() + b"planted")  # a copy that is not the controller's is never run
    again = fleet.connect(local_target(state_dir))
    try:
        (counters,) = again.call([protocol.action("counters")])
        assert counters.ok and again.agents_started == 1 and again.code_sent == 1
    finally:
        again.close()
    assert pyz.read_bytes() == hostcode.bundle()[0]


def test_a_local_state_directory_others_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    session = fleet.connect(local_target(shared))
    try:
        with pytest.raises(fleet.HostError, match="no one else may write"):
            session.call([protocol.action("facts")])
    finally:
        session.close()


def test_auto_finds_a_python_on_the_host(state_dir):
    session = fleet.connect(local_target(state_dir, ansible_python_interpreter="auto"))
    try:
        (facts,) = session.call([protocol.action("facts")])
    finally:
        session.close()
    assert tuple(map(int, facts.facts["python"].split(".")[:2])) >= (3, 8)


def discover(candidates) -> subprocess.CompletedProcess:
    script = hostcode.discovery_script(candidates)
    return subprocess.run(["sh", "-c", script, "sh", "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True, timeout=60)


def test_discovery_skips_pythons_older_than_3_8_and_says_when_there_is_none(tmp_path):
    old, new = pyenv_python(7), pyenv_python(9)
    if not (old and new):
        pytest.skip("needs pyenv's 3.7 and 3.9")
    found = discover([str(tmp_path / "missing"), old, new])
    assert found.returncode == 0 and found.stdout.strip() == "(3, 9)", found.stderr
    none = discover([old, "python2.5"])
    assert none.returncode == hostcode.EXIT_NO_PYTHON
    assert none.stderr.strip() == f"no Python 3.8 or newer on this host (tried {old} python2.5)"


def test_an_older_python_named_by_the_inventory_is_refused_by_name(state_dir):
    old = pyenv_python(7)
    if not old:
        pytest.skip("needs pyenv's 3.7")
    session = fleet.connect(local_target(state_dir, ansible_python_interpreter=old))
    try:
        with pytest.raises(fleet.HostError, match=r"python 3.7 is too old: the host side needs 3.8 or newer"):
            session.call([protocol.action("facts")])
    finally:
        session.close()


def test_facts_of_a_local_host_through_the_command_line(tmp_path, state_dir):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"here ansible_connection=local ccrollout_state_dir={state_dir}\n")
    ran = subprocess.run([sys.executable, "-m", "ccrollout.cli", "facts", "--json", "-i", str(inventory)],
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "CCROLLOUT_HOME": str(tmp_path / "home")})
    assert ran.returncode == 0, ran.stderr
    facts = json.loads(ran.stdout)["here"]
    assert facts["netns"] == str(os.stat("/proc/self/ns/net").st_ino) and "counters" in facts
