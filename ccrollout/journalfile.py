"""Opening the journal's SQLite file: only a ccrollout journal of a known version, and only
as far as the command needs.

A journal says what it is in its header: PRAGMA application_id is APPLICATION_ID and
PRAGMA user_version its layout's version. The first layout carried neither; a file with
exactly its tables opens as version 1 (and is stamped when opened for writing). A later
layout adds a step to MIGRATIONS. Any other file, an empty one, a damaged one, or a
directory or FIFO at the path is refused with one JournalError, exit 3.

Reading never writes (not even the WAL switch); writing is proven possible (a read-only
file, an exclusive lock) before the command touches any host. A new journal is made 0600,
in a directory made 0700, under a temporary name, and linked into place only whole.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

from .errors import EXIT_INVALID_INPUT, UserError
from .localfiles import make_private_directory

APPLICATION_ID = 0x63637231  # "ccr1"
VERSION = 1
_HEADER = b"SQLite format 3\x00"
# How long a writer waits for another's transaction: rollouts write a few rows a stage.
WRITER_WAIT_SECONDS = 30.0

SCHEMA_V1 = """
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    rollout TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    digest TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL            -- running | completed | rolled_back | failed | held
);
CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    host TEXT NOT NULL,
    stage INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    digest TEXT NOT NULL,
    previous_default TEXT,
    state TEXT NOT NULL,            -- intended | done | unchanged | failed | undone
    updated REAL NOT NULL
);
CREATE TABLE locks (
    host TEXT PRIMARY KEY,          -- one rollout at a time per host
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    controller TEXT NOT NULL,       -- the machine the controller runs on
    pid INTEGER NOT NULL,
    since REAL NOT NULL
);
CREATE TABLE events (
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    time REAL NOT NULL,
    stage INTEGER,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
"""
# The columns of version 1, by which an unstamped file is recognised as a journal.
_V1_COLUMNS = {
    "rollouts": ["id", "plan", "rollout", "algorithm", "digest", "started", "finished", "status"],
    "changes": ["id", "rollout_id", "host", "stage", "algorithm", "digest", "previous_default", "state",
                "updated"],
    "locks": ["host", "rollout_id", "controller", "pid", "since"],
    "events": ["rollout_id", "time", "stage", "kind", "data"],
}
# Version N -> the statements (";"-separated, no triggers) that make it N + 1, run in the
# transaction that stamps the new version, so a journal is one version or the next, never between.
MIGRATIONS: dict[int, str] = {}


class JournalError(UserError):
    """The journal cannot be used: missing, damaged, foreign, newer, locked or read-only."""

    exit_code = EXIT_INVALID_INPUT


class Access(enum.Enum):
    READ = "read"        # history, and what promote/abort check: never writes
    WRITE = "write"      # rollback, resume, promote/abort's event: must exist and be writable
    CREATE = "create"    # apply: made when missing


def describe(error: sqlite3.Error, access: Access) -> str:
    """An SQLite error as what it means for the journal, opened for ACCESS."""
    text = str(error)
    read_only = ("cannot be read here: a reader of SQLite's WAL needs to write the -shm file beside it"
                 if access is Access.READ else
                 "is read-only here (its file, or its directory for SQLite's -wal and -shm files)")
    meanings = (("locked", "is locked by another process; try again once it is done"),
                ("readonly", read_only),
                ("malformed", "is damaged (database disk image is malformed)"),
                ("not a database", "is damaged: not an SQLite database"),
                ("no such", f"does not have the layout of a ccrollout journal ({text})"),
                ("unable to open", "cannot be opened (is its directory readable?)"),
                ("disk i/o", "could not be read or written (disk I/O error)"),
                ("decode", "holds text that is not UTF-8; damaged, or edited?"))
    return next((meaning for key, meaning in meanings if key in text.lower()), f"cannot be used: {text}")


def open_journal(path: Path, access: Access) -> sqlite3.Connection:
    """A connection to the journal at PATH, checked, migrated (when writing), and proven
    writable unless ACCESS is READ. JournalError for anything else."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if access is not Access.CREATE:
            raise JournalError(f"journal {path}: not found; give the --journal a rollout was recorded in") from None
        _create(path)
        info = os.stat(path)
    except NotADirectoryError:
        raise JournalError(f"journal {path}: one of the directories above it is a file") from None
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot be used: {exc.strerror or exc}") from None
    _check_file(path, info)
    try:
        connection = _connect(path, access)
        try:
            version = _version(path, connection)
            if access is not Access.READ:
                _prepare_for_writing(connection, version)
        except BaseException:
            connection.close()
            raise
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path} {describe(exc, access)}") from None
    except UnicodeDecodeError:
        raise JournalError(f"journal {path}: holds names that are not UTF-8; damaged?") from None
    return connection


def _create(path: Path) -> None:
    try:
        make_private_directory(path.parent)
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot make its directory: {exc.strerror or exc}") from None
    partial = path.with_name(f".{path.name}.{os.urandom(6).hex()}.partial")
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.chmod(partial, 0o600)  # whatever the umask took away, or left
        connection = sqlite3.connect(partial, isolation_level=None)
        try:
            connection.executescript(f"BEGIN; {SCHEMA_V1} PRAGMA application_id = {APPLICATION_ID}; "
                                     f"PRAGMA user_version = {VERSION}; COMMIT;")
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
        try:
            os.link(partial, path)  # only a whole journal appears, and never over another's
        except FileExistsError:
            pass  # made meanwhile by another command: that one is used
        except OSError:  # a file system without hard links: a rename, unless one appeared
            if not os.path.lexists(path):
                os.rename(partial, path)
    except (OSError, sqlite3.Error) as exc:
        raise JournalError(f"journal {path}: cannot be created: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)


def _check_file(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise JournalError(f"journal {path}: is a directory, not a journal")
    if not stat.S_ISREG(info.st_mode):
        raise JournalError(f"journal {path}: is not a regular file (a FIFO or a device?), not a journal")
    if info.st_size == 0:
        raise JournalError(f"journal {path}: is empty (0 bytes), not a journal; remove it, or give another --journal")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_HEADER))
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot be read: {exc.strerror or exc}") from None
    if header != _HEADER:
        raise JournalError(f"journal {path}: is not an SQLite database, so not a ccrollout journal")


def _connect(path: Path, access: Access) -> sqlite3.Connection:
    mode = "ro" if access is Access.READ else "rw"  # never "rwc": a file appears only through _create
    connection = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True, isolation_level=None,
                                 check_same_thread=False,  # threads of one controller share it
                                 timeout=WRITER_WAIT_SECONDS if access is not Access.READ else 5.0)
    connection.execute("PRAGMA foreign_keys = OFF")
    return connection


def _version(path: Path, connection: sqlite3.Connection) -> int:
    """The layout's version; JournalError unless it is a ccrollout journal this code reads.
    0 stands for the first layout, unstamped."""
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if application_id == APPLICATION_ID:
        if not 1 <= version <= VERSION:
            newer = version > VERSION
            raise JournalError(f"journal {path}: has layout version {version}, "
                               + (f"newer than this ccrollout reads ({VERSION}); use a newer ccrollout" if newer
                                  else "which no ccrollout wrote (damaged?)"))
        return version
    tables = {name: [column[1] for column in connection.execute(
                  "PRAGMA table_info('{}')".format(name.replace("'", "''")))]
              for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.pop("sqlite_sequence", None)
    if application_id == 0 and version == 0 and tables == _V1_COLUMNS:
        return 0
    what = f"application_id {application_id:#x}" if application_id else (
        "tables " + ", ".join(sorted(tables)) if tables else "no tables")
    raise JournalError(f"journal {path}: is an SQLite database but not a ccrollout journal ({what}); "
                       f"give a --journal of its own")


def _prepare_for_writing(connection: sqlite3.Connection, version: int) -> None:
    """Stamp an unstamped first layout, migrate an older one, and prove the file writable
    (a stamp is a write) before anything else happens."""
    connection.execute("BEGIN IMMEDIATE")  # waits for, or fails on, another's lock
    try:
        if version == 0:
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            version = 1
        for step in range(version, VERSION):
            for statement in filter(str.strip, MIGRATIONS[step].split(";")):
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("PRAGMA journal_mode=WAL")
