"""The journal keeps intent before change, and what each change replaced."""

from ccrollout.journal import Journal


def test_changes_are_recorded_before_and_after(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    rollout = journal.start_rollout("plan.yaml", "r1", "ccr_reno", "abc")
    change = journal.intend(rollout, "lab1", 1, "ccr_reno", "abc")
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
