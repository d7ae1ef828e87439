"""A rollout that survives its controller: a manual gate between stages, a controller
killed with SIGKILL at several points (the journal still names every changed host, and
`rollback` or `resume` brings the fleet to a state it can name), and no orphan pins."""

import json
import subprocess

import pytest

from labkit import (HOSTS, assert_gone, ccrollout, default_of, host_state, roll_back_every_rollout, start_apply,
                    write_plan)


QUICK = {"stages": [1, "100%"], "baseline": "2s", "settle": "2.5s", "bake": "6s"}  # a sender connection: 2.3 s


def read_until(process: subprocess.Popen, text: str) -> list[str]:
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came:\n" + "".join(seen))


def last_rollout(home) -> dict:
    return json.loads(ccrollout(home, "history", "--json").stdout)[-1]


def assert_fleet_as_before() -> None:
    for host in HOSTS:
        assert default_of(host) == "reno"
        assert host_state(host)["controls"] == {}


def test_a_paused_rollout_goes_on_when_promoted_and_rolls_back_when_aborted(fleet, journal_home, tmp_path):
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", pause=True, **QUICK)
    promoted = start_apply(journal_home, fleet, plan)
    try:
        read_until(promoted, "paused after stage 1")
        assert last_rollout(journal_home)["status"] == "paused"
        assert default_of("lab1") == "ccr_reno" and default_of("lab2") == "reno"
        gate = ccrollout(journal_home, "promote")
        assert gate.returncode == 0 and "goes on to the next stage" in gate.stdout, gate.stderr
        assert promoted.wait(timeout=120) == 0
        assert all(default_of(host) == "ccr_reno" for host in HOSTS)
        assert ccrollout(journal_home, "promote").returncode == 3  # nothing is paused now
    finally:
        if promoted.poll() is None:
            promoted.kill()
        roll_back_every_rollout(journal_home, fleet)
    assert_fleet_as_before()

    aborted = start_apply(journal_home, fleet, plan)
    try:
        read_until(aborted, "paused after stage 1")
        assert ccrollout(journal_home, "abort").returncode == 0
        output = aborted.communicate(timeout=120)[0]
        assert aborted.returncode == 1, output
        assert "aborted by the operator after stage 1; rolled back" in output
        assert last_rollout(journal_home)["status"] == "aborted"
    finally:
        if aborted.poll() is None:
            aborted.kill()
        roll_back_every_rollout(journal_home, fleet)
    assert_fleet_as_before()
    assert_gone("ccr_reno")


@pytest.mark.parametrize("crash_at, plan_name", [
    ("mid-change", "good"),         # a host answered its change, the journal was not told
    ("after-change", "good"),       # stage 1 changed, never judged
    ("after-verdict", "good"),      # stage 1 judged, stage 2 not begun
    ("mid-rollback", "broken"),     # the hosts were undone, the journal was not told
])
def test_a_killed_controller_leaves_a_journal_that_rollback_can_follow(fleet, journal_home, tmp_path,
                                                                        crash_at, plan_name):
    algorithm, source = {"good": ("ccr_reno", "ccr_reno.bpf.c"),
                         "broken": ("ccr_broken", "fixtures/ccr_broken.bpf.c")}[plan_name]
    plan = write_plan(tmp_path, algorithm, source, **QUICK)
    try:
        killed = start_apply(journal_home, fleet, plan, CCROLLOUT_TEST_CRASH_AT=crash_at)
        output = killed.communicate(timeout=120)[0]
        assert killed.returncode == -9, output
        rollout = last_rollout(journal_home)
        assert rollout["status"] == "running"  # nobody lived to say otherwise
        assert {change["host"] for change in rollout["changes"]} == {"lab1"}
        # The hosts are not free for another rollout until this one is dealt with.
        again = ccrollout(journal_home, "apply", "-i", fleet, str(plan))
        assert again.returncode == 6 and f"rollback {rollout['id']}" in again.stderr, again.stderr
        rolled = ccrollout(journal_home, "rollback", "-i", fleet, rollout["id"])
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert last_rollout(journal_home)["status"] == "rolled_back"
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert_fleet_as_before()
    assert_gone(algorithm)


def test_resume_carries_on_a_rollout_whose_controller_died(fleet, journal_home, tmp_path):
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", **QUICK)
    try:
        killed = start_apply(journal_home, fleet, plan, CCROLLOUT_TEST_CRASH_AT="after-change")
        killed.communicate(timeout=120)
        assert killed.returncode == -9
        assert default_of("lab1") == "ccr_reno" and default_of("lab2") == "reno"
        resumed = ccrollout(journal_home, "resume", "--json", "-i", fleet)
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        summary = json.loads(resumed.stdout)
        # Stage 1 is baked now, though its hosts were already changed; then stage 2 follows.
        assert [(v["stage"], v["outcome"]) for v in summary["verdicts"]] == [(1, "pass"), (2, "pass")]
        assert all(default_of(host) == "ccr_reno" for host in HOSTS)
        assert last_rollout(journal_home)["status"] == "completed"
        assert ccrollout(journal_home, "resume", "-i", fleet).returncode == 3  # nothing left to resume
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert_fleet_as_before()
    assert_gone("ccr_reno")
