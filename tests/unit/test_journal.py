"""The journal keeps intent before change, and what each change replaced."""

import subprocess

import pytest

from ccrollout.journal import HostsLocked, Journal


def test_changes_are_recorded_before_and_after(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    rollout = journal.start_rollout("plan.yaml", "r1", "ccr_reno", "abc")
    change = journal.intend(rollout, ["lab1"], 1, "ccr_reno", "abc")["lab1"]
    assert [c.state for c in journal.changes(rollout)] == ["intended"]
    journal.mark(change, "done", "cubic")
    journal.event(rollout, 1, "verdict", {"outcome": "pass"})
    journal.finish_rollout(rollout, "completed")
    journal.close()

    reopened = Journal(tmp_path / "journal.sqlite")
    assert reopened.last_rollout() == rollout
    (done,) = reopened.changes(rollout, ("done",))
    assert (done.host, done.previous_default) == ("lab1", "cubic")
    assert reopened.rollout(rollout)["status"] == "completed"
    assert reopened.events(rollout)[0]["data"] == {"outcome": "pass"}


def test_one_rollout_at_a_time_per_host(tmp_path):
    first, second = Journal(tmp_path / "journal.sqlite"), Journal(tmp_path / "journal.sqlite")
    running = first.start_rollout("a.yaml", "a", "ccr_reno", "abc", ["lab1", "lab2"])
    with pytest.raises(HostsLocked) as refused:
        second.start_rollout("b.yaml", "b", "ccr_dctcp", "def", ["lab2", "lab3"])
    assert f"lab2: held by rollout {running}" in str(refused.value)
    assert "lab3" not in str(refused.value) and refused.value.exit_code == 6
    assert len(second.rollouts()) == 1  # the refused one left no trace
    second.start_rollout("c.yaml", "c", "ccr_dctcp", "def", ["lab3"])  # other hosts are free
    first.finish_rollout(running, "completed")
    second.start_rollout("b.yaml", "b", "ccr_dctcp", "def", ["lab2"])


def test_a_held_or_unfinished_rollout_keeps_its_hosts_and_a_dead_controller_is_named(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    held = journal.start_rollout("a.yaml", "a", "ccr_reno", "abc", ["lab1"])
    journal.finish_rollout(held, "held")
    with pytest.raises(HostsLocked, match="runs as pid"):
        journal.start_rollout("b.yaml", "b", "ccr_reno", "abc", ["lab1"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    journal._db.execute("UPDATE locks SET pid = ?", (dead.pid,))
    with pytest.raises(HostsLocked, match=rf"controller \(pid {dead.pid}\) is gone: .*rollback {held}"):
        journal.start_rollout("b.yaml", "b", "ccr_reno", "abc", ["lab1"])
    journal.finish_rollout(held, "rolled_back")
    journal.start_rollout("b.yaml", "b", "ccr_reno", "abc", ["lab1"])
