"""The judge on hand-made intervals: pure, fast."""

from ccrollout.judge import (FAIL, INCONCLUSIVE, PASS, Limits, Window, can_stop_early, judge, pooled,
                             typical_ratio)

LIMITS = Limits(max_retransmit_ratio=0.05, max_increase=0.02, min_segments=1000)


def steady(ratio: float, intervals: int = 4, sent: int = 3000) -> list[Window]:
    return [Window(sent, round(sent * ratio)) for _ in range(intervals)]


def test_clean_canary_passes():
    verdict = judge({"a": steady(0.006)}, {"a": steady(0.005)}, {"b": steady(0.007)}, LIMITS)
    assert verdict.outcome == PASS
    assert "0.60%" in verdict.reasons[0]


def test_ceiling_fails_with_figures():
    verdict = judge({"a": steady(0.7)}, {}, {}, LIMITS)
    assert verdict.outcome == FAIL
    assert "70.00% is above the ceiling 5.00%" in verdict.reasons[0]


def test_increase_over_baseline_fails_below_the_ceiling():
    verdict = judge({"a": steady(0.04)}, {"a": steady(0.01)}, {}, LIMITS)
    assert verdict.outcome == FAIL
    assert "above its baseline" in verdict.reasons[0]


def test_increase_over_control_fails():
    verdict = judge({"a": steady(0.04)}, {}, {"b": steady(0.01), "c": steady(0.01)}, LIMITS)
    assert verdict.outcome == FAIL
    assert "above the control hosts (1.00%)" in verdict.reasons[0]


def test_one_burst_interval_does_not_fail_a_good_control():
    # One connection losing a burst: one interval at 26 %, the others at 1 %.
    bursty = steady(0.01, intervals=3) + [Window(3000, 780)]
    verdict = judge({"a": bursty}, {"a": steady(0.01)}, {"b": steady(0.01)}, LIMITS)
    assert verdict.outcome == PASS
    assert abs(typical_ratio(bursty) - 0.01) < 1e-9


def test_too_little_traffic_is_never_a_pass_by_default():
    verdict = judge({"a": [Window(10, 0)]}, {}, {}, LIMITS)
    assert verdict.outcome == INCONCLUSIVE
    assert "too little traffic" in verdict.reasons[0]


def test_too_little_traffic_passes_only_when_the_plan_says_so():
    limits = Limits(0.05, 0.02, 1000, on_inconclusive=PASS)
    assert judge({"a": [Window(10, 0)]}, {}, {}, limits).outcome == PASS


def test_thin_references_are_ignored():
    # A baseline of 20 segments says nothing; only the ceiling applies.
    verdict = judge({"a": steady(0.03)}, {"a": [Window(20, 0)]}, {}, LIMITS)
    assert verdict.outcome == PASS


def test_max_fail_fraction_tolerates_one_of_four():
    limits = Limits(0.05, 0.02, 1000, max_fail_fraction=0.25)
    canaries = {"a": steady(0.9), "b": steady(0.001), "c": steady(0.001), "d": steady(0.001)}
    assert judge(canaries, {}, {}, limits).outcome == PASS
    canaries["b"] = steady(0.9)
    assert judge(canaries, {}, {}, limits).outcome == FAIL


def test_unreachable_canary_fails_the_stage():
    verdict = judge({}, {}, {}, LIMITS, unreachable=("a",))
    assert verdict.outcome == FAIL
    assert "unreachable" in verdict.reasons[0]


def test_no_canary_is_inconclusive():
    assert judge({}, {}, {}, LIMITS).outcome == INCONCLUSIVE


def test_control_hosts_are_pooled_interval_by_interval():
    assert pooled({"b": [Window(10, 1), Window(10, 2)], "c": [Window(30, 3)]}) == [Window(40, 4)]


def test_a_failure_stops_the_bake_only_once_it_has_held():
    verdict = judge({"a": steady(0.7)}, {}, {}, LIMITS)
    assert not can_stop_early(verdict, intervals=2)
    assert can_stop_early(verdict, intervals=3)
