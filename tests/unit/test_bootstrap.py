"""The bootstrap that starts the host agent: it runs only what the controller named, from a
directory nobody else may write. Run here with this machine's python3, as a host would."""

import json
import os
import subprocess
import sys

from ccrollout import hostcode

ZIP, DIGEST = hostcode.bundle()


def bootstrap(state_dir, data: bytes = b"", message: dict | None = None) -> subprocess.CompletedProcess:
    stdin = data + (json.dumps(message).encode() + b"\n" if message else b"")
    return subprocess.run([sys.executable, "-c", hostcode.BOOTSTRAP, str(state_dir / hostcode.remote_name()),
                           str(len(data)), DIGEST], input=stdin, capture_output=True, timeout=60)


def test_a_host_without_the_agent_asks_for_it_then_keeps_it_private(tmp_path):
    state_dir = tmp_path / "state"
    assert bootstrap(state_dir).returncode == hostcode.EXIT_MISSING
    answered = bootstrap(state_dir, ZIP, {"id": 3, "state_dir": str(state_dir), "actions": [{"op": "watch_stop"}]})
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["id"] == 3
    kept = state_dir / hostcode.remote_name()
    assert kept.read_bytes() == ZIP and kept.stat().st_mode & 0o777 == 0o600
    assert state_dir.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in state_dir.iterdir()] == [kept.name]  # no temporary left behind


def test_a_planted_or_damaged_copy_is_never_run(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    planted = state_dir / hostcode.remote_name()
    planted.write_bytes(b"import os; os.system('touch /tmp/pwned')")  # the right name, other bytes
    assert bootstrap(state_dir).returncode == hostcode.EXIT_MISSING
    damaged = bootstrap(state_dir, ZIP[:-10] + b"0123456789")
    assert damaged.returncode != 0 and b"arrived damaged" in damaged.stderr


def test_a_state_directory_others_may_write_is_refused(tmp_path):
    for mode in (0o777, 0o770, 0o702):
        state_dir = tmp_path / f"state-{mode:o}"
        state_dir.mkdir()
        os.chmod(state_dir, mode)
        refused = bootstrap(state_dir, ZIP)
        assert refused.returncode == 1 and b"no one else may write" in refused.stderr
        assert list(state_dir.iterdir()) == []
