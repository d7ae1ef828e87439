"""Watching a stage: sample TCP counters on changed and unchanged hosts, then judge.

The bake samples every interval; a failure that is already clear ends it
early. Figures are counter deltas from each host's own network namespace.
"""

import time
from dataclasses import dataclass

from . import fleet, judge

SENT, RETRANSMITTED = "OutSegs", "RetransSegs"


@dataclass
class Sample:
    host: str
    time: float
    sent: int
    retransmitted: int


def sample(sessions: dict[str, fleet.Session], forks: int) -> tuple[dict[str, Sample], dict[str, str]]:
    """One reading of every host's counters: (samples, errors by host)."""
    outcomes = fleet.fan_out(sessions, lambda session: session.call([{"op": "counters"}]), forks)
    samples, errors = {}, {}
    for host, outcome in outcomes.items():
        if not outcome.ok:
            errors[host] = outcome.error
            continue
        result = outcome.value[-1]
        if not result.get("ok"):
            errors[host] = result.get("error", "counters unavailable")
            continue
        counters = result["counters"]
        samples[host] = Sample(host, result["time"], counters.get(SENT, 0), counters.get(RETRANSMITTED, 0))
    return samples, errors


def window(start: Sample, end: Sample) -> judge.Window:
    return judge.Window(sent=max(0, end.sent - start.sent),
                        retransmitted=max(0, end.retransmitted - start.retransmitted))


def windows(start: dict[str, Sample], end: dict[str, Sample], hosts) -> dict[str, judge.Window]:
    return {host: window(start[host], end[host]) for host in hosts if host in start and host in end}


def measure_baseline(sessions: dict[str, fleet.Session], seconds: float, forks: int) -> dict[str, judge.Window]:
    """Each host's window over SECONDS before anything changes."""
    if seconds <= 0:
        return {}
    first, _ = sample(sessions, forks)
    time.sleep(seconds)
    last, _ = sample(sessions, forks)
    return windows(first, last, sessions)


def bake(changed: dict[str, fleet.Session], control: dict[str, fleet.Session],
         baselines: dict[str, judge.Window], limits: judge.Limits,
         seconds: float, interval: float, forks: int, progress=lambda text: None) -> judge.Verdict:
    """Watch the changed hosts for SECONDS against their baselines and the control hosts."""
    everyone = {**changed, **control}
    start, unreachable = sample(everyone, forks)
    deadline = time.monotonic() + seconds
    verdict = judge.Verdict(judge.INCONCLUSIVE, ("the bake took no sample",))
    while True:
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        latest, errors = sample(everyone, forks)
        unreachable.update(errors)
        verdict = judge.judge(
            canaries=windows(start, latest, [h for h in changed if h not in unreachable]),
            baselines=baselines,
            controls=windows(start, latest, [h for h in control if h not in unreachable]),
            limits=limits,
            unreachable=tuple(sorted(h for h in unreachable if h in changed)),
        )
        remaining = deadline - time.monotonic()
        progress(f"  bake: {verdict.outcome} after {seconds - max(0.0, remaining):.1f}s")
        if remaining <= 0.05 or judge.can_stop_early(verdict):
            return verdict
