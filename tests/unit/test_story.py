"""history tells each rollout's story from the journal; read-only commands never make a journal."""

import hashlib
import json
import socket

import pytest

from ccrollout import build, cli, journal, story
from ccrollout.inventory import Host
from ccrollout.journal import Journal
from ccrollout.plan import Algorithm, Rollout, Scope, Stage
from ccrollout.rollout.judge import Limits
from ccrollout.rollout.runner import Runner
from ccrollout.schedule import Schedule
from ccrollout.simulation import SimulatedFleet
from ccrollout.status import RolloutStatus

FAST = Schedule(baseline=0.2, settle=0, bake=0.3, interval=0.1)
HOSTS = [Host(f"h{index}", {}, ("all", "web")) for index in range(4)]


@pytest.fixture
def simulated(tmp_path, monkeypatch):
    """apply(ratio of the new control) and rollback(rollout) over a simulated fleet, sharing
    one journal; the journal's path."""
    path = tmp_path / "o.bpf.o"
    path.write_bytes(b"not an object")
    built = build.BuiltObject("ccr_sim", tmp_path / "o.bpf.c", path, hashlib.sha256(b"not an object").hexdigest(),
                              1, (), True)
    monkeypatch.setattr(Runner, "build_control", lambda self, rollout: built)
    shared = Journal(tmp_path / "journal.sqlite")
    fleets = []

    def runner(fleet):
        return Runner(HOSTS, shared, forks=4, progress=lambda text: None, connect=fleet.connect)

    def apply(ratio):
        fleets.append(SimulatedFleet([h.name for h in HOSTS], ratios={"reno": 0.01, "ccr_sim": ratio}))
        rollout = Rollout(name="sim", algorithm=Algorithm("ccr_sim", build.Path("/dev/null")), hosts="all",
                          stages=(Stage(1), Stage(100, percent=True)), schedule=FAST,
                          limits=Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=50),
                          on_failure="rollback", scope=Scope())
        with runner(fleets[-1]) as each:
            return each.apply("plan.yaml", rollout)

    def rollback(rollout_id):
        with runner(fleets[-1]) as each:
            return each.rollback(rollout_id)

    yield apply, rollback, tmp_path / "journal.sqlite"
    shared.close()


def stories(path) -> dict:
    reader = Journal(path)
    try:
        return {rollout["id"]: story.tell(rollout, reader.events(rollout["id"], story.STORY_KINDS))
                for rollout in reader.rollouts()}
    finally:
        reader.close()


def test_completed_then_rolled_back_by_hand_reads_apart_from_a_failed_canary(simulated, capsys):
    apply, rollback, path = simulated
    good = apply(0.011)
    assert good.status == RolloutStatus.COMPLETED
    assert rollback(good.rollout_id).status == RolloutStatus.ROLLED_BACK
    broken = apply(0.4)
    assert broken.status == RolloutStatus.ROLLED_BACK  # the same status: the stories tell them apart
    told = stories(path)
    operator = told[good.rollout_id].operator
    assert operator == journal.operator() and operator.endswith("@" + socket.gethostname())
    assert told[good.rollout_id].text.startswith("completed all 2 stages, then rolled back by hand by " + operator)
    assert told[broken.rollout_id].text == "failed the canary of stage 1 (fail) and was rolled back"
    for tale in told.values():
        assert tale.ended is not None and 0 <= tale.duration < 60

    assert cli.main(["history", "--journal", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ROLLOUT", "STARTED", "ENDED", "DURATION", "OPERATOR", "STATUS", "CONTROL", "PLAN"]
    good_row = next(index for index, line in enumerate(lines) if line.startswith(good.rollout_id))
    assert lines[good_row].split()[5:8] == [operator, "rolled_back", "ccr_sim"]
    assert lines[good_row + 1].strip().startswith("completed all 2 stages, then rolled back by hand")
    assert lines[good_row + 2].strip().startswith("stage 1: pass")

    assert cli.main(["history", "--json", "--journal", str(path)]) == 0
    listed = {rollout["id"]: rollout for rollout in json.loads(capsys.readouterr().out)}
    assert listed[broken.rollout_id]["story"] == "failed the canary of stage 1 (fail) and was rolled back"
    assert listed[good.rollout_id]["operator"] == operator
    assert listed[good.rollout_id]["duration"] == pytest.approx(told[good.rollout_id].duration)


def test_a_journal_from_before_stories_still_says_what_it_can(tmp_path):
    old = Journal(tmp_path / "journal.sqlite")
    rollout_id = old.start_rollout("/p.yaml", "r1", "ccr_reno", "ab" * 32, ["lab1"])
    old.event(rollout_id, 1, "verdict", {"stage": 1, "hosts": ["lab1"], "outcome": "fail"})
    old._db.execute("DELETE FROM events WHERE kind IN ('started', 'finished')")
    old._db.execute("UPDATE rollouts SET status = 'rolled_back', finished = started + 75")
    old.close()
    told = stories(tmp_path / "journal.sqlite")[rollout_id]
    assert (told.operator, told.text, story.span(told.duration)) == (
        None, "failed the canary of stage 1 (fail); rolled_back", "1m15s")


@pytest.mark.parametrize("seconds, said", [(None, "-"), (46.4, "46s"), (185, "3m05s"), (3720, "1h02m"),
                                           (183600, "2d03h")])
def test_durations_read_as_people_say_them(seconds, said):
    assert story.span(seconds) == said


@pytest.mark.parametrize("argv", [["history"], ["history", "--json"], ["report"], ["report", "-o", "x.png"],
                                  ["promote"], ["abort"]])
def test_read_only_commands_refuse_a_journal_that_does_not_exist_and_make_none(tmp_path, capsys, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "state" / "journal.sqlite"
    assert cli.main([*argv, "--journal", str(missing)]) == 3
    assert f"journal {missing}: not found" in capsys.readouterr().err
    assert not (tmp_path / "state").exists() and not (tmp_path / "x.png").exists()
