"""The judge on hand-made windows: pure, fast."""

from ccrollout.judge import FAIL, INCONCLUSIVE, PASS, Limits, Window, judge

LIMITS = Limits(max_retransmit_ratio=0.05, max_increase=0.02, min_segments=1000)


def test_clean_canary_passes():
    verdict = judge({"a": Window(10_000, 60)}, {"a": Window(10_000, 50)}, {"b": Window(10_000, 70)}, LIMITS)
    assert verdict.outcome == PASS
    assert "0.60%" in verdict.reasons[0]


def test_ceiling_fails_with_figures():
    verdict = judge({"a": Window(10_000, 7_000)}, {}, {}, LIMITS)
    assert verdict.outcome == FAIL
    assert "70.00% is above the ceiling 5.00%" in verdict.reasons[0]


def test_increase_over_baseline_fails_below_the_ceiling():
    verdict = judge({"a": Window(10_000, 400)}, {"a": Window(10_000, 100)}, {}, LIMITS)
    assert verdict.outcome == FAIL
    assert "above its baseline" in verdict.reasons[0]


def test_increase_over_control_fails():
    verdict = judge({"a": Window(10_000, 400)}, {}, {"b": Window(5_000, 50), "c": Window(5_000, 50)}, LIMITS)
    assert verdict.outcome == FAIL
    assert "above the control hosts (1.00%)" in verdict.reasons[0]


def test_too_little_traffic_is_never_a_pass_by_default():
    verdict = judge({"a": Window(10, 0)}, {}, {}, LIMITS)
    assert verdict.outcome == INCONCLUSIVE
    assert "too little traffic" in verdict.reasons[0]


def test_too_little_traffic_passes_only_when_the_plan_says_so():
    limits = Limits(0.05, 0.02, 1000, on_inconclusive=PASS)
    assert judge({"a": Window(10, 0)}, {}, {}, limits).outcome == PASS


def test_thin_references_are_ignored():
    # A baseline of 20 segments says nothing; only the ceiling applies.
    verdict = judge({"a": Window(10_000, 300)}, {"a": Window(20, 0)}, {}, LIMITS)
    assert verdict.outcome == PASS


def test_max_fail_fraction_tolerates_one_of_four():
    limits = Limits(0.05, 0.02, 1000, max_fail_fraction=0.25)
    canaries = {"a": Window(10_000, 9_000), "b": Window(10_000, 10), "c": Window(10_000, 10), "d": Window(10_000, 10)}
    assert judge(canaries, {}, {}, limits).outcome == PASS
    canaries["b"] = Window(10_000, 9_000)
    assert judge(canaries, {}, {}, limits).outcome == FAIL


def test_unreachable_canary_fails_the_stage():
    verdict = judge({}, {}, {}, LIMITS, unreachable=("a",))
    assert verdict.outcome == FAIL
    assert "unreachable" in verdict.reasons[0]


def test_no_canary_is_inconclusive():
    assert judge({}, {}, {}, LIMITS).outcome == INCONCLUSIVE
