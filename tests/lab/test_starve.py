"""A control that starves its own connections (ccr_starve: one segment in flight) retransmits
nothing, so the retransmit ratio alone passed it through every stage. Judged on goodput too,
it is rolled back at the first stage, and the journal's verdict names the metric."""

import json

from labkit import HOSTS, LAB_HEALTH, assert_gone, ccrollout, default_of, roll_back_every_rollout, write_plan


# The lab playbooks' limits, with min_segments low enough that the few segments the starving
# control sends (~360 in an 8 s bake) are judged, not just too little: on the ratio alone it passes.
STARVE_HEALTH = {**LAB_HEALTH, "min_segments": 100}


def test_a_starving_control_is_rolled_back_at_stage_one_on_goodput(fleet, journal_home, tmp_path):
    plan = write_plan(tmp_path, "ccr_starve", "fixtures/ccr_starve.bpf.c", baseline="4s", health=STARVE_HEALTH)
    applied = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
    try:
        assert applied.returncode == 1, applied.stderr + applied.stdout
        summary = json.loads(applied.stdout)
        assert summary["status"] == "rolled_back"
        (verdict,) = summary["verdicts"]
        assert verdict["stage"] == 1 and verdict["hosts"] == ["lab1"] and verdict["outcome"] == "fail"
        assert any(reason.startswith("lab1: goodput") and "below the control hosts" in reason
                   for reason in verdict["reasons"]), verdict["reasons"]
        # the journal keeps every metric's figures behind the verdict
        (recorded,) = json.loads(ccrollout(journal_home, "history", "--json").stdout)[0]["verdicts"]
        goodput = recorded["figures"]["lab1"]["metrics"]["goodput"]
        assert goodput["outcome"] == "fail" and goodput["limit"] == 0.5
        assert goodput["canary_median"] < (1 - goodput["limit"]) * goodput["control"]["median"]
        ratio = recorded["figures"]["lab1"]["metrics"]["retransmit_ratio"]
        assert ratio["outcome"] == "pass" and ratio["canary_median"] < 0.01  # alone, it would have passed
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert all(default_of(host) == "reno" for host in HOSTS)
    assert_gone("ccr_starve")
