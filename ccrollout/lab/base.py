"""The lab's ground floor: where its files are, its state, running commands, ending
processes, and the lock that serialises lab operations. Imports nothing else of the lab."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

from ccrollout.errors import LabFailed
from ccrollout.host.osutil import pid_alive, write_atomically

DEFAULT_LAB_DIR = "/run/ccrollout-lab"
_KILL_GRACE = 2.0
_LOCK_TIMEOUT = 120.0
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


# --- where things are -------------------------------------------------------------------

def lab_dir() -> Path:
    """The lab directory: $CCROLLOUT_LAB_DIR or /run/ccrollout-lab."""
    text = os.environ.get("CCROLLOUT_LAB_DIR", "").strip() or DEFAULT_LAB_DIR
    if not _SAFE_PATH.match(text) or "/../" in text + "/":
        raise LabFailed(f"lab directory {text!r} must be an absolute path of letters, "
                        "digits, '.', '_', '-' and '/'")
    return Path(os.path.normpath(text))


# Everything the lab puts into its directory; `down` removes these and nothing else.
LAB_ENTRIES = {"lab.json", "id_ed25519", "id_ed25519.pub", "authorized_keys", "known_hosts",
               "ssh_config", "inventory.ini", "bpffs", "hosts", "sshd", "traffic", "monitoring"}
# What a crash in write_atomically leaves beside a file (and earlier versions' ".tmp").
_TEMPORARY_SUFFIX = re.compile(r"\.(?:[0-9a-f]+\.partial|tmp)$")


def is_lab_entry(entry: str) -> bool:
    """Whether the lab made this entry of its directory (a temporary of its files counts)."""
    return _TEMPORARY_SUFFIX.sub("", entry) in LAB_ENTRIES


class LabPaths:
    def __init__(self, root: Path):
        self.root = root
        self.state = root / "lab.json"
        self.key = root / "id_ed25519"
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts = root / "known_hosts"
        self.ssh_config = root / "ssh_config"
        self.inventory = root / "inventory.ini"
        self.bpffs = root / "bpffs"
        self.traffic = root / "traffic"

    def state_dir(self, name):        # the host's ccrollout_state_dir
        return self.root / "hosts" / name

    def sshd_dir(self, name):         # the lab's own files for that host's sshd
        return self.root / "sshd" / name


# --- running commands -----------------------------------------------------------------

def run(argv, *, input=None, check=True, timeout=30.0) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise LabFailed(f"{argv[0]} not found: run scripts/setup.sh "
                        "(iproute2, nftables, openssh-server, util-linux)") from None
    except subprocess.TimeoutExpired:
        raise LabFailed(f"timed out after {timeout:g}s: {shlex.join(map(str, argv))}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabFailed(f"{shlex.join(map(str, argv))} failed: "
                        f"{detail[-1] if detail else 'exit code %d' % proc.returncode}")
    return proc


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabFailed("the lab needs root (network namespaces, mounts, sshd)")


# --- processes ----------------------------------------------------------------------------

def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def file_identity(path: str):
    """(device, inode) of path, or None: tells namespaces (and directories) apart."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and pid_alive(int(entry), marker):
            found.append(int(entry))
    return found


def kill(pids) -> list[int]:
    """SIGTERM, a short grace, then SIGKILL. Returns the pids that still run."""
    pids = [p for p in set(pids) if pid_alive(p)]
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE), (signal.SIGKILL, _KILL_GRACE)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)     # reap it if it is our own child
            pids = [p for p in pids if pid_alive(p)]
            if pids:
                time.sleep(0.02)
        if not pids:
            break
    return pids


# --- the lock and the lab's state ---------------------------------------------------------

@contextlib.contextmanager
def locked(paths: LabPaths, create: bool):
    """Serialise up/down/impair/traffic between processes: flock on the lab dir itself.
    Yields False (and locks nothing) when the dir does not exist and create is False."""
    deadline = time.monotonic() + _LOCK_TIMEOUT
    while True:
        if create:
            paths.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            fd = os.open(paths.root, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if create:
                continue
            yield False
            return
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LabFailed(f"another lab operation holds {paths.root} "
                                    f"for over {_LOCK_TIMEOUT:g}s") from None
                time.sleep(0.1)
        # `down` may have removed the directory while we waited: lock the new one then.
        if file_identity(str(paths.root)) == file_identity(f"/proc/self/fd/{fd}"):
            break
        os.close(fd)
    try:
        yield True
    finally:
        os.close(fd)


def load_state(paths: LabPaths) -> dict:
    try:
        return json.loads(paths.state.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LabFailed(f"{paths.state} is unreadable ({exc}); run `ccrollout lab down`") from None


def save_state(paths: LabPaths, state: dict) -> None:
    write_atomically(paths.state, json.dumps(state, indent=2, sort_keys=True) + "\n", mode=0o644)
