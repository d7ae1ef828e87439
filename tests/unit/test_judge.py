"""The judge on hand-made intervals: pure, fast."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ccrollout.rollout.judge import (CONTROL, EXTEND, FAIL, INCONCLUSIVE, PASS, Comparison, Limits, Window, can_stop_early,
                             interval_budget, judge, pooled, should_extend, typical_ratio)

LIMITS = Limits(max_retransmit_ratio=0.05, max_increase=0.02, min_segments=1000)
# The lab playbooks' limits.
LAB = Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=500)


def steady(ratio: float, intervals: int = 4, sent: int = 3000) -> list[Window]:
    return [Window(sent, round(sent * ratio)) for _ in range(intervals)]


def around(ratio: float, intervals: int = 4, sent: int = 7000) -> list[Window]:
    """Intervals near RATIO that differ a little, as measured ones do (no ties)."""
    return [Window(sent, round(sent * ratio) + index) for index in range(intervals)]


def burst(ratio: float = 0.13, sent: int = 7000) -> Window:
    return Window(sent, round(sent * ratio))


def lab_controls(intervals: int) -> dict[str, list[Window]]:
    return {"lab2": around(0.011, intervals), "lab3": around(0.009, intervals)}


# The old rules, kept

def test_clean_canary_passes():
    verdict = judge({"a": steady(0.006)}, {"a": steady(0.005)}, {"b": steady(0.007)}, LIMITS)
    assert verdict.outcome == PASS
    assert "0.60%" in verdict.reasons[0]


def test_ceiling_fails_with_figures():
    verdict = judge({"a": steady(0.7)}, {}, {}, LIMITS)
    assert verdict.outcome == FAIL
    assert "70.00% is above the ceiling 5.00% (median of 4 intervals)" in verdict.reasons[0]


def test_increase_over_baseline_fails_below_the_ceiling():
    verdict = judge({"a": steady(0.04)}, {"a": steady(0.01)}, {}, LIMITS)
    assert verdict.outcome == FAIL
    (reason,) = verdict.reasons
    assert "4.00% is 3.00 points above its baseline (1.00%), 2.00 allowed" in reason
    assert "significant: Mann-Whitney p=0.014, n=4 vs 4" in reason


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
    assert "too little traffic to judge: 10 segments sent, 1000 needed" in verdict.reasons[0]


def test_too_little_traffic_passes_only_when_the_plan_says_so():
    limits = Limits(0.05, 0.02, 1000, on_inconclusive=PASS)
    assert judge({"a": [Window(10, 0)]}, {}, {}, limits).outcome == PASS


def test_thin_references_are_ignored():
    # A baseline of 20 segments says nothing; only the ceiling applies.
    verdict = judge({"a": steady(0.03)}, {"a": [Window(20, 0)]}, {}, LIMITS)
    assert verdict.outcome == PASS
    assert "a: its baseline too thin to compare with (20 segments, 1000 needed)" in verdict.reasons


def test_max_fail_fraction_tolerates_one_of_four():
    limits = Limits(0.05, 0.02, 1000, max_fail_fraction=0.25)
    canaries = {"a": steady(0.9), "b": steady(0.001), "c": steady(0.001), "d": steady(0.001)}
    assert judge(canaries, {}, {}, limits).outcome == PASS
    canaries["b"] = steady(0.9)
    assert judge(canaries, {}, {}, limits).outcome == FAIL


def test_an_unreachable_canary_fails_its_stage():
    verdict = judge({}, {}, {}, LIMITS, unreachable=("a",))
    assert verdict.outcome == FAIL and not verdict.passed
    assert "a: unreachable during the bake" in verdict.reasons[0]


def test_an_unreachable_canary_is_not_judged_on_stale_figures():
    verdict = judge({"a": steady(0.001)}, {}, {}, LIMITS, unreachable=("a",))
    assert [host.outcome for host in verdict.hosts] == [FAIL]


def test_no_canary_is_inconclusive():
    assert judge({}, {}, {}, LIMITS).outcome == INCONCLUSIVE


def test_control_hosts_are_pooled_interval_by_interval():
    assert pooled({"b": [Window(10, 1), Window(10, 2)], "c": [Window(30, 3)]}) == [Window(40, 4)]


def test_a_failure_stops_the_bake_only_once_it_has_held():
    limits = Limits(0.05, 0.02, 1000, min_intervals=1)
    assert not can_stop_early(judge({"a": steady(0.7, intervals=2)}, {}, {}, limits), intervals=2)
    assert can_stop_early(judge({"a": steady(0.7, intervals=3)}, {}, {}, limits), intervals=3)


def test_limits_keep_their_positional_fields_and_defaults():
    limits = Limits(0.05, 0.02, 1000)
    assert (limits.max_fail_fraction, limits.on_inconclusive) == (0.0, FAIL)
    assert (limits.significance, limits.min_intervals, limits.max_extend_intervals) == (0.05, 3, 0)


@pytest.mark.parametrize("change", [{"on_inconclusive": "maybe"}, {"significance": 0.0}, {"significance": 1.5},
                                    {"min_intervals": 0}, {"max_extend_intervals": -1}])
def test_limits_refuse_values_that_mean_nothing(change):
    with pytest.raises(ValueError):
        Limits(0.05, 0.02, 1000, **change)


# Too few samples

def test_too_few_intervals_is_inconclusive_with_figures():
    verdict = judge({"a": steady(0.9, intervals=2)}, {}, {}, LIMITS)
    assert verdict.outcome == INCONCLUSIVE
    assert verdict.reasons == ("a: too few intervals to judge: 2 with traffic, 3 needed",)
    assert verdict.hosts[0].needs_more_data


def test_intervals_without_traffic_are_not_samples():
    quiet = steady(0.01, intervals=2) + [Window(0, 0), Window(0, 0)]
    verdict = judge({"a": quiet}, {}, {}, LIMITS)
    assert verdict.outcome == INCONCLUSIVE
    assert "2 with traffic" in verdict.reasons[0]


# Effect size and significance together

def test_a_significant_but_small_rise_passes_without_a_test():
    # Twelve intervals a side: 0.5 points more is significant, and harmless.
    canary, control = around(0.015, 12), around(0.010, 12)
    assert stats.mannwhitneyu([window.retransmit_ratio for window in canary],
                              [window.retransmit_ratio for window in control], alternative="greater").pvalue < 0.001
    verdict = judge({"a": canary}, {}, {"b": control}, LIMITS)
    assert verdict.outcome == PASS
    (comparison,) = verdict.hosts[0].comparisons
    assert comparison.p_value is None
    assert "a: the control hosts 1.08%, +0.50 points (2.00 allowed, n=12 vs 12)" in verdict.reasons


def test_a_big_rise_the_test_does_not_confirm_is_inconclusive():
    # Two bursts of four: the median moves, but the canary's other intervals sit among the control's.
    canary = [Window(7000, 63), Window(7000, 84), burst(0.25), burst(0.26)]
    verdict = judge({"a": canary}, {}, lab_controls(4), LAB)
    assert verdict.outcome == INCONCLUSIVE
    reason, unjudged = verdict.reasons  # these windows carry no bytes or RTT: those go unjudged
    assert "points above the control hosts" in reason and "but not significant at 0.05: Mann-Whitney p=" in reason
    assert unjudged == "a: not judged, too few intervals carry them: goodput, smoothed RTT"
    assert verdict.hosts[0].needs_more_data


def test_control_hosts_count_as_one_sample_per_host_and_interval():
    verdict = judge({"a": around(0.3, 3)}, {}, lab_controls(3), LAB)
    assert verdict.outcome == FAIL
    assert "significant: Mann-Whitney p=0.012, n=3 vs 6" in verdict.reasons[1]


def test_ties_get_the_exact_p_value():
    # Identical intervals tie; the normal approximation would claim p=0.02 here.
    (comparison,) = judge({"a": steady(0.04, 3)}, {}, {"b": steady(0.01, 3)}, LIMITS).hosts[0].comparisons
    assert comparison.p_value == pytest.approx(1 / 20)


@pytest.mark.parametrize("canary_intervals, reference_intervals", [(3, 2), (4, 2), (4, 1), (3, 3), (4, 8)])
def test_the_smallest_p_value_is_that_of_the_most_extreme_order(canary_intervals, reference_intervals):
    comparison = Comparison(CONTROL, 0.2, 0.01, canary_intervals, reference_intervals, None)
    extreme = stats.mannwhitneyu(range(reference_intervals, reference_intervals + canary_intervals),
                                 range(reference_intervals), alternative="greater", method="exact")
    assert comparison.smallest_p_value == pytest.approx(extreme.pvalue)


# A baseline too short for the test

def test_a_short_baseline_defers_to_the_control_hosts():
    # 12 % against a 1 % baseline, but the control hosts are at 8 % too: something fleet-wide.
    controls = {"b": around(0.08), "c": around(0.081)}
    verdict = judge({"a": around(0.12)}, {"a": around(0.01, 2)}, controls, LAB)
    assert verdict.outcome == PASS
    assert any("2 intervals of its baseline are too few for the test to reach 0.05 (p>=0.067): relying on "
               "the control hosts and the ceiling" in reason for reason in verdict.reasons)


def test_a_short_baseline_alone_fails_on_effect_size_when_every_interval_is_above():
    verdict = judge({"a": around(0.14)}, {"a": around(0.01, 2)}, {}, LAB)
    assert verdict.outcome == FAIL
    assert "so the effect size decides, with every interval above all of theirs (Mann-Whitney p=0.067, n=4 vs 2)" \
        in verdict.reasons[0]


def test_a_short_baseline_alone_with_overlapping_intervals_is_inconclusive():
    canary = [Window(7000, 70), burst(0.14), burst(0.145), burst(0.14)]
    verdict = judge({"a": canary}, {"a": around(0.01, 2)}, {}, LAB)
    assert verdict.outcome == INCONCLUSIVE
    assert "and the intervals overlap" in verdict.reasons[0]


def test_a_pass_says_when_a_reference_was_too_short_for_the_test():
    verdict = judge({"a": around(0.01)}, {"a": around(0.01, 2)}, {}, LAB)
    assert verdict.outcome == PASS
    assert "n=4 vs 2, too few for the test: effect size only" in verdict.reasons[1]


# The lab's figures: a good control with bursts, the broken one

@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 3), burst_ratio=st.floats(0.10, 0.15), with_controls=st.booleans())
def test_one_lab_burst_never_fails_a_good_control(position, burst_ratio, with_controls):
    canary = around(0.01)
    canary[position] = burst(burst_ratio)
    controls = lab_controls(4) if with_controls else {}
    for intervals in range(1, 5):
        verdict = judge({"lab1": canary[:intervals]}, {"lab1": around(0.01, 2)},
                        {host: series[:intervals] for host, series in controls.items()}, LAB)
        assert not can_stop_early(verdict, intervals)
    assert verdict.outcome == PASS


@settings(max_examples=40, deadline=None)
@given(ratios=st.lists(st.floats(0.23, 0.32), min_size=3, max_size=3), with_controls=st.booleans())
def test_the_broken_control_fails_and_stops_at_the_third_interval(ratios, with_controls):
    canary = [burst(ratio) for ratio in ratios]
    controls = lab_controls(3) if with_controls else {}
    baseline = {"lab1": [Window(7000, 70), burst(0.13)]}  # even with a burst in the baseline
    for intervals in (1, 2):
        early = judge({"lab1": canary[:intervals]}, baseline,
                      {host: series[:intervals] for host, series in controls.items()}, LAB)
        assert not can_stop_early(early, intervals)
    verdict = judge({"lab1": canary}, baseline, controls, LAB)
    assert verdict.outcome == FAIL
    assert can_stop_early(verdict, 3)


# Early stop

def test_two_bursts_in_three_intervals_wait_for_the_fourth():
    # The median of three is a burst, but a clean fourth interval would make the bursts a minority.
    canary = [Window(7000, 84), burst(0.13), burst(0.14)]  # 1.2 %: above every control interval
    early = judge({"lab1": canary}, {}, lab_controls(3), LAB)
    assert early.outcome == FAIL and "significant" in early.reasons[0]
    assert not can_stop_early(early, 3)
    final = judge({"lab1": canary + [Window(7000, 71)]}, {}, lab_controls(4), LAB)
    assert final.outcome == PASS


def test_a_clear_pass_never_stops_early():
    verdict = judge({"a": around(0.01, 4)}, {}, lab_controls(4), LAB)
    assert verdict.passed and not can_stop_early(verdict, 4)


def test_a_host_already_above_the_ceiling_fails_without_stopping_early():
    # Over the ceiling, but no worse than before the change: fail at the bake's end, no rush.
    verdict = judge({"a": around(0.2)}, {"a": around(0.2)}, {}, LAB)
    assert verdict.outcome == FAIL
    assert not verdict.clear_failure and not can_stop_early(verdict, 4)


def test_only_clear_failures_can_fail_a_stage_early():
    limits = Limits(0.15, 0.10, 500, max_fail_fraction=0.4)
    canaries = {"a": around(0.3), "b": around(0.2), "c": around(0.01)}
    baselines = {"a": around(0.01), "b": around(0.2), "c": around(0.01)}
    verdict = judge(canaries, baselines, {}, limits)
    assert verdict.outcome == FAIL  # two of three failed
    assert not can_stop_early(verdict, 4)  # but only one clearly


# Extending the bake

def test_extend_keeps_the_verdict_inconclusive():
    limits = Limits(0.05, 0.02, 1000, on_inconclusive=EXTEND, max_extend_intervals=2)
    verdict = judge({"a": [Window(10, 0)]}, {}, {}, limits)
    assert verdict.outcome == INCONCLUSIVE and not verdict.passed


def test_interval_budget_adds_the_extension_only_when_the_plan_extends():
    assert interval_budget(Limits(0.05, 0.02, 1000, on_inconclusive=EXTEND, max_extend_intervals=3), 4) == 7
    assert interval_budget(Limits(0.05, 0.02, 1000, max_extend_intervals=3), 4) == 4


def test_should_extend_while_more_data_can_decide_and_budget_is_left():
    verdict = judge({"a": steady(0.01, intervals=2)}, {}, {}, LIMITS)
    assert should_extend(verdict, elapsed_intervals=4, max_intervals=6)
    assert not should_extend(verdict, elapsed_intervals=6, max_intervals=6)


def test_decided_verdicts_and_unreachable_hosts_do_not_extend():
    assert not should_extend(judge({"a": steady(0.01)}, {}, {}, LIMITS), 4, 8)
    assert not should_extend(judge({"a": steady(0.9)}, {}, {}, LIMITS), 4, 8)
    stuck = judge({"a": steady(0.01, intervals=2)}, {}, {}, LIMITS, unreachable=("b",))
    assert stuck.outcome == FAIL and not should_extend(stuck, 4, 8)
    assert not should_extend(judge({}, {}, {}, LIMITS), 4, 8)


# More than retransmissions: goodput and RTT, each judged on its own

MB = 1_000_000


def flowing(megabytes_per_second: float, srtt_ms: float = 4.0, intervals: int = 4, ratio: float = 0.01,
            sent: int = 7000) -> list[Window]:
    """2 s intervals of a host whose figures carry bytes and RTT, a little apart (no ties)."""
    return [Window(sent, round(sent * ratio) + index, bytes_acked=int((megabytes_per_second * MB + index * 1000) * 2),
                   seconds=2.0, connections=2, srtt_ms=srtt_ms + index / 100) for index in range(intervals)]


def flowing_controls(intervals: int = 4) -> dict[str, list[Window]]:
    return {"lab2": flowing(5.2, 3.6, intervals), "lab3": flowing(5.0, 3.4, intervals)}


def metric_of(verdict, name: str):
    return next(metric for metric in verdict.hosts[0].metrics if metric.metric == name)


def test_a_starving_control_fails_on_goodput_though_it_retransmits_nothing():
    starving = flowing(0.04, 4.0, ratio=0.0, sent=90)  # the lab's: 361 segments in the bake
    verdict = judge({"a": starving}, {"a": flowing(5.3, intervals=2)}, flowing_controls(), LAB)
    assert verdict.outcome == FAIL
    assert verdict.reasons[0].startswith("a: goodput 0.33 Mbit/s is 99% below the control hosts (40.81 Mbit/s), "
                                         "50% allowed; significant: Mann-Whitney p=0.002, n=4 vs 8")
    assert "a: too little traffic to judge: 360 segments sent, 500 needed" in verdict.reasons
    goodput = metric_of(verdict, "goodput")
    assert goodput.outcome == FAIL and goodput.limit == 0.5
    assert {comparison.reference for comparison in goodput.comparisons} == {"its baseline", "the control hosts"}
    assert metric_of(verdict, "retransmit_ratio").outcome == "unjudged"  # too little traffic for a ratio


def test_a_goodput_collapse_ends_the_bake_early_once_one_good_interval_could_not_turn_it():
    # After 3 intervals one interval better than every other could still make the test doubt;
    # after 4 it could not.
    early = judge({"a": flowing(0.04, intervals=3)}, {}, flowing_controls(3), LAB)
    assert early.outcome == FAIL and not early.clear_failure
    verdict = judge({"a": flowing(0.04, intervals=4)}, {}, flowing_controls(4), LAB)
    assert verdict.outcome == FAIL and verdict.clear_failure and can_stop_early(verdict, 4)


def test_a_good_control_with_somewhat_less_goodput_and_more_rtt_passes_and_says_so():
    verdict = judge({"a": flowing(4.1, 5.0)}, {"a": flowing(5.3, 3.5, intervals=2)}, flowing_controls(), LAB)
    assert verdict.outcome == PASS, verdict.reasons
    assert any(reason.startswith("a: goodput 32.81 Mbit/s, the control hosts 40.81 Mbit/s, -20% (50% fall allowed")
               for reason in verdict.reasons), verdict.reasons
    assert any(reason.startswith("a: smoothed RTT 5.01 ms, its baseline 3.50 ms, +43% (100% rise allowed, n=4 vs 2, "
                                 "too few for the test: effect size only)") for reason in verdict.reasons), verdict.reasons
    assert {metric.metric: metric.outcome for metric in verdict.hosts[0].metrics} == \
        {"retransmit_ratio": PASS, "goodput": PASS, "srtt": PASS}


def test_rtt_that_more_than_doubles_fails_with_the_metric_named():
    verdict = judge({"a": flowing(5.1, 12.0)}, {}, flowing_controls(), LAB)
    assert verdict.outcome == FAIL
    (reason,) = verdict.reasons
    assert reason == ("a: smoothed RTT 12.02 ms is 242% above the control hosts (3.51 ms), 100% allowed; "
                      "significant: Mann-Whitney p=0.002, n=4 vs 8")


def test_more_goodput_or_less_rtt_is_never_worse():
    verdict = judge({"a": flowing(50.0, 0.5)}, {"a": flowing(5.3, 3.5, intervals=2)}, flowing_controls(), LAB)
    assert verdict.outcome == PASS


def test_a_drop_within_the_limit_but_below_every_reference_passes():
    verdict = judge({"a": flowing(4.0)}, {}, flowing_controls(), LAB)  # -21 %: confirmed, but allowed
    assert verdict.outcome == PASS and metric_of(verdict, "goodput").comparisons[0].p_value is None


def test_only_the_metrics_the_plan_names_are_judged():
    only_ratio = Limits(0.15, 0.10, 500, metrics=("retransmit_ratio",))
    verdict = judge({"a": flowing(0.04)}, {}, flowing_controls(), only_ratio)
    assert verdict.outcome == PASS and [metric.metric for metric in verdict.hosts[0].metrics] == ["retransmit_ratio"]
    no_ratio = Limits(0.01, 0.0, 500, metrics=("goodput",))  # nor its ceiling
    verdict = judge({"a": flowing(5.1, ratio=0.2)}, {}, flowing_controls(), no_ratio)
    assert verdict.outcome == PASS and verdict.reasons[0] == "a: 4 intervals, 28000 segments"
    per_connection = Limits(0.15, 0.10, 500, metrics=("goodput_per_connection",), max_goodput_drop=0.3)
    verdict = judge({"a": flowing(3.0)}, {}, flowing_controls(), per_connection)
    assert verdict.outcome == FAIL and "goodput per connection" in verdict.reasons[0]


def test_a_source_without_bytes_or_rtt_leaves_them_unjudged_never_failed():
    verdict = judge({"a": around(0.01)}, {}, lab_controls(4), LAB)
    assert verdict.outcome == PASS
    assert "a: not judged, too few intervals carry them: goodput, smoothed RTT" in verdict.reasons
    assert {metric.metric: metric.outcome for metric in verdict.hosts[0].metrics} == \
        {"retransmit_ratio": PASS, "goodput": "unjudged", "srtt": "unjudged"}


def test_references_without_bytes_are_noted_and_left_out():
    verdict = judge({"a": flowing(0.04)}, {"a": around(0.01, 2)}, lab_controls(4), LAB)
    assert verdict.outcome == PASS
    assert "a: its baseline does not carry goodput" in verdict.reasons
    assert "a: the control hosts do not carry goodput" not in verdict.reasons  # the note names the reference
    assert metric_of(verdict, "goodput").comparisons == ()


def test_thin_references_are_not_compared_on_goodput_either():
    idle = {"lab2": flowing(0.01, sent=20), "lab3": flowing(0.01, sent=20)}
    verdict = judge({"a": flowing(0.04, sent=90)}, {}, idle, LAB)
    assert verdict.outcome == INCONCLUSIVE  # too little traffic everywhere: nothing to say
    assert "a: the control hosts too thin to compare with (160 segments, 500 needed)" in verdict.reasons


@pytest.mark.parametrize("metric, canary, reference, worsening", [
    ("goodput", 2.0, 8.0, 0.75), ("goodput", 8.0, 2.0, -3.0), ("srtt", 6.0, 3.0, 1.0),
    ("srtt", 3.0, 0.0, float("inf")), ("goodput", 1.0, 0.0, 0.0), ("retransmit_ratio", 0.05, 0.01, 0.04)])
def test_worsening_is_relative_towards_worse_except_for_the_ratio(metric, canary, reference, worsening):
    assert Comparison(CONTROL, canary, reference, 4, 8, None, metric).worsening == pytest.approx(worsening)


def test_limits_refuse_metrics_they_do_not_know():
    with pytest.raises(ValueError, match="metrics must name"):
        Limits(0.05, 0.02, 1000, metrics=("latency",))
