"""The controller's record of rollouts, in SQLite.

A change is written as 'intended' before it is made and marked after: 'done'
(with what it replaced), 'unchanged' (the host already was as planned, so a
rollback of this rollout leaves it alone) or 'failed'; a rollback marks it
'undone'. So after a crash the journal still names every host that may have
been changed.
"""

import functools
import getpass
import json
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path

from . import journalfile, journalrows
from .errors import EXIT_NEEDS_ATTENTION, UserError
from .host.osutil import pid_alive
from .journalfile import Access, JournalError
from .journalrows import Change
from .status import FINISHED, ChangeState, RolloutStatus

__all__ = ["Access", "Change", "HostsLocked", "Journal", "JournalError", "default_path"]


class HostsLocked(UserError):
    """Another rollout holds some of the hosts."""

    exit_code = EXIT_NEEDS_ATTENTION


def default_path() -> Path:
    base = os.environ.get("CCROLLOUT_HOME") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "ccrollout")
    return Path(base) / "journal.sqlite"


def operator() -> str:
    """Who runs this command, as user@machine, for the history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (a container's user)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:journalrows.MAX_NAME]


def _one_line(text: str) -> str:
    """TEXT as the journal's checks take it back: printable, one line, bounded."""
    line = "".join(char if char.isprintable() else " " for char in (text.splitlines() or [""])[0])
    return line[:journalrows.MAX_NAME]


def _reported(method):
    """SQLite's errors and tampered rows as one JournalError naming the journal (exit 3)."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path} {journalfile.describe(exc, self.access)}") from None
        except journalrows.TamperedRow as exc:
            raise JournalError(f"journal {self.path}: {exc}") from None
        except UnicodeDecodeError:  # sqlite hands text back as it was stored
            raise JournalError(f"journal {self.path}: holds text that is not UTF-8; damaged, or edited?") from None
    return guarded


class Journal:
    """The journal at PATH (default_path() by default), opened for ACCESS: CREATE (the
    default) makes it when missing, WRITE needs it to exist, READ never writes. Both
    writing kinds prove it writable here, before the command reaches any host."""

    def __init__(self, path: Path | str | None = None, access: Access = Access.CREATE):
        self.path = Path(path) if path else default_path()
        self.access = access
        # Threads of one controller share it; sqlite serialises the writes.
        self._db = journalfile.open_journal(self.path, access)

    def close(self) -> None:
        self._db.close()

    @_reported
    def start_rollout(self, plan: str, rollout: str, algorithm: str, digest: str, hosts=()) -> str:
        """Record a new rollout and lock HOSTS for it, in one transaction: a second controller
        reaching for any of them is refused (HostsLocked), never interleaved."""
        rollout_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self._db.execute("BEGIN IMMEDIATE")  # other controllers wait here, not in between
        try:
            self._refuse_if_locked(hosts)
            now = time.time()
            self._db.execute("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                             (rollout_id, plan, rollout, algorithm, digest, now, RolloutStatus.RUNNING))
            self._db.execute("INSERT INTO events VALUES (?, ?, NULL, 'started', ?)",
                             (rollout_id, now, json.dumps({"by": operator()})))
            self._db.executemany("INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?)",
                                 [(host, rollout_id, socket.gethostname(), os.getpid(), time.time())
                                  for host in hosts])
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return rollout_id

    def _refuse_if_locked(self, hosts) -> None:
        held = {}
        for host in hosts:
            row = self._db.execute("SELECT l.rollout_id, l.controller, l.pid, r.status FROM locks l"
                                   " JOIN rollouts r ON r.id = l.rollout_id WHERE l.host = ?", (host,)).fetchone()
            if row and row[3] not in FINISHED:  # a lock left by a finished rollout is free to take
                where = f"locks row of host {host[:40]!r}"
                key = (journalrows.rollout_id(where, row[0]), *journalrows.controller(where, row[1], row[2]))
                held.setdefault(key, []).append(host)
        if not held:
            return
        lines = []
        for (rollout_id, controller, pid), locked in held.items():
            if controller == socket.gethostname() and not pid_alive(pid):
                state = (f"its controller (pid {pid}) is gone: see `ccrollout history`, then "
                         f"`ccrollout rollback {rollout_id}`")
            else:
                state = f"its controller runs as pid {pid} on {controller}"
            lines.append(f"{', '.join(locked)}: held by rollout {rollout_id}; {state}")
        raise HostsLocked("another rollout holds these hosts; nothing was changed:\n  " + "\n  ".join(lines))

    @_reported
    def set_status(self, rollout_id: str, status: str) -> None:
        self._db.execute("UPDATE rollouts SET status = ? WHERE id = ?", (status, rollout_id))

    @_reported
    def controller(self, rollout_id: str) -> tuple[str, int, bool] | None:
        """(machine, pid, alive as far as this machine can tell) of the controller holding the
        rollout's hosts, or None when it holds none."""
        row = self._db.execute("SELECT controller, pid FROM locks WHERE rollout_id = ? LIMIT 1",
                               (rollout_id,)).fetchone()
        if row is None:
            return None
        machine, pid = journalrows.controller(f"locks row of rollout {rollout_id[:40]!r}", *row)
        return machine, pid, machine != socket.gethostname() or pid_alive(pid)

    @_reported
    def take_over(self, rollout_id: str, hosts) -> None:
        """This controller carries on a rollout whose own controller died."""
        self._db.executemany("INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?)",
                             [(host, rollout_id, socket.gethostname(), os.getpid(), time.time())
                              for host in hosts])

    @_reported
    def finish_rollout(self, rollout_id: str, status: str, note: str = "", by_hand: bool = False) -> None:
        """The rollout's end (a rollback by hand may end it again): its row says the last
        one, and an event each, with who ended it and how, so the history can tell the story."""
        now = time.time()
        ended = {"status": str(status), "by": operator(), "by_hand": by_hand, "note": _one_line(note)}
        self._db.execute("BEGIN IMMEDIATE")  # the row and its event together
        try:
            self._db.execute("UPDATE rollouts SET finished = ?, status = ? WHERE id = ?", (now, status, rollout_id))
            self._db.execute("INSERT INTO events VALUES (?, ?, NULL, 'finished', ?)",
                             (rollout_id, now, json.dumps(ended, sort_keys=True)))
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @_reported
    def intend(self, rollout_id: str, hosts: list[str], stage: int, algorithm: str, digest: str) -> dict[str, int]:
        """Record the change about to be made on each of HOSTS, in one transaction; their ids."""
        ids = {}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for host in hosts:
                ids[host] = self._db.execute(
                    "INSERT INTO changes (rollout_id, host, stage, algorithm, digest, previous_default, state,"
                    " updated) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                    (rollout_id, host, stage, algorithm, digest, ChangeState.INTENDED, time.time())).lastrowid
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return ids

    @_reported
    def mark(self, change_id: int, state: str, previous_default: str | None = None) -> None:
        self._db.execute(
            "UPDATE changes SET state = ?, previous_default = COALESCE(?, previous_default), updated = ?"
            " WHERE id = ?", (state, previous_default, time.time(), change_id))

    @_reported
    def event(self, rollout_id: str, stage: int | None, kind: str, data: dict) -> None:
        self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                         (rollout_id, time.time(), stage, kind, json.dumps(data, sort_keys=True)))

    @_reported
    def last_rollout(self) -> str | None:
        row = self._db.execute("SELECT id FROM rollouts ORDER BY started DESC LIMIT 1").fetchone()
        return journalrows.rollout_id("the last rollouts row", row[0]) if row else None

    @_reported
    def rollout(self, rollout_id: str) -> dict | None:
        row = self._db.execute("SELECT id, plan, rollout, algorithm, digest, started, finished, status"
                               " FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return None if row is None else journalrows.rollout(row)

    @_reported
    def rollouts(self) -> list[dict]:
        rows = self._db.execute("SELECT id, plan, rollout, algorithm, digest, started, finished, status"
                                " FROM rollouts ORDER BY started").fetchall()
        return [journalrows.rollout(row) for row in rows]

    @_reported
    def changes(self, rollout_id: str, states: tuple[str, ...] | None = None) -> list[Change]:
        rows = self._db.execute(
            "SELECT id, rollout_id, host, stage, algorithm, digest, previous_default, state"
            " FROM changes WHERE rollout_id = ? ORDER BY id", (rollout_id,)).fetchall()
        changes = [journalrows.change(row) for row in rows]
        return [c for c in changes if states is None or c.state in states]

    @_reported
    def events(self, rollout_id: str, kinds: tuple[str, ...] | None = None) -> list[dict]:
        """The rollout's events, oldest first; only those of KINDS when given (a rollout's
        interval events are many: most readers need none of them)."""
        wanted = "" if kinds is None else f" AND kind IN ({', '.join('?' * len(kinds))})"
        rows = self._db.execute("SELECT time, stage, kind, data FROM events WHERE rollout_id = ?" + wanted
                                + " ORDER BY time", (rollout_id, *(kinds or ()))).fetchall()
        return [journalrows.event(row, rollout_id) for row in rows]
