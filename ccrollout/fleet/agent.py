"""One host agent for the whole command, whatever carries its stdin and stdout.

An AgentSession starts the bootstrap (hostcode) once and then exchanges JSON lines with
the agent (host/protocol.py): a call is a message, not a process. The zip travels only
when the host lacks that version: the bootstrap asks for it on the same channel. What
carries the lines is a subclass's business: an SSH channel (ssh.py) or a local child
process (local.py); both give an AgentStream.
"""

from __future__ import annotations

import json
import logging
import posixpath
import socket
import time
from dataclasses import dataclass
from typing import Protocol

from .. import hostcode
from ..errors import EXIT_HOST_FAILED, UserError
from ..host import protocol
from .targets import Target

# -vv: each message to and from a host (the CLI sets the level).
_log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10
COMMAND_TIMEOUT = 120


class HostError(UserError):
    """A host could not be reached, or its host side did not answer properly."""

    exit_code = EXIT_HOST_FAILED

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host


@dataclass(frozen=True)
class Timeouts:
    """How long to wait for a host: to connect (TCP, banner, authentication), and for the
    agent's next line while an action runs."""

    connect: float = CONNECT_TIMEOUT
    command: float = COMMAND_TIMEOUT


class AgentStream(Protocol):
    """The agent's stdin and stdout while it runs. send and readline raise socket.timeout
    when the agent stays silent for the command timeout, OSError when it is gone."""

    def send(self, data: bytes) -> None: ...

    def readline(self) -> bytes: ...

    def finish(self) -> tuple[int, str]:
        """Close its stdin and wait: its exit status (-1 if it never says) and the last of
        what it wrote on stderr."""

    def stop(self) -> None:
        """End it, and our side of it, without waiting for an answer."""


def _outcomes(answer: dict) -> str:
    """'facts ok, counters refused' from an answer, for -vv (never trusted beyond printing)."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        return "no results"
    return ", ".join(f"{result.get('op')} {'ok' if result.get('ok') else 'refused'}"
                     for result in results if isinstance(result, dict)) or "no results"


class AgentSession:
    """The protocol of one agent; subclasses say how it starts (_launch)."""

    commands_run = 0  # agents started by every session of this process (bench/fleet.py reports it)

    def __init__(self, target: Target, timeouts: Timeouts = Timeouts()):
        self.target, self.timeouts = target, timeouts
        self._stream: AgentStream | None = None
        self._fresh_agent = False
        self._next_id = 1
        self._reply_bytes = 0  # the last answer's size, for -vv
        self.agents_started = 0  # agents this session started: one, unless one was lost
        self.code_sent = 0  # times the zip travelled: on first contact, or when a host's copy is not ours

    def _launch(self, command: list[str]) -> AgentStream:
        raise NotImplementedError

    def close(self) -> None:
        self._stop_agent()

    def call(self, actions: list[dict], on_progress=None) -> list[protocol.Answer]:
        """Run one message of ACTIONS (built with protocol.action) on the host; the answers,
        one per action run (the first failure ends the message). ON_PROGRESS receives what
        long operations report before they answer."""
        message_id = self._next_id
        self._next_id += 1
        line = (json.dumps(protocol.message(message_id, self.target.state_dir, actions)) + "\n").encode()
        started = time.monotonic()
        _log.debug("to %s: message %d: %s (%d bytes)", self.target.name, message_id,
                   ", ".join(str(action.get("op")) for action in actions), len(line))
        try:
            answer = self._exchange(line, message_id, on_progress)
            if answer is None:  # the agent never started, or ended: which reason?
                raise self._why_agent_ended()
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("from %s: answer %d in %.0f ms: %s (%d bytes)", self.target.name, message_id,
                           (time.monotonic() - started) * 1000, _outcomes(answer), self._reply_bytes)
        except socket.timeout:
            self._stop_agent()
            raise HostError(self.target.name, f"the host side did not answer within {self.timeouts.command:g}s") from None
        except (OSError, EOFError) as exc:
            self._stop_agent()
            raise HostError(self.target.name, f"connection lost: {exc}") from None
        try:
            return [protocol.answer(result) for result in answer["results"]]
        except (KeyError, TypeError, protocol.ProtocolError) as exc:
            raise HostError(self.target.name, f"the host side answered out of protocol: {exc}") from None

    def _why_agent_ended(self) -> HostError:
        status, detail = self._ended_agent()
        if status == hostcode.EXIT_OLD_PYTHON:
            return HostError(self.target.name, f"{self.target.python}: {detail or 'too old'}")
        if status == hostcode.EXIT_NO_PYTHON:
            return HostError(self.target.name, f"ansible_python_interpreter={self.target.python}: {detail}")
        return HostError(self.target.name, f"the host side failed (exit {status}): {detail}")

    def _exchange(self, line: bytes, message_id: int, on_progress) -> dict | None:
        """Send LINE to the agent and read until its answer; None when the agent is gone."""
        if self._stream is None:
            self._start_agent()
        # Only a bootstrap that has not yet run its agent may ask for the zip, and only once.
        may_ask, self._fresh_agent = self._fresh_agent, False
        try:
            self._stream.send(line)
        except OSError:
            return None  # it ended before reading: the answer says why
        while True:
            reply = self._stream.readline()
            if not reply:
                return None
            if may_ask and reply.strip() == hostcode.NEED_CODE.encode():
                may_ask = False  # the zip, then the message it set aside
                self.code_sent += 1
                try:
                    self._stream.send(hostcode.bundle()[0] + line)
                except OSError:
                    return None
                continue
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
            self._reply_bytes = len(reply)
            return document

    def _start_agent(self) -> None:
        self._stop_agent()
        remote = posixpath.join(self.target.state_dir, hostcode.remote_name())
        command = hostcode.agent_command(self.target.python, remote)
        if self.target.become:
            user = ["-u", self.target.become_user] if self.target.become_user else []
            command = ["sudo", "-n", *user, "--", *command]
        self._stream = self._launch(command)
        self.agents_started += 1
        self._fresh_agent = True
        AgentSession.commands_run += 1

    def _ended_agent(self) -> tuple[int, str]:
        stream = self._stream
        try:
            return stream.finish()
        finally:
            self._stop_agent()

    def _stop_agent(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
