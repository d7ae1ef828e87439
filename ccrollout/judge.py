"""The canary decision: retransmission figures in, a verdict with its reasons out.

Pure: no I/O, no clocks, so it can be tested and benchmarked on recorded
samples. Each changed host is compared with an absolute ceiling, with its own
baseline from before the change, and with the hosts not yet changed over the
same window. Too little traffic is never a pass by itself.
"""

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


def judge_host(host: str, canary: Window, baseline: Window | None, control: Window | None,
               limits: Limits) -> HostVerdict:
    ratio = canary.retransmit_ratio
    if canary.sent < limits.min_segments:
        return HostVerdict(host, INCONCLUSIVE, (
            f"{host}: too little traffic to judge: {canary.sent} segments sent, "
            f"{limits.min_segments} needed",), ratio, canary.sent)
    failures = []
    if ratio > limits.max_retransmit_ratio:
        failures.append(f"{host}: retransmit ratio {_percent(ratio)} is above the ceiling "
                        f"{_percent(limits.max_retransmit_ratio)}")
    for label, reference in (("its baseline", baseline), ("the control hosts", control)):
        if reference is None or reference.sent < limits.min_segments:
            continue
        increase = ratio - reference.retransmit_ratio
        if increase > limits.max_increase:
            failures.append(f"{host}: retransmit ratio {_percent(ratio)} is {_percent(increase)} above "
                            f"{label} ({_percent(reference.retransmit_ratio)}); "
                            f"{_percent(limits.max_increase)} allowed")
    if failures:
        return HostVerdict(host, FAIL, tuple(failures), ratio, canary.sent)
    return HostVerdict(host, PASS, (f"{host}: retransmit ratio {_percent(ratio)} over "
                                    f"{canary.sent} segments",), ratio, canary.sent)


def judge(canaries: dict[str, Window], baselines: dict[str, Window], controls: dict[str, Window],
          limits: Limits, unreachable: tuple[str, ...] = ()) -> Verdict:
    """Decide a stage from each changed host's window, its baseline and the control hosts'."""
    pooled_control = None
    for window in controls.values():
        pooled_control = window if pooled_control is None else pooled_control + window
    host_verdicts = [judge_host(host, window, baselines.get(host), pooled_control, limits)
                     for host, window in sorted(canaries.items())]
    host_verdicts += [HostVerdict(host, FAIL, (f"{host}: unreachable during the bake",), 0.0, 0)
                      for host in unreachable]
    total = len(host_verdicts)
    if total == 0:
        return Verdict(INCONCLUSIVE, ("no host was changed in this stage",))
    failed = [v for v in host_verdicts if v.outcome == FAIL]
    inconclusive = [v for v in host_verdicts if v.outcome == INCONCLUSIVE]
    reasons = tuple(reason for verdict in failed + inconclusive for reason in verdict.reasons)
    if failed and len(failed) / total > limits.max_fail_fraction:
        return Verdict(FAIL, reasons, tuple(host_verdicts))
    if inconclusive:
        outcome = PASS if limits.on_inconclusive == PASS else INCONCLUSIVE
        return Verdict(outcome, reasons, tuple(host_verdicts))
    passes = tuple(reason for verdict in host_verdicts for reason in verdict.reasons)
    return Verdict(PASS, passes, tuple(host_verdicts))


def can_stop_early(verdict: Verdict) -> bool:
    """A failure backed by enough traffic on every failing host need not wait for the bake's end."""
    return verdict.outcome == FAIL
