"""Reaching hosts: one agent per host per command, bounded fan-out.

- targets.py: how a host is reached, from its inventory variables (checked before any
  host is reached: errors and warnings);
- agent.py: the agent's protocol over whatever carries it (HostError, Timeouts);
- ssh.py: sessions over SSH (fabric), with host keys checked (hostkeys.py) and jump hosts
  and proxy commands (sshargs.py);
- local.py: ansible_connection=local as a child process, and the in-process LocalSession;
- fanout.py: many hosts at once.
"""

from .agent import CONNECT_TIMEOUT, COMMAND_TIMEOUT, AgentSession, HostError, Timeouts
from .fanout import Outcome, fan_out
from .local import LocalSession, ProcessSession
from .ssh import Session
from .targets import DEFAULT_PYTHON, DEFAULT_STATE_DIR, LOCAL, Target, check_targets

__all__ = [
    "AgentSession", "COMMAND_TIMEOUT", "CONNECT_TIMEOUT", "DEFAULT_PYTHON", "DEFAULT_STATE_DIR", "HostError",
    "LOCAL", "LocalSession", "Outcome", "ProcessSession", "Session", "Target", "Timeouts", "check_targets",
    "connect", "fan_out",
]


def connect(target: Target, timeouts: Timeouts = Timeouts()) -> AgentSession:
    """A session to TARGET: over SSH, or a local child process for ansible_connection=local."""
    if target.connection == LOCAL:
        return ProcessSession(target, timeouts)
    return Session(target, timeouts)
