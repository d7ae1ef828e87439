"""Reaching hosts: fabric connections, one agent per host per command, bounded fan-out.

A thin layer over fabric's Connection. Host keys are checked (paramiko's
RejectPolicy against the system's and the inventory's known_hosts), never
added silently. Each session starts the host agent once and then exchanges
JSON lines with it (host/protocol.py): a call is a message, not a process.
"""

import json
import os
import posixpath
import shlex
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fabric
import paramiko

from . import hostcode
from .host import protocol
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


@dataclass(frozen=True)
class Timeouts:
    """How long to wait for a host: to connect (TCP, banner, authentication), and for the
    agent's next line while an action runs."""

    connect: float = CONNECT_TIMEOUT
    command: float = COMMAND_TIMEOUT


class Session:
    """One SSH connection to a host and one agent on it, kept for the whole command.

    The agent starts on the first call and then answers one JSON line per message over
    the same channel: later calls start no process on the host. Its zip travels only when
    the host lacks that version (the bootstrap says so by exiting EXIT_MISSING)."""

    commands_run = 0  # agents started by every session of this process (bench/fleet.py reports it)

    def __init__(self, target: Target, timeouts: Timeouts = Timeouts()):
        self.target, self.timeouts = target, timeouts
        connect_kwargs = {"banner_timeout": timeouts.connect, "auth_timeout": timeouts.connect}
        if target.key_file:
            connect_kwargs["key_filename"] = os.path.expanduser(target.key_file)
        # user and port only when the inventory sets them: given, they override ~/.ssh/config.
        given = {key: value for key, value in (("user", target.user), ("port", target.port))
                 if value is not None}
        self.connection = fabric.Connection(target.address, **given, connect_kwargs=connect_kwargs,
                                            connect_timeout=timeouts.connect)
        client = self.connection.client
        # fabric adds unknown host keys by default; a fleet tool must refuse them.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if target.known_hosts:
            try:
                client.load_host_keys(os.path.expanduser(target.known_hosts))
            except OSError as exc:
                raise HostError(target.name, f"cannot read known_hosts {target.known_hosts}: {exc}") from None
        self._channel = None
        self._lines = None
        self._next_id = 1
        self.agents_started = 0  # SSH commands this session ran: one, or two on first contact

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
        self._stop_agent()
        self.connection.close()

    # -- the agent -----------------------------------------------------------

    def call(self, actions: list[dict], on_progress=None) -> list[protocol.Answer]:
        """Run one message of ACTIONS (built with protocol.action) on the host; the answers,
        one per action run (the first failure ends the message). ON_PROGRESS receives what
        long operations report before they answer."""
        message_id = self._next_id
        self._next_id += 1
        line = (json.dumps(protocol.message(message_id, self.target.state_dir, actions)) + "\n").encode()
        try:
            answer = self._exchange(line, message_id, on_progress)
            if answer is None:  # the agent never started: which reason?
                answer = self._after_agent_ended(line, message_id, on_progress)
        except socket.timeout:
            self._stop_agent()
            raise HostError(self.target.name, f"the host side did not answer within {self.timeouts.command:g}s") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._stop_agent()
            raise HostError(self.target.name, f"connection lost: {exc}") from None
        try:
            return [protocol.answer(result) for result in answer["results"]]
        except (KeyError, TypeError, protocol.ProtocolError) as exc:
            raise HostError(self.target.name, f"the host side answered out of protocol: {exc}") from None

    def _after_agent_ended(self, line: bytes, message_id: int, on_progress) -> dict:
        status, detail = self._ended_agent()
        if status == hostcode.EXIT_MISSING:  # first contact, or removed behind our back
            self._start_agent(with_code=True)
            answer = self._exchange(line, message_id, on_progress)
            if answer is not None:
                return answer
            status, detail = self._ended_agent()
        if status == hostcode.EXIT_OLD_PYTHON:
            raise HostError(self.target.name, f"{self.target.python}: {detail or 'too old'}")
        raise HostError(self.target.name, f"the host side failed (exit {status}): {detail}")

    def _exchange(self, line: bytes, message_id: int, on_progress) -> dict | None:
        """Send LINE to the agent and read until its answer; None when the agent is gone."""
        if self._channel is None:
            self._start_agent(with_code=False)
        try:
            self._channel.sendall(line)
        except OSError:
            return None  # it ended before reading: the answer says why
        while True:
            reply = self._lines.readline()
            if not reply:
                return None
            try:
                document = json.loads(reply)
            except ValueError:
                continue  # not ours (a library printing on stdout): the answer is still to come
            if not isinstance(document, dict) or document.get("id") != message_id:
                continue
            if "progress" in document:
                if on_progress:
                    on_progress(document["progress"])
                continue
            return document

    def _start_agent(self, with_code: bool) -> None:
        self._stop_agent()
        self.open()
        code, digest = hostcode.bundle()
        code = code if with_code else b""
        remote = posixpath.join(self.target.state_dir, hostcode.remote_name())
        command = [self.target.python, "-c", hostcode.BOOTSTRAP, remote, str(len(code)), digest]
        if self.target.become:
            command = ["sudo", "-n", "--", *command]
        channel = self.connection.create_session()
        channel.settimeout(self.timeouts.command)
        channel.exec_command(shlex.join(command))
        self.agents_started += 1
        Session.commands_run += 1
        if code:
            channel.sendall(code)
        self._channel, self._lines = channel, channel.makefile("rb")

    def _ended_agent(self) -> tuple[int, str]:
        """The exit status of an agent that stopped answering (-1 if it never says), and the
        last of what it wrote on stderr."""
        channel = self._channel
        try:
            channel.shutdown_write()
            stderr = channel.makefile_stderr("rb").read()
            deadline = time.monotonic() + self.timeouts.command
            while not channel.exit_status_ready() and time.monotonic() < deadline and not channel.closed:
                time.sleep(0.02)
            status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        finally:
            self._stop_agent()
        detail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        return status, " / ".join(detail)

    def _stop_agent(self) -> None:
        """Closing stdin ends the agent; closing the channel ends our side of it."""
        channel, self._channel, self._lines = self._channel, None, None
        if channel is not None:
            try:
                channel.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass


class LocalSession:
    """A session that speaks the same protocol in-process, to HANDLER (a message dict in,
    an answer dict out): the host agent's own `handle` for this machine, or a simulated
    host in tests and benchmarks. No SSH, no process."""

    def __init__(self, target: Target, handler):
        self.target, self.handler = target, handler
        self._next_id = 1
        self.agents_started = 0

    def call(self, actions: list[dict], on_progress=None) -> list[protocol.Answer]:
        message_id = self._next_id
        self._next_id += 1
        document = protocol.message(message_id, self.target.state_dir, actions)
        # Through JSON both ways, as over SSH: nothing may pass that the wire would not carry.
        answer = json.loads(json.dumps(self.handler(json.loads(json.dumps(document)), on_progress)))
        return [protocol.answer(result) for result in answer["results"]]

    def close(self) -> None:
        pass


@dataclass
class Outcome:
    """What one host did in one call, and how long it took."""

    host: str
    answers: list = None  # protocol.Answer, one per action run
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answer(self) -> protocol.Answer:
        """The last action's answer: the one a single-action call is about."""
        return self.answers[-1]

    def failure(self) -> str | None:
        """Why this host's call failed (unreachable, or the first action the host side
        refused, with its log), or None when every action succeeded."""
        if not self.ok:
            return self.error
        for answer in self.answers:
            if not answer.ok:
                log = answer.log.strip()
                return f"{self.host}: {answer.error}" + ("\n    " + log.replace("\n", "\n    ") if log else "")
        return None


def fan_out(sessions: dict[str, Session], work, forks: int) -> dict[str, Outcome]:
    """Run WORK(session) on every host, at most FORKS at a time; never raises for one host."""
    def one(name: str) -> Outcome:
        started = time.monotonic()
        try:
            answers = work(sessions[name])
            return Outcome(name, answers=answers, seconds=time.monotonic() - started)
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
