"""Reaching hosts: fabric connections, one command per call, bounded fan-out.

A thin layer over fabric's Connection. Host keys are checked (paramiko's
RejectPolicy against the system's and the inventory's known_hosts), never
added silently. Every call to a host is one SSH command: it sends one batch
of actions (with any object they need) and reads one JSON answer.
"""

import json
import os
import posixpath
import shlex
import socket
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
    _host_code_sent: bool = field(init=False, default=False)  # sent once per session

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

    # -- the host side -------------------------------------------------------

    def call(self, actions: list[dict], on_progress=None) -> list[dict]:
        """Run one batch of actions on the host in one SSH command; the host side's results,
        one per action run. The first call of a session carries the host side itself.
        ON_PROGRESS receives what long operations report before they answer."""
        request = json.dumps({"state_dir": self.target.state_dir, "actions": actions}).encode()
        stdout, stderr, exit_code = self._run_host_side(request, not self._host_code_sent, on_progress)
        if exit_code == hostcode.EXIT_MISSING:  # removed behind our back: send it again
            stdout, stderr, exit_code = self._run_host_side(request, True, on_progress)
        self._host_code_sent = True
        try:
            answer = json.loads(stdout)
        except ValueError:
            detail = (stderr or stdout).decode(errors="replace").strip().splitlines()[-3:]
            raise HostError(self.target.name, f"the host side failed (exit {exit_code}): "
                            + " / ".join(detail)) from None
        return answer["results"]

    def _run_host_side(self, request: bytes, with_code: bool, on_progress) -> tuple[bytes, bytes, int]:
        code = hostcode.bundle()[0] if with_code else b""
        remote = posixpath.join(self.target.state_dir, hostcode.remote_name())
        command = [self.target.python, "-c", hostcode.BOOTSTRAP, remote, str(len(code))]
        if self.target.become:
            command = ["sudo", "-n", "--", *command]
        try:
            return self._exec(shlex.join(command), code + request, on_progress)
        except socket.timeout:
            raise HostError(self.target.name, f"the host side did not answer within {COMMAND_TIMEOUT}s") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise HostError(self.target.name, f"connection lost: {exc}") from None

    def _exec(self, command: str, request: bytes, on_progress=None) -> tuple[bytes, bytes, int]:
        """Run COMMAND with REQUEST on its stdin. fabric's own run() polls its stdin
        stream and costs about half a second a call; a bare session does not."""
        self.open()
        channel = self.connection.create_session()
        try:
            channel.settimeout(COMMAND_TIMEOUT)
            channel.exec_command(command)
            channel.sendall(request)
            channel.shutdown_write()
            answer = []
            for line in channel.makefile("rb"):
                if line.startswith(b'{"progress"'):
                    if on_progress:
                        on_progress(json.loads(line)["progress"])
                else:
                    answer.append(line)
            stdout = b"".join(answer)
            stderr = channel.makefile_stderr("rb").read()
            return stdout, stderr, channel.recv_exit_status()
        finally:
            channel.close()


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

    def failure(self) -> str | None:
        """Why this host's batch failed (unreachable, or the first action the host side
        refused, with its log), or None when every action succeeded."""
        if not self.ok:
            return self.error
        for result in self.value:
            if not result.get("ok"):
                log = result.get("log", "").strip()
                return f"{self.host}: {result['error']}" + ("\n    " + log.replace("\n", "\n    ") if log else "")
        return None


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
    pool = ThreadPoolExecutor(max_workers=max(1, min(forks, len(sessions))))
    try:
        return dict(zip(sessions, pool.map(one, sessions)))
    finally:
        # Not waiting: on Ctrl-C the caller closes the sessions, which is what ends the calls.
        pool.shutdown(wait=False, cancel_futures=True)
