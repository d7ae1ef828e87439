"""The canary decision: retransmission figures in, a verdict with its reasons out.

Pure: no I/O, no clocks, so it can be tested and benchmarked on recorded
samples. Each changed host is compared with an absolute ceiling, with its own
baseline from before the change, and with the hosts not yet changed over the
same intervals. Too little traffic is never a pass by itself.

A host's figure is the median of its per-interval retransmit ratios, not the
ratio pooled over the bake: one connection that loses a burst (seen in the lab
about once a minute per host) moves one interval, not the verdict, while a
control that is bad all the time is bad in every interval.
"""

import statistics
from dataclasses import dataclass, field

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


@dataclass(frozen=True)
class Window:
    """Segment counts over one stretch of time on one host (counter deltas)."""

    sent: int
    retransmitted: int

    @property
    def retransmit_ratio(self) -> float:
        return self.retransmitted / self.sent if self.sent else 0.0

    def __add__(self, other: "Window") -> "Window":
        return Window(self.sent + other.sent, self.retransmitted + other.retransmitted)


Series = list[Window]  # one window per sampling interval, oldest first

# A failure may end the bake early only once it holds over this many intervals.
MIN_INTERVALS_TO_STOP_EARLY = 3


def total(series: Series) -> Window:
    return sum(series, Window(0, 0))


def typical_ratio(series: Series) -> float:
    """The median of the ratios of the intervals that carried traffic."""
    ratios = [window.retransmit_ratio for window in series if window.sent]
    return statistics.median(ratios) if ratios else 0.0


def pooled(series_by_host: dict[str, Series]) -> Series:
    """Interval by interval, the sum over hosts (for the control group)."""
    if not series_by_host:
        return []
    length = min(len(series) for series in series_by_host.values())
    return [total([series[index] for series in series_by_host.values()]) for index in range(length)]


@dataclass(frozen=True)
class Limits:
    max_retransmit_ratio: float   # absolute ceiling, as a fraction
    max_increase: float           # allowed increase over baseline and control, fraction points
    min_segments: int             # below this a window is too little to judge
    max_fail_fraction: float = 0.0  # share of a stage's hosts that may fail
    on_inconclusive: str = FAIL


@dataclass(frozen=True)
class HostVerdict:
    host: str
    outcome: str
    reasons: tuple[str, ...]
    retransmit_ratio: float
    sent: int


@dataclass(frozen=True)
class Verdict:
    outcome: str
    reasons: tuple[str, ...]
    hosts: tuple[HostVerdict, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.outcome == PASS


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.2f}%"


def judge_host(host: str, canary: Series, baseline: Series | None, control: Series | None,
               limits: Limits) -> HostVerdict:
    sent = total(canary).sent
    ratio = typical_ratio(canary)
    if sent < limits.min_segments:
        return HostVerdict(host, INCONCLUSIVE, (
            f"{host}: too little traffic to judge: {sent} segments sent, "
            f"{limits.min_segments} needed",), ratio, sent)
    failures = []
    if ratio > limits.max_retransmit_ratio:
        failures.append(f"{host}: retransmit ratio {_percent(ratio)} is above the ceiling "
                        f"{_percent(limits.max_retransmit_ratio)}")
    for label, reference in (("its baseline", baseline), ("the control hosts", control)):
        if not reference or total(reference).sent < limits.min_segments:
            continue  # too thin to compare with: only the ceiling applies
        reference_ratio = typical_ratio(reference)
        increase = ratio - reference_ratio
        if increase > limits.max_increase:
            failures.append(f"{host}: retransmit ratio {_percent(ratio)} is {_percent(increase)} above "
                            f"{label} ({_percent(reference_ratio)}); {_percent(limits.max_increase)} allowed")
    if failures:
        return HostVerdict(host, FAIL, tuple(failures), ratio, sent)
    return HostVerdict(host, PASS, (f"{host}: retransmit ratio {_percent(ratio)} (median of "
                                    f"{len(canary)} intervals, {sent} segments)",), ratio, sent)


def judge(canaries: dict[str, Series], baselines: dict[str, Series], controls: dict[str, Series],
          limits: Limits, unreachable: tuple[str, ...] = ()) -> Verdict:
    """Decide a stage from each changed host's intervals, its baseline and the control hosts'."""
    control = pooled(controls)
    host_verdicts = [judge_host(host, series, baselines.get(host), control, limits)
                     for host, series in sorted(canaries.items())]
    host_verdicts += [HostVerdict(host, FAIL, (f"{host}: unreachable during the bake",), 0.0, 0)
                      for host in unreachable]
    total_hosts = len(host_verdicts)
    if total_hosts == 0:
        return Verdict(INCONCLUSIVE, ("no host was changed in this stage",))
    failed = [v for v in host_verdicts if v.outcome == FAIL]
    inconclusive = [v for v in host_verdicts if v.outcome == INCONCLUSIVE]
    reasons = tuple(reason for verdict in failed + inconclusive for reason in verdict.reasons)
    if failed and len(failed) / total_hosts > limits.max_fail_fraction:
        return Verdict(FAIL, reasons, tuple(host_verdicts))
    if inconclusive:
        outcome = PASS if limits.on_inconclusive == PASS else INCONCLUSIVE
        return Verdict(outcome, reasons, tuple(host_verdicts))
    passes = tuple(reason for verdict in host_verdicts for reason in verdict.reasons)
    return Verdict(PASS, passes, tuple(host_verdicts))


def can_stop_early(verdict: Verdict, intervals: int) -> bool:
    """A failure that has held over enough intervals need not wait for the bake's end."""
    return verdict.outcome == FAIL and intervals >= MIN_INTERVALS_TO_STOP_EARLY
