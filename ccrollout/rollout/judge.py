"""The canary decision: per-interval figures in, a verdict with its reasons out.

Pure: no I/O, no clocks, so it can be tested and benchmarked on recorded
samples. Each changed host is compared with (a) its own baseline from before the
change, (b) the hosts not yet changed over the same intervals and (c) the plan's
absolute ceiling. Too little traffic is never a pass by itself.

Why the rule is what it is, with only 2 to 4 intervals a side:

- A sample is one host's retransmit ratio over one sampling interval. Ratios
  are skewed and bursty (in the lab ~1 %, with one interval in 25 at 10-15 %),
  so nothing normal is assumed: a comparison is a one-sided Mann-Whitney U test
  (canary greater) on the intervals, as Kayenta does, computed by scipy. Each
  control host's interval is a sample of its own, the same kind of figure as a
  canary interval; two control hosts give the test twice the samples.
- Significance alone is not a verdict: over enough intervals a harmless rise
  is significant. A comparison fails only when the canary's median exceeds the
  reference's by more than `max_increase` AND the test confirms it. A rise
  within `max_increase` passes whatever its p-value, so the test is not run.
- Under no change every order of the n + m ratios is equally likely, so the
  smallest p the test can reach is 1 / C(n + m, n): 4 bake intervals against a
  2-interval baseline never get below 1/15 = 0.067. Such a comparison is too
  short for the test. When another comparison can be tested (the control hosts),
  the short one defers to it and to the ceiling; when none can, it fails only on
  the strongest evidence its intervals allow: the rise beyond `max_increase`
  and every canary interval above every reference interval. The reasons say
  which applied.
- A rise beyond `max_increase` that the test does not confirm is inconclusive,
  not a pass: more intervals (on_inconclusive: extend) can settle it.
- The ceiling is compared with the median, so one burst cannot cross it: at
  least half of the intervals must.
- No verdict before `min_intervals` intervals with traffic: a median of one or
  two intervals is a single burst away from any figure.
- Early stop: only a fail, only from the third interval, and only a clear one:
  the rise over a reference is beyond `max_increase` and the test or the ceiling
  confirms it (with no reference at all, the ceiling alone), and it would still
  stand if the next interval retransmitted nothing, so the rest of the bake
  could not turn it (two lab bursts in three intervals could be turned). A pass
  never stops early: the bake is the minimum exposure.
- Two comparisons per host share the significance level; at these sample
  sizes the effect-size threshold, not alpha, is what keeps good controls from
  failing (bench/judge.py measures the false-fail rate).

More than retransmissions (rollout/metrics.py names each figure and the way it
is worse). A control that starves its connections retransmits nothing and
passes on the ratio alone, so each metric the plan names is judged on its own,
by the same rule: a comparison with each reference, the test one-sided towards
worse, the effect size against the metric's own limit. The retransmit ratio's
limit is in percentage points, as before; goodput's and RTT's are relative
(a fall of median goodput, a rise of median srtt, as a share of the
reference's), since their scale is the host's own. Only the retransmit ratio has
a ceiling. A metric the figures do not carry (a source without bytes or RTT) is
left unjudged with a note, never failed. Too little traffic leaves the ratio
unjudged, but not goodput: a collapse of what the canary gets through, while
its references carried enough, is the very failure a starving control shows.
"""

import math
import statistics
from dataclasses import dataclass, field

from ..status import MetricOutcome, StageOutcome
from . import metrics
from .window import Series, Window, total

__all__ = ["Window", "Series", "total"]  # re-exported: the judge is where figures have always come from

PASS, FAIL, INCONCLUSIVE = StageOutcome.PASS, StageOutcome.FAIL, StageOutcome.INCONCLUSIVE
UNJUDGED = MetricOutcome.UNJUDGED  # a metric's outcome when its figures were missing or too thin
EXTEND = "extend"  # an on_inconclusive choice: bake longer while more data can decide
PAUSE = "pause"    # an on_inconclusive choice: wait for an operator's promote or abort
ON_INCONCLUSIVE_CHOICES = (FAIL, PASS, EXTEND, PAUSE)

# A failure may end the bake early only once it holds over this many intervals.
MIN_INTERVALS_TO_STOP_EARLY = 3

# The best a next interval could be, when asking whether a failure could still turn.
CLEAN_INTERVAL_RATIO = 0.0

# Above this many rank orders the exact tie-aware test gets slow and scipy's
# normal approximation is good enough; below it that approximation is poor.
EXACT_TEST_MAX_ORDERS = 5000

BASELINE, CONTROL = "its baseline", "the control hosts"
Reference = tuple[str, list[float]]  # BASELINE or CONTROL, and that reference's interval values

RETRANSMIT_RATIO = "retransmit_ratio"
DEFAULT_METRICS = (RETRANSMIT_RATIO, "goodput", "srtt")
# Metrics whose limit is a share of the reference's median rather than a difference.
RELATIVE_LIMITS = {"goodput": "max_goodput_drop", "goodput_per_connection": "max_goodput_drop",
                   "srtt": "max_rtt_increase", "min_rtt": "max_rtt_increase"}


def interval_ratios(series: Series) -> list[float]:
    """The retransmit ratio of each interval that carried traffic."""
    return [window.retransmit_ratio for window in series if window.sent]


def typical_ratio(series: Series) -> float:
    """The median of the ratios of the intervals that carried traffic."""
    ratios = interval_ratios(series)
    return statistics.median(ratios) if ratios else 0.0


def interval_values(metric: str, series: Series) -> list[float]:
    """The metric in each interval that carries it (for the ratio: each with traffic)."""
    value = metrics.BY_NAME[metric].value
    return [figure for window in series if (figure := value(window)) is not None]


def pooled(series_by_host: dict[str, Series]) -> Series:
    """Interval by interval, the sum over hosts (for the control group)."""
    if not series_by_host:
        return []
    length = min(len(series) for series in series_by_host.values())
    return [total([series[index] for series in series_by_host.values()]) for index in range(length)]


@dataclass(frozen=True)
class Limits:
    max_retransmit_ratio: float   # absolute ceiling for a host's median interval, as a fraction
    max_increase: float           # allowed rise of the median over baseline and control, fraction points
    min_segments: int             # below this a host's bake (or a reference) is too little to judge
    max_fail_fraction: float = 0.0  # share of a stage's hosts that may fail
    on_inconclusive: str = FAIL     # fail | pass | extend (bake longer, then count as fail) | pause
    significance: float = 0.05      # one-sided Mann-Whitney level a rise must reach to fail
    min_intervals: int = 3          # fewest intervals with traffic before a host is judged
    max_extend_intervals: int = 0   # with on_inconclusive: extend, how many intervals more at most
    max_goodput_drop: float = 0.5   # allowed fall of median goodput, a share of the reference's
    max_rtt_increase: float = 1.0   # allowed rise of median RTT, a share of the reference's
    metrics: tuple[str, ...] = DEFAULT_METRICS  # the metrics judged, by their names in metrics.py

    def __post_init__(self):
        if self.on_inconclusive not in ON_INCONCLUSIVE_CHOICES:
            raise ValueError(f"on_inconclusive must be one of {', '.join(ON_INCONCLUSIVE_CHOICES)}, "
                             f"not {self.on_inconclusive!r}")
        if not 0 < self.significance < 1:
            raise ValueError(f"significance must be between 0 and 1, not {self.significance}")
        if self.min_intervals < 1 or self.max_extend_intervals < 0:
            raise ValueError("min_intervals must be 1 or more and max_extend_intervals 0 or more")
        unknown = [name for name in self.metrics if name not in metrics.BY_NAME]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must name one or more of {', '.join(metrics.BY_NAME)}, not {unknown}")

    def limit_of(self, metric: str) -> float:
        """How much worse than a reference METRIC may get: points for the ratio, else a share."""
        return getattr(self, RELATIVE_LIMITS[metric]) if metric in RELATIVE_LIMITS else self.max_increase


@dataclass(frozen=True)
class Comparison:
    """A canary's intervals against one reference's: the figures a decision rests on."""

    reference: str                # BASELINE or CONTROL
    canary_median: float
    reference_median: float
    canary_intervals: int
    reference_intervals: int
    p_value: float | None         # one-sided Mann-Whitney towards worse; None when no test was needed
    metric: str = RETRANSMIT_RATIO

    @property
    def increase(self) -> float:
        return self.canary_median - self.reference_median

    @property
    def worsening(self) -> float:
        """How much worse the canary is: points of the ratio, else a share of the reference's median."""
        if self.metric not in RELATIVE_LIMITS:
            return self.increase
        towards_worse = self.increase if metrics.BY_NAME[self.metric].worse == metrics.HIGHER else -self.increase
        if self.reference_median > 0:
            return towards_worse / self.reference_median
        return math.inf if towards_worse > 0 else 0.0

    @property
    def smallest_p_value(self) -> float:
        # Under no change each of the C(n + m, n) rank orders is equally likely;
        # all canary intervals on top is one of them.
        return 1 / math.comb(self.canary_intervals + self.reference_intervals, self.canary_intervals)

    def testable(self, limits: Limits) -> bool:
        return _at_most(self.smallest_p_value, limits.significance)

    def beyond_limit(self, limits: Limits) -> bool:
        return self.worsening > limits.limit_of(self.metric)

    def confirmed(self, limits: Limits) -> bool:
        """The test backs the rise: significant, or as ordered as too few intervals allow."""
        if self.p_value is None:
            return False
        needed = limits.significance if self.testable(limits) else self.smallest_p_value
        return _at_most(self.p_value, needed)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one host: its median over the bake, its comparisons, and what they decided."""

    metric: str
    outcome: str                                 # PASS, FAIL, INCONCLUSIVE or UNJUDGED
    canary_median: float | None
    limit: float
    comparisons: tuple[Comparison, ...] = ()


@dataclass(frozen=True)
class HostVerdict:
    host: str
    outcome: str
    reasons: tuple[str, ...]
    retransmit_ratio: float
    sent: int
    intervals: int = 0                           # intervals with traffic that were judged
    comparisons: tuple[Comparison, ...] = ()     # the retransmit ratio's, as before metrics
    clear_failure: bool = False                  # a failure strong enough to end the bake early
    needs_more_data: bool = False                # inconclusive, and more intervals could decide
    metrics: tuple[MetricVerdict, ...] = ()      # every metric the plan names, judged or not


@dataclass(frozen=True)
class Verdict:
    outcome: str
    reasons: tuple[str, ...]
    hosts: tuple[HostVerdict, ...] = field(default=())
    clear_failure: bool = False  # the clearly failed hosts alone fail the stage

    @property
    def passed(self) -> bool:
        return self.outcome == PASS


def _at_most(p_value: float, level: float) -> bool:
    # Exact p-values such as 1/20 against 0.05 must not fail on rounding.
    return p_value <= level * (1 + 1e-9)


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.2f}%"


def _stats():
    # scipy.stats takes a second or more to import: only a bake that compares needs it, and a
    # command that changes nothing (a no-op apply, check, status) should not wait for it.
    from scipy import stats
    return stats


def _u_statistic(canary, reference, axis):
    # Mann-Whitney's U of the canary sample; the same whatever method scipy would use for its p-value.
    return _stats().mannwhitneyu(canary, reference, axis=axis, method="asymptotic").statistic


def _one_sided_p_value(canary: list[float], reference: list[float]) -> float:
    """P(canary intervals rank this high or higher | no change), from scipy."""
    orders = math.comb(len(canary) + len(reference), len(canary))
    ties = len(set(canary) | set(reference)) < len(canary) + len(reference)
    if ties and orders <= EXACT_TEST_MAX_ORDERS:
        # scipy's "exact" ignores ties and "auto" then turns to a normal approximation
        # that is far off at n = 2..8; going through every order of U is exact with ties.
        p_value = _stats().permutation_test((canary, reference), _u_statistic, vectorized=True,
                                         permutation_type="independent", alternative="greater",
                                         n_resamples=EXACT_TEST_MAX_ORDERS).pvalue
    else:
        p_value = _stats().mannwhitneyu(canary, reference, alternative="greater").pvalue
    return 1.0 if math.isnan(p_value) else float(p_value)


def compare(reference: str, canary: list[float], reference_values: list[float], limits: Limits,
            metric: str = RETRANSMIT_RATIO) -> Comparison:
    """Medians, change and (when the change could fail the host) the test's p-value, towards worse."""
    untested = Comparison(reference, statistics.median(canary), statistics.median(reference_values),
                          len(canary), len(reference_values), None, metric)
    if not untested.beyond_limit(limits):
        return untested
    if metrics.BY_NAME[metric].worse == metrics.LOWER:  # lower is worse: rank the negated values
        canary, reference_values = [-value for value in canary], [-value for value in reference_values]
    return Comparison(untested.reference, untested.canary_median, untested.reference_median,
                      untested.canary_intervals, untested.reference_intervals,
                      _one_sided_p_value(canary, reference_values), metric)


def _reference_values(name: str, metric: str, series_list: list[Series],
                      limits: Limits) -> tuple[list[float], str | None]:
    """A reference's interval values, or none and why it is too thin to compare with."""
    if not series_list:
        return [], None
    sent = sum(total(series).sent for series in series_list)
    values = [value for series in series_list for value in interval_values(metric, series)]
    if sent < limits.min_segments or (not values and metric == RETRANSMIT_RATIO):
        return [], f"{name} too thin to compare with ({sent} segments, {limits.min_segments} needed)"
    if not values:
        return [], f"{name} does not carry {metrics.BY_NAME[metric].title}"
    return values, None


def _sizes(comparison: Comparison) -> str:
    return f"n={comparison.canary_intervals} vs {comparison.reference_intervals}"


def _test(comparison: Comparison) -> str:
    return f"Mann-Whitney p={comparison.p_value:.3f}, {_sizes(comparison)}"


def shown(metric: str, value: float) -> str:
    """A metric's value for people."""
    return metrics.BY_NAME[metric].for_people(value)


def _rise(host: str, comparison: Comparison, limits: Limits) -> str:
    if comparison.metric == RETRANSMIT_RATIO:
        return (f"{host}: retransmit ratio {_percent(comparison.canary_median)} is "
                f"{comparison.increase * 100:.2f} points above {comparison.reference} "
                f"({_percent(comparison.reference_median)}), {limits.max_increase * 100:.2f} allowed")
    metric = metrics.BY_NAME[comparison.metric]
    way = "below" if metric.worse == metrics.LOWER else "above"
    return (f"{host}: {metric.title} {shown(metric.name, comparison.canary_median)} is "
            f"{comparison.worsening * 100:.0f}% {way} {comparison.reference} "
            f"({shown(metric.name, comparison.reference_median)}), "
            f"{limits.limit_of(metric.name) * 100:.0f}% allowed")


def _too_short(comparison: Comparison, limits: Limits) -> str:
    return (f"{comparison.reference_intervals} intervals of {comparison.reference} are too few for the test "
            f"to reach {limits.significance:g} (p>={comparison.smallest_p_value:.3f})")


@dataclass
class _Findings:
    failures: list[str] = field(default_factory=list)
    doubts: list[str] = field(default_factory=list)   # beyond the limit, not confirmed
    notes: list[str] = field(default_factory=list)
    clear: bool = False


def _weigh(host: str, comparisons: list[Comparison], ceiling_breached: bool, limits: Limits) -> _Findings:
    """Turn each comparison into a failure, a doubt or a note, as the module docstring says."""
    findings = _Findings(clear=ceiling_breached and not comparisons)
    testable_references = [comparison.reference for comparison in comparisons if comparison.testable(limits)]
    for comparison in comparisons:
        if not comparison.beyond_limit(limits):
            continue
        rise = _rise(host, comparison, limits)
        testable, confirmed = comparison.testable(limits), comparison.confirmed(limits)
        findings.clear |= ceiling_breached or confirmed
        if not testable and testable_references:
            findings.notes.append(f"{rise}; {_too_short(comparison, limits)}: relying on "
                                  f"{' and '.join(testable_references)}"
                                  f"{' and the ceiling' if comparison.metric == RETRANSMIT_RATIO else ''} "
                                  f"({_test(comparison)})")
        elif confirmed and testable:
            findings.failures.append(f"{rise}; significant: {_test(comparison)}")
        elif confirmed:
            findings.failures.append(f"{rise}; {_too_short(comparison, limits)}, so the effect size decides, "
                                     f"with every interval {'below' if _lower(comparison) else 'above'} "
                                     f"all of theirs ({_test(comparison)})")
        elif testable:
            findings.doubts.append(f"{rise}, but not significant at {limits.significance:g}: {_test(comparison)}")
        else:
            findings.doubts.append(f"{rise}, but {_too_short(comparison, limits)} and the intervals overlap "
                                   f"({_test(comparison)})")
    return findings


def _lower(comparison: Comparison) -> bool:
    return metrics.BY_NAME[comparison.metric].worse == metrics.LOWER


def _within(host: str, comparison: Comparison, limits: Limits) -> str:
    short = "" if comparison.testable(limits) else ", too few for the test: effect size only"
    if comparison.metric == RETRANSMIT_RATIO:
        return (f"{host}: {comparison.reference} {_percent(comparison.reference_median)}, "
                f"{comparison.increase * 100:+.2f} points ({limits.max_increase * 100:.2f} allowed, "
                f"{_sizes(comparison)}{short})")
    metric = metrics.BY_NAME[comparison.metric]
    change = comparison.increase / comparison.reference_median if comparison.reference_median else 0.0
    return (f"{host}: {metric.title} {shown(metric.name, comparison.canary_median)}, {comparison.reference} "
            f"{shown(metric.name, comparison.reference_median)}, {change * 100:+.0f}% "
            f"({limits.limit_of(metric.name) * 100:.0f}% {'fall' if _lower(comparison) else 'rise'} allowed, "
            f"{_sizes(comparison)}{short})")


def _references(host: str, metric: str, baseline: Series | None, controls: dict[str, Series] | None,
                limits: Limits) -> tuple[list[Reference], list[str]]:
    """The references there are figures enough to compare with, and a note for each too thin."""
    references, thin_notes = [], []
    for name, series_list in ((BASELINE, [baseline] if baseline else []),
                              (CONTROL, list((controls or {}).values()))):
        values, thin = _reference_values(name, metric, series_list, limits)
        if values:
            references.append((name, values))
        elif thin:
            thin_notes.append(f"{host}: {thin}")
    return references, thin_notes


def _assess(host: str, metric: str, values: list[float], references: list[Reference],
            limits: Limits) -> tuple[list[Comparison], _Findings]:
    """The ceiling (the ratio's only) and each comparison, weighed."""
    comparisons = [compare(name, values, reference, limits, metric) for name, reference in references]
    median = statistics.median(values)
    ceiling_breached = metric == RETRANSMIT_RATIO and median > limits.max_retransmit_ratio
    findings = _weigh(host, comparisons, ceiling_breached, limits)
    if ceiling_breached:
        findings.failures.insert(0, f"{host}: retransmit ratio {_percent(median)} is above the ceiling "
                                    f"{_percent(limits.max_retransmit_ratio)} (median of {len(values)} intervals)")
    return comparisons, findings


def _best_next(metric: str, values: list[float], references: list[Reference]) -> float:
    """The best a next interval could be: no retransmission, no delay, more goodput than any seen."""
    if metrics.BY_NAME[metric].worse == metrics.HIGHER:
        return CLEAN_INTERVAL_RATIO
    return 2 * max(values + [value for _, reference in references for value in reference]) + 1


def _holds_after_a_clean_interval(host: str, metric: str, values: list[float], references: list[Reference],
                                  limits: Limits) -> bool:
    """Would the failure stand if the next interval were as good as an interval can be?

    If not, the rest of the bake could still turn it (two bursts in three
    intervals are a median of bursts; a clean fourth makes them a minority).
    """
    best = _best_next(metric, values, references)
    _, findings = _assess(host, metric, values + [best], references, limits)
    return bool(findings.failures) and findings.clear


@dataclass
class _HostFindings:
    """Every judged metric's findings of one host, together."""

    failures: list[str] = field(default_factory=list)
    doubts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    within: list[str] = field(default_factory=list)
    metrics: list[MetricVerdict] = field(default_factory=list)
    clear: bool = False


def _judge_metric(host: str, metric: str, canary: Series, baseline: Series | None,
                  controls: dict[str, Series] | None, limits: Limits, found: _HostFindings) -> tuple[Comparison, ...]:
    """One metric of one host into FOUND; its comparisons."""
    values = interval_values(metric, canary)
    if len(values) < limits.min_intervals:
        found.metrics.append(MetricVerdict(metric, UNJUDGED, statistics.median(values) if values else None,
                                           limits.limit_of(metric)))
        return ()
    references, thin_notes = _references(host, metric, baseline, controls, limits)
    comparisons, findings = _assess(host, metric, values, references, limits)
    outcome = FAIL if findings.failures else INCONCLUSIVE if findings.doubts else PASS
    if outcome == FAIL and findings.clear and len(values) >= MIN_INTERVALS_TO_STOP_EARLY:
        found.clear |= _holds_after_a_clean_interval(host, metric, values, references, limits)
    found.failures += findings.failures
    found.doubts += findings.doubts
    found.notes += findings.notes + [note for note in thin_notes if note not in found.notes]
    found.within += [_within(host, comparison, limits) for comparison in comparisons
                     if not comparison.beyond_limit(limits)]
    found.metrics.append(MetricVerdict(metric, outcome, statistics.median(values), limits.limit_of(metric),
                                       tuple(comparisons)))
    return tuple(comparisons)


def _unjudged_note(host: str, found: _HostFindings) -> list[str]:
    missing = [metrics.BY_NAME[verdict.metric].title for verdict in found.metrics
               if verdict.outcome == UNJUDGED and verdict.metric != RETRANSMIT_RATIO]
    return [f"{host}: not judged, too few intervals carry them: {', '.join(missing)}"] if missing else []


def judge_host(host: str, canary: Series, baseline: Series | None, controls: dict[str, Series] | None,
               limits: Limits) -> HostVerdict:
    """One changed host against the ceiling, its baseline and the control hosts, metric by metric."""
    sent, ratios, ratio = total(canary).sent, interval_ratios(canary), typical_ratio(canary)
    found = _HostFindings()

    def verdict(outcome: str, reasons, **more) -> HostVerdict:
        return HostVerdict(host, outcome, tuple(reasons), ratio, sent, len(ratios),
                           metrics=tuple(found.metrics), **more)

    too_little = (f"{host}: too little traffic to judge: {sent} segments sent, {limits.min_segments} needed"
                  if sent < limits.min_segments else None)
    if len(ratios) < limits.min_intervals:
        return verdict(INCONCLUSIVE, [too_little or f"{host}: too few intervals to judge: {len(ratios)} with "
                                      f"traffic, {limits.min_intervals} needed"], needs_more_data=True)
    ratio_comparisons: tuple[Comparison, ...] = ()
    for metric in limits.metrics:
        if metric == RETRANSMIT_RATIO and too_little:
            found.metrics.append(MetricVerdict(metric, UNJUDGED, ratio, limits.limit_of(metric)))
        elif metric == RETRANSMIT_RATIO:
            ratio_comparisons = _judge_metric(host, metric, canary, baseline, controls, limits, found)
        else:
            _judge_metric(host, metric, canary, baseline, controls, limits, found)
    if found.failures:  # what was left unjudged matters to a pass, not to a failure
        return verdict(FAIL, found.failures + found.doubts + ([too_little] if too_little else []) + found.notes,
                       comparisons=ratio_comparisons, clear_failure=found.clear)
    notes = found.notes + _unjudged_note(host, found)
    if too_little:
        return verdict(INCONCLUSIVE, [too_little] + found.doubts + notes, needs_more_data=True)
    if found.doubts:
        return verdict(INCONCLUSIVE, found.doubts + notes, comparisons=ratio_comparisons, needs_more_data=True)
    summary = (f"{host}: retransmit ratio {_percent(ratio)} (median of {len(ratios)} intervals, {sent} segments), "
               f"ceiling {_percent(limits.max_retransmit_ratio)}" if RETRANSMIT_RATIO in limits.metrics
               else f"{host}: {len(ratios)} intervals, {sent} segments")
    return verdict(PASS, [summary] + found.within + notes, comparisons=ratio_comparisons)


def _unreachable(host: str) -> HostVerdict:
    # Counted as a failure of its stage, as Ansible counts unreachable hosts: a control that
    # breaks the host's connections can make it unreachable, and that must never pass.
    return HostVerdict(host, FAIL, (f"{host}: unreachable during the bake",), 0.0, 0)


def judge(canaries: dict[str, Series], baselines: dict[str, Series], controls: dict[str, Series],
          limits: Limits, unreachable: tuple[str, ...] = ()) -> Verdict:
    """Decide a stage from each changed host's intervals, its baseline and the control hosts'."""
    host_verdicts = [judge_host(host, series, baselines.get(host), controls, limits)
                     for host, series in sorted(canaries.items()) if host not in unreachable]
    host_verdicts += [_unreachable(host) for host in unreachable]
    if not host_verdicts:
        return Verdict(INCONCLUSIVE, ("no host was changed in this stage",))
    return _stage_verdict(tuple(host_verdicts), limits)


def _stage_verdict(host_verdicts: tuple[HostVerdict, ...], limits: Limits) -> Verdict:
    def too_many(verdicts) -> bool:
        return bool(verdicts) and len(verdicts) / len(host_verdicts) > limits.max_fail_fraction

    def reasons_of(verdicts) -> tuple[str, ...]:
        return tuple(reason for verdict in verdicts for reason in verdict.reasons)

    failed = [verdict for verdict in host_verdicts if verdict.outcome == FAIL]
    inconclusive = [verdict for verdict in host_verdicts if verdict.outcome == INCONCLUSIVE]
    if too_many(failed):
        clearly_failed = [verdict for verdict in failed if verdict.clear_failure]
        return Verdict(FAIL, reasons_of(failed + inconclusive), host_verdicts, clear_failure=too_many(clearly_failed))
    if inconclusive:
        outcome = PASS if limits.on_inconclusive == PASS else INCONCLUSIVE
        return Verdict(outcome, reasons_of(failed + inconclusive), host_verdicts)
    return Verdict(PASS, reasons_of(host_verdicts), host_verdicts)


def can_stop_early(verdict: Verdict, intervals: int) -> bool:
    """A clear failure that has held over enough intervals need not wait for the bake's end.

    A pass never ends the bake early: the bake is the least exposure a change gets.
    """
    return verdict.outcome == FAIL and verdict.clear_failure and intervals >= MIN_INTERVALS_TO_STOP_EARLY


def interval_budget(limits: Limits, bake_intervals: int) -> int:
    """The most intervals a bake may last: the plan's bake, plus the extension it allows."""
    return bake_intervals + (limits.max_extend_intervals if limits.on_inconclusive == EXTEND else 0)


def should_extend(verdict: Verdict, elapsed_intervals: int, max_intervals: int) -> bool:
    """Bake one more interval: inconclusive only for want of data, and budget left.

    An unreachable host stays unreachable however long the bake, so it never extends.
    """
    if verdict.outcome != INCONCLUSIVE or elapsed_intervals >= max_intervals:
        return False
    undecided = [host for host in verdict.hosts if host.outcome == INCONCLUSIVE]
    return bool(undecided) and all(host.needs_more_data for host in undecided)
