"""Can a stage's judge reach its significance level at all? Answered from the plan alone.

The judge compares a changed host's bake intervals (n) with a reference's intervals (m)
by a one-sided Mann-Whitney test, whose smallest p is 1 / C(n + m, n): every canary
interval above every reference interval. When that is above the plan's significance,
the comparison can never be significant and the judge falls back to the effect size
(judge.py says how). The references are the host's own baseline (m = its intervals) and
the control hosts, each of whose intervals is a sample (m = hosts x bake intervals).
`check` warns of each such comparison and says what would make it testable.
"""

import math
from dataclasses import dataclass

from .. import units

# Far beyond any plan the schema allows (100000 samples a stage): the search stops there.
MOST_INTERVALS = 100_000


def smallest_p_value(canary_intervals: int, reference_intervals: int) -> float:
    """The least p a one-sided Mann-Whitney test of N against M intervals can give."""
    if canary_intervals < 1 or reference_intervals < 1:
        return 1.0
    return 1 / math.comb(canary_intervals + reference_intervals, canary_intervals)


def reaches(canary_intervals: int, reference_intervals: int, significance: float) -> bool:
    # As the judge decides it: exactly 1/20 against 0.05 must count (no rounding loss).
    return smallest_p_value(canary_intervals, reference_intervals) <= significance * (1 + 1e-9)


def _fewest(reached_with) -> int | None:
    """The least count of intervals from 1 for which REACHED_WITH(count) holds; None beyond
    any plan."""
    return next((count for count in range(1, MOST_INTERVALS + 1) if reached_with(count)), None)


def fewest_reference_intervals(canary_intervals: int, significance: float) -> int | None:
    """The fewest reference intervals that let N canary intervals reach SIGNIFICANCE."""
    if canary_intervals < 1:
        return None
    return _fewest(lambda reference: reaches(canary_intervals, reference, significance))


@dataclass(frozen=True)
class Shortfall:
    """One comparison of a stage that can never be significant, and what would fix it."""

    reference: str        # "baseline" or "control"
    canary_intervals: int
    reference_intervals: int
    smallest_p: float
    significance: float
    fix: str

    def describe(self, rollout) -> str:
        schedule = rollout.schedule
        if self.reference == "baseline":
            what = (f"baseline {_seconds(schedule.baseline)} gives {self.reference_intervals} "
                    f"interval{'s' if self.reference_intervals != 1 else ''} of {_seconds(schedule.interval)}")
        else:
            hosts = self.reference_intervals // max(self.canary_intervals, 1)
            what = (f"{hosts} control host{'s' if hosts != 1 else ''} x {self.canary_intervals} bake intervals "
                    f"give {self.reference_intervals}")
        return (f"{what} against a {self.canary_intervals}-interval bake: the smallest p is "
                f"{self.smallest_p:.3f}, above significance {self.significance:g}, so the judge can compare "
                f"with {'its baseline' if self.reference == 'baseline' else 'the control hosts'} by effect size "
                f"only; {self.fix}")


def _seconds(value: float) -> str:
    return units.format_duration(value)


def baseline_shortfall(rollout) -> Shortfall | None:
    """The baseline comparison, the same in every stage; None when it is testable or absent."""
    schedule, limits = rollout.schedule, rollout.limits
    n, m = schedule.bake_intervals, schedule.baseline_intervals
    if m < 1 or n < 1 or reaches(n, m, limits.significance):
        return None
    needed = fewest_reference_intervals(n, limits.significance)
    fixes = []
    if needed is not None:
        fixes.append(f"baseline: {_seconds(needed * schedule.interval)} ({needed} intervals) or more reaches "
                     f"{limits.significance:g}")
    longer_bake = _fewest_canary_intervals(m, limits.significance)
    if longer_bake is not None:
        fixes.append(f"bake: {_seconds(longer_bake * schedule.interval)} ({longer_bake} intervals) against "
                     f"this baseline")
    return Shortfall("baseline", n, m, smallest_p_value(n, m), limits.significance,
                     ", or ".join(fixes) or "no length of baseline can reach it")


def control_shortfall(rollout, control_hosts: int, available: int) -> Shortfall | None:
    """The control comparison of a stage with CONTROL_HOSTS controls, of AVAILABLE hosts in
    later stages; None when it is testable or there are no controls."""
    schedule, limits = rollout.schedule, rollout.limits
    n = schedule.bake_intervals
    m = control_hosts * n
    if m < 1 or n < 1 or reaches(n, m, limits.significance):
        return None
    fixes = []
    needed = fewest_reference_intervals(n, limits.significance)
    hosts = -(-needed // n) if needed else None
    if hosts is not None and hosts <= available:
        fixes.append(f"control: {hosts} ({hosts} hosts x {n} intervals) reaches {limits.significance:g}")
    longer_bake = _fewest_canary_intervals_against(control_hosts, limits.significance)
    if longer_bake is not None:
        fixes.append(f"bake: {_seconds(longer_bake * schedule.interval)} ({longer_bake} intervals) against "
                     f"{control_hosts} control host{'s' if control_hosts != 1 else ''}")
    return Shortfall("control", n, m, smallest_p_value(n, m), limits.significance,
                     ", or ".join(fixes) or "no number of control hosts can reach it")


def _fewest_canary_intervals_against(control_hosts: int, significance: float) -> int | None:
    """The shortest bake whose intervals, against as many of each control host's, reach SIGNIFICANCE."""
    return _fewest(lambda canary: reaches(canary, control_hosts * canary, significance))


def _fewest_canary_intervals(reference_intervals: int, significance: float) -> int | None:
    return _fewest(lambda canary: reaches(canary, reference_intervals, significance))
