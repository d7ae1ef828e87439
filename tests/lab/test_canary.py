"""The subtle case on the lab: a control only somewhat worse than Reno (it backs off to 7/8
instead of 1/2: about 3 % retransmitted where Reno has 1 %) is caught when the plan's limit
says it should be, and passes when the limit allows it."""

import json


from labkit import HOSTS, assert_gone, ccrollout, default_of, roll_back_every_rollout, write_plan



def eager_plan(tmp_path, max_increase: str):
    return write_plan(tmp_path, "ccr_eager", "fixtures/ccr_eager.bpf.c", stages=[1, "100%"], baseline="4s",
                      health={"min_segments": 300, "max_retransmit_ratio": "15%", "max_increase": max_increase})


def test_a_somewhat_worse_control_fails_a_tight_limit_with_the_test_confirming_it(fleet, journal_home, tmp_path):
    applied = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(eager_plan(tmp_path, "1%")))
    try:
        assert applied.returncode == 1, applied.stderr + applied.stdout
        (verdict,) = json.loads(applied.stdout)["verdicts"]
        assert verdict["hosts"] == ["lab1"] and verdict["outcome"] == "fail"
        assert any("above the control hosts" in reason and "significant: Mann-Whitney" in reason
                   for reason in verdict["reasons"]), verdict["reasons"]
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert all(default_of(host) == "reno" for host in HOSTS)
    assert_gone("ccr_eager")


def test_the_same_control_passes_where_the_plan_allows_its_rise(fleet, journal_home, tmp_path):
    applied = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(eager_plan(tmp_path, "10%")))
    try:
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert {v["outcome"] for v in json.loads(applied.stdout)["verdicts"]} == {"pass"}
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert all(default_of(host) == "reno" for host in HOSTS)
    assert_gone("ccr_eager")
