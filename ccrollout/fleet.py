"""Reaching hosts: fabric connections, bounded fan-out, pushes checked by digest.

A thin layer over fabric's Connection.run and put. Host keys are checked
(paramiko's RejectPolicy against the system's and the inventory's
known_hosts), never added silently. Every call to a host sends one batch of
actions to the host side and reads one JSON answer.
"""

import io
import json
import os
import posixpath
import shlex
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import fabric
import paramiko

from . import hostcode
from .errors import EXIT_HOST_FAILED, UserError

DEFAULT_STATE_DIR = "/var/lib/ccrollout"
DEFAULT_PYTHON = "/usr/bin/python3"
CONNECT_TIMEOUT = 10
COMMAND_TIMEOUT = 120


class HostError(UserError):
    """A host could not be reached, or its host side did not answer properly."""

    exit_code = EXIT_HOST_FAILED

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host


@dataclass(frozen=True)
class Target:
    """How to reach one host, from its inventory variables."""

    name: str
    address: str
    port: int | None = None  # None: ~/.ssh/config's Port for the address, else 22 (as Ansible)
    user: str | None = None  # None: ~/.ssh/config's User for the address, else the local user
    key_file: str | None = None
    known_hosts: str | None = None
    python: str = DEFAULT_PYTHON
    state_dir: str = DEFAULT_STATE_DIR
    become: bool = False

    @classmethod
    def from_vars(cls, name: str, host_vars: dict) -> "Target":
        def text(key, default=None):
            value = host_vars.get(key, default)
            return None if value is None else str(value)
        return cls(
            name=name,
            address=text("ansible_host", name),
            port=None if host_vars.get("ansible_port") is None else int(host_vars["ansible_port"]),
            user=text("ansible_user"),
            key_file=text("ansible_ssh_private_key_file"),
            known_hosts=text("ccrollout_known_hosts"),
            python=text("ansible_python_interpreter", DEFAULT_PYTHON),
            state_dir=text("ccrollout_state_dir", DEFAULT_STATE_DIR),
            become=str(host_vars.get("ansible_become", False)).lower() in ("1", "true", "yes"),
        )


@dataclass
class Session:
    """One SSH connection to a host, kept open for the whole command."""

    target: Target
    connection: fabric.Connection = field(init=False)
    _host_code: str | None = field(init=False, default=None)  # pushed once per session

    def __post_init__(self) -> None:
        target = self.target
        connect_kwargs = {"banner_timeout": CONNECT_TIMEOUT,
                          "auth_timeout": CONNECT_TIMEOUT}
        if target.key_file:
            connect_kwargs["key_filename"] = os.path.expanduser(target.key_file)
        # user and port only when the inventory sets them: given, they override ~/.ssh/config.
        given = {key: value for key, value in (("user", target.user), ("port", target.port))
                 if value is not None}
        self.connection = fabric.Connection(target.address, **given,
                                            connect_kwargs=connect_kwargs,
                                            connect_timeout=CONNECT_TIMEOUT)
        client = self.connection.client
        # fabric adds unknown host keys by default; a fleet tool must refuse them.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if target.known_hosts:
            try:
                client.load_host_keys(os.path.expanduser(target.known_hosts))
            except OSError as exc:
                raise HostError(target.name, f"cannot read known_hosts {target.known_hosts}: {exc}") from None

    def open(self) -> None:
        try:
            self.connection.open()
        except paramiko.BadHostKeyException:
            raise HostError(self.target.name, "host key does not match known_hosts (refusing to connect)") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostError(self.target.name, f"host key of {self.target.address} is not in known_hosts "
                                "(refusing to connect)") from None
            raise HostError(self.target.name, f"SSH failed: {exc}") from None
        except (OSError, socket.timeout, EOFError) as exc:
            raise HostError(self.target.name, f"unreachable: {exc}") from None

    def close(self) -> None:
        self.connection.close()

    # -- files ---------------------------------------------------------------

    def _sftp(self):
        self.open()
        return self.connection.sftp()

    def _ensure_remote_file(self, sftp, remote: str, data: bytes) -> bool:
        """Put DATA at REMOTE unless a file of that size is there; True when sent."""
        try:
            if sftp.stat(remote).st_size == len(data):
                return False
        except FileNotFoundError:
            pass
        directory = posixpath.dirname(remote)
        _makedirs(sftp, directory)
        partial = f"{remote}.partial"
        sftp.putfo(io.BytesIO(data), partial)
        sftp.posix_rename(partial, remote)  # never a half-written file under its final name
        return True

    def push_object(self, local_path: str, digest: str) -> bool:
        """Send an object to STATE_DIR/objects/DIGEST.bpf.o; the host side checks the digest."""
        remote = posixpath.join(self.target.state_dir, "objects", f"{digest}.bpf.o")
        with open(local_path, "rb") as handle:
            data = handle.read()
        try:
            return self._ensure_remote_file(self._sftp(), remote, data)
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.target.name, f"cannot push {os.path.basename(local_path)}: {exc}") from None

    def _host_code_path(self) -> str:
        if self._host_code:
            return self._host_code
        data, digest = hostcode.bundle()
        remote = posixpath.join(self.target.state_dir, f"ccrollout-host-{digest[:16]}.pyz")
        try:
            sftp = self._sftp()
            if self._ensure_remote_file(sftp, remote, data):
                for entry in sftp.listdir(self.target.state_dir):  # earlier versions are of no use
                    if entry.startswith("ccrollout-host-") and entry != posixpath.basename(remote):
                        sftp.remove(posixpath.join(self.target.state_dir, entry))
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.target.name, f"cannot push the host side: {exc}") from None
        self._host_code = remote
        return remote

    # -- the host side -------------------------------------------------------

    def call(self, actions: list[dict]) -> list[dict]:
        """Run one batch of actions on the host; the host side's results, one per action run."""
        command = [self.target.python, self._host_code_path()]
        if self.target.become:
            command = ["sudo", "-n", "--", *command]
        request = json.dumps({"state_dir": self.target.state_dir, "actions": actions}).encode()
        try:
            stdout, stderr, exit_code = self._exec(shlex.join(command), request)
        except socket.timeout:
            raise HostError(self.target.name, f"the host side did not answer within {COMMAND_TIMEOUT}s") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise HostError(self.target.name, f"connection lost: {exc}") from None
        try:
            answer = json.loads(stdout)
        except ValueError:
            detail = (stderr or stdout).decode(errors="replace").strip().splitlines()[-3:]
            raise HostError(self.target.name, f"the host side failed (exit {exit_code}): "
                            + " / ".join(detail)) from None
        return answer["results"]


    def _exec(self, command: str, request: bytes) -> tuple[bytes, bytes, int]:
        """Run COMMAND with REQUEST on its stdin. fabric's own run() polls its stdin
        stream and costs about half a second a call; a bare session does not."""
        self.open()
        channel = self.connection.create_session()
        try:
            channel.settimeout(COMMAND_TIMEOUT)
            channel.exec_command(command)
            channel.sendall(request)
            channel.shutdown_write()
            stdout = channel.makefile("rb").read()
            stderr = channel.makefile_stderr("rb").read()
            return stdout, stderr, channel.recv_exit_status()
        finally:
            channel.close()


def _makedirs(sftp, directory: str) -> None:
    parts, current = directory.strip("/").split("/"), ""
    for part in parts:
        current += "/" + part
        try:
            if not stat.S_ISDIR(sftp.stat(current).st_mode):
                raise OSError(f"{current} exists and is not a directory")
        except FileNotFoundError:
            sftp.mkdir(current, 0o700)


@dataclass
class Outcome:
    """What one host did in one phase, and how long it took."""

    host: str
    value: object = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def fan_out(sessions: dict[str, Session], work, forks: int) -> dict[str, Outcome]:
    """Run WORK(session) on every host, at most FORKS at a time; never raises for one host."""
    def one(name: str) -> Outcome:
        started = time.monotonic()
        try:
            value = work(sessions[name])
            return Outcome(name, value=value, seconds=time.monotonic() - started)
        except HostError as exc:
            return Outcome(name, error=str(exc), seconds=time.monotonic() - started)
        except Exception as exc:  # one host's surprise must not abandon the others mid-change
            return Outcome(name, error=f"{name}: internal error: {exc!r}", seconds=time.monotonic() - started)
    if not sessions:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(sessions)))) as pool:
        return dict(zip(sessions, pool.map(one, sessions)))
