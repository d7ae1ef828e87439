"""The journal keeps intent before change, and what each change replaced."""

import subprocess

import pytest

from ccrollout.journal import HostsLocked, Journal

DIGEST = "ab" * 32


def test_changes_are_recorded_before_and_after(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    rollout = journal.start_rollout("plan.yaml", "r1", "ccr_reno", DIGEST)
    change = journal.intend(rollout, ["lab1"], 1, "ccr_reno", DIGEST)["lab1"]
    assert [c.state for c in journal.changes(rollout)] == ["intended"]
    journal.mark(change, "done", "cubic")
    journal.event(rollout, 1, "verdict", {"stage": 1, "hosts": ["lab1"], "outcome": "pass"})
    journal.finish_rollout(rollout, "completed")
    journal.close()

    reopened = Journal(tmp_path / "journal.sqlite")
    assert reopened.last_rollout() == rollout
    (done,) = reopened.changes(rollout, ("done",))
    assert (done.host, done.previous_default) == ("lab1", "cubic")
    assert reopened.rollout(rollout)["status"] == "completed"
    assert reopened.events(rollout, ("verdict",))[0]["data"] == {"stage": 1, "hosts": ["lab1"], "outcome": "pass"}
    assert [e["kind"] for e in reopened.events(rollout)] == ["started", "verdict", "finished"]


def test_one_rollout_at_a_time_per_host(tmp_path):
    first, second = Journal(tmp_path / "journal.sqlite"), Journal(tmp_path / "journal.sqlite")
    running = first.start_rollout("a.yaml", "a", "ccr_reno", DIGEST, ["lab1", "lab2"])
    with pytest.raises(HostsLocked) as refused:
        second.start_rollout("b.yaml", "b", "ccr_dctcp", DIGEST, ["lab2", "lab3"])
    assert f"lab2: held by rollout {running}" in str(refused.value)
    assert "lab3" not in str(refused.value) and refused.value.exit_code == 6
    assert len(second.rollouts()) == 1  # the refused one left no trace
    second.start_rollout("c.yaml", "c", "ccr_dctcp", DIGEST, ["lab3"])  # other hosts are free
    first.finish_rollout(running, "completed")
    second.start_rollout("b.yaml", "b", "ccr_dctcp", DIGEST, ["lab2"])


def test_a_held_or_unfinished_rollout_keeps_its_hosts_and_a_dead_controller_is_named(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    held = journal.start_rollout("a.yaml", "a", "ccr_reno", DIGEST, ["lab1"])
    journal.finish_rollout(held, "held")
    with pytest.raises(HostsLocked, match="runs as pid"):
        journal.start_rollout("b.yaml", "b", "ccr_reno", DIGEST, ["lab1"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    journal._db.execute("UPDATE locks SET pid = ?", (dead.pid,))
    with pytest.raises(HostsLocked, match=rf"controller \(pid {dead.pid}\) is gone: .*rollback {held}"):
        journal.start_rollout("b.yaml", "b", "ccr_reno", DIGEST, ["lab1"])
    journal.finish_rollout(held, "rolled_back")
    journal.start_rollout("b.yaml", "b", "ccr_reno", DIGEST, ["lab1"])


# -- opening: only a ccrollout journal of a known version, as far as the command needs ---------

import os  # noqa: E402
import sqlite3  # noqa: E402
import stat  # noqa: E402

from ccrollout import journalfile  # noqa: E402
from ccrollout.journal import Access, JournalError  # noqa: E402
from ccrollout.journalfile import APPLICATION_ID, SCHEMA_V1  # noqa: E402


def legacy_journal(path):
    """A journal as ccrollout wrote it before journals carried a version."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA_V1)
    db.execute("INSERT INTO rollouts VALUES ('20250101-000000-abcdef', '/p.yaml', 'r1', 'ccr_reno', ?, 1.0,"
               " NULL, 'running')", (DIGEST,))
    db.execute("INSERT INTO changes VALUES (1, '20250101-000000-abcdef', 'lab1', 1, 'ccr_reno', ?, 'cubic',"
               " 'done', 1.0)", (DIGEST,))
    db.close()
    return path


def header(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("PRAGMA application_id").fetchone()[0], db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_a_new_journal_is_private_and_says_what_it_is_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        Journal(tmp_path / "state" / "ccrollout" / "journal.sqlite").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "ccrollout" / "journal.sqlite").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "ccrollout").st_mode) == 0o700
    assert header(tmp_path / "state" / "ccrollout" / "journal.sqlite") == (APPLICATION_ID, 1)
    assert [p.name for p in (tmp_path / "state" / "ccrollout").iterdir() if "partial" in p.name] == []


def test_the_unversioned_layout_opens_as_version_1_and_reading_never_writes(tmp_path):
    path = legacy_journal(tmp_path / "journal.sqlite")
    before = path.read_bytes()
    reader = Journal(path, Access.READ)
    assert reader.changes("20250101-000000-abcdef")[0].previous_default == "cubic"
    reader.close()
    assert path.read_bytes() == before and header(path) == (0, 0)
    Journal(path, Access.WRITE).close()  # writing stamps it
    assert header(path) == (APPLICATION_ID, 1)
    assert Journal(path, Access.READ).rollout("20250101-000000-abcdef")["status"] == "running"


@pytest.mark.parametrize("access", [Access.READ, Access.WRITE])
def test_a_journal_that_does_not_exist_is_an_error_unless_apply_creates_it(tmp_path, access):
    with pytest.raises(JournalError, match="journal .*/nope.sqlite: not found") as caught:
        Journal(tmp_path / "nope.sqlite", access)
    assert caught.value.exit_code == 3 and not (tmp_path / "nope.sqlite").exists()


def damaged(tmp_path, kind):
    path = tmp_path / "journal.sqlite"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(5000))
    elif kind == "truncated":
        Journal(path).close()
        legacy = legacy_journal(tmp_path / "full.sqlite").read_bytes()
        path.write_bytes(legacy[:len(legacy) // 2 + 100])
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE recipes (name TEXT)")
        db.close()
    elif kind == "newer":
        Journal(path).close()
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 9")
        db.close()
    elif kind == "parent is a file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "journal.sqlite"
    return path


@pytest.mark.parametrize("kind, message", [
    ("empty", "is empty (0 bytes), not a journal"),
    ("garbage", "is not an SQLite database"),
    ("truncated", "is damaged"),
    ("directory", "is a directory, not a journal"),
    ("fifo", "is not a regular file"),
    ("foreign", "is an SQLite database but not a ccrollout journal (tables recipes)"),
    ("newer", "has layout version 9, newer than this ccrollout reads (1)"),
    ("parent is a file", "one of the directories above it is a file"),
])
@pytest.mark.parametrize("access", list(Access))
def test_damage_is_one_journal_error_and_nothing_is_added(tmp_path, kind, message, access):
    path = damaged(tmp_path, kind)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(JournalError) as caught:
        journal = Journal(path, access)
        journal.rollouts()
    assert message in str(caught.value) and caught.value.exit_code == 3
    assert (path.read_bytes() if path.is_file() else None) == before


def test_a_locked_journal_is_refused_to_writers_before_anything_happens(tmp_path, monkeypatch):
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(journalfile, "WRITER_WAIT_SECONDS", 0.1)
    with pytest.raises(JournalError, match="is locked by another process"):
        Journal(path, Access.WRITE)
    assert Journal(path, Access.READ).rollouts() == []  # readers are not kept out (WAL)
    holder.close()


# -- what is read back is checked before anything is sent -------------------------------------

@pytest.mark.parametrize("table, column, value, message", [
    ("changes", "algorithm", "ccr reno; rm", "changes row 1: algorithm 'ccr reno; rm' is not a congestion-control"),
    ("changes", "previous_default", "../../x", "previous_default '../../x' is not a congestion-control name"),
    ("changes", "digest", "abc", "digest 'abc' is not a sha256 digest"),
    ("changes", "host", "lab1\x1b[2J", "host 'lab1\\x1b[2J' is not printable text"),
    ("changes", "state", "gone", "state 'gone' is not one of intended, done"),
    ("rollouts", "id", "../x", "rollouts row '../x': id '../x' is not a rollout id"),
    ("rollouts", "status", "?", "status '?' is not one of running"),
    ("locks", "pid", -1, "pid -1 is not a whole number from 1 to"),
    ("events", "data", "{not json", "data '{not json' is not a JSON object"),
    ("events", "data", '{"stage": 1, "outcome": "pass", "hosts": [1]}', "hosts 1 is not printable text"),
])
def test_a_tampered_row_is_one_clear_error(tmp_path, table, column, value, message):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    rollout = journal.start_rollout("/plan.yaml", "r1", "ccr_reno", DIGEST, ["lab1"])
    journal.intend(rollout, ["lab1"], 1, "ccr_reno", DIGEST)
    journal.event(rollout, 1, "verdict", {"stage": 1, "hosts": ["lab1"], "outcome": "pass"})
    journal._db.execute("DELETE FROM events WHERE kind = 'started'")  # the verdict is the row changed
    if column == "id":
        journal._db.execute("PRAGMA foreign_keys = OFF")
    journal._db.execute(f"UPDATE {table} SET {column} = ?", (value,))
    rollout = value if column == "id" else rollout
    with pytest.raises(JournalError) as caught:
        journal.rollouts()
        journal.changes(rollout)
        journal.events(rollout)
        journal.controller(rollout)
    assert message in str(caught.value) and "was the journal edited?" in str(caught.value)
    assert caught.value.exit_code == 3


def test_text_that_is_not_utf8_is_damage_not_a_crash(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.start_rollout("/plan.yaml", "r1", "ccr_reno", DIGEST, ["lab1"])
    journal._db.execute("UPDATE rollouts SET plan = CAST(X'2f80' AS TEXT)")
    with pytest.raises(JournalError, match="holds text that is not UTF-8"):
        journal.rollouts()


@pytest.mark.parametrize("access", list(Access))
def test_a_schema_that_is_not_utf8_is_damage_not_a_crash(tmp_path, access):
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    data = bytearray(path.read_bytes())
    at = data.index(b"CREATE TABLE changes") + len("CREATE TABLE ")
    data[at:at + 6] = b"\x00\x00\x00\x00\x00\x80"  # as a fuzzed overwrite left it
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=r"journal .* is damaged \(database disk image is malformed\)"):
        Journal(path, access).rollouts()
