"""Sessions without SSH: the host side of this very machine.

- ProcessSession (ansible_connection=local): the same bootstrap and agent as over SSH, as a
  child process with pipes, so the same protocol and the same digest checks apply.
- LocalSession: the protocol in-process, to a handler (the agent's own `handle`, or a
  simulated host in tests and benchmarks). No process at all.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import tempfile

from ..host import protocol
from .agent import AgentSession, AgentStream, HostError
from .targets import Target

_READ_SIZE = 1 << 16
_STOP_GRACE = 5.0


class ProcessSession(AgentSession):
    """The host side of this machine, started as a child process (ansible_connection=local)."""

    def _launch(self, command: list[str]) -> AgentStream:
        # stderr to a file: a pipe nobody reads while the agent works could fill and stall it.
        stderr = tempfile.TemporaryFile()
        try:
            # A session of its own, as over SSH: Ctrl-C reaches the controller, which then
            # closes the session, never the agent in the middle of a change.
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                       start_new_session=True, cwd="/")
        except OSError as exc:
            stderr.close()
            raise HostError(self.target.name, f"cannot start {command[0]}: {exc.strerror or exc}") from None
        return _ProcessStream(process, stderr, self.timeouts.command)


class _ProcessStream:
    """A child's stdin and stdout, read and written with the command timeout."""

    def __init__(self, process: subprocess.Popen, stderr, wait: float):
        self.process, self.stderr, self.wait = process, stderr, wait
        self.buffer = b""

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        stdin = self.process.stdin.fileno()
        while view:
            if not select.select([], [stdin], [], self.wait)[1]:
                raise socket.timeout("the agent does not read")
            view = view[os.write(stdin, view[:_READ_SIZE]):]

    def readline(self) -> bytes:
        stdout = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            if not select.select([stdout], [], [], self.wait)[0]:
                raise socket.timeout("the agent is silent")
            chunk = os.read(stdout, _READ_SIZE)
            if not chunk:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def finish(self) -> tuple[int, str]:
        self._close_stdin()
        try:
            status = self.process.wait(timeout=self.wait)
        except subprocess.TimeoutExpired:
            status = -1
        self.stderr.seek(0)
        detail = self.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
        return status, " / ".join(detail)

    def stop(self) -> None:
        """Closing stdin ends the agent once its current action is done, as when an SSH
        channel closes; it is never killed in the middle of a change."""
        self._close_stdin()
        self.process.stdout.close()
        self.stderr.close()
        try:
            self.process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass  # still at work: it ends by itself, and subprocess reaps it later

    def _close_stdin(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
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
