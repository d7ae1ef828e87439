"""Watching a stage: sample TCP counters on changed and unchanged hosts, then judge.

The bake samples every interval; a failure that is already clear ends it
early. Figures are counter deltas from each host's own network namespace:
host-wide (TcpOutSegs, TcpRetransSegs), or, on a changed host whose socket
watcher runs (host/watch.py), those of the connections that run the new
control only, so old long-lived connections do not blur the comparison.
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
    by_control: dict | None = None  # control -> {"sent", "retransmitted"}, from the socket watcher

    def of_control(self, control: str) -> "Sample | None":
        figures = (self.by_control or {}).get(control)
        if figures is None:
            return None
        return Sample(self.host, self.time, figures["sent"], figures["retransmitted"])


def sample(sessions: dict[str, fleet.Session], forks: int) -> tuple[dict[str, Sample], dict[str, str]]:
    """One reading of every host's counters: (samples, errors by host)."""
    outcomes = fleet.fan_out(sessions, lambda session: session.call([{"op": "counters"}]), forks)
    samples, errors = {}, {}
    for host, outcome in outcomes.items():
        if error := outcome.failure():
            errors[host] = error
            continue
        result = outcome.value[-1]
        counters = result["counters"]
        samples[host] = Sample(host, result["time"], counters.get(SENT, 0), counters.get(RETRANSMITTED, 0),
                               result.get("by_control"))
    return samples, errors


def window(start: Sample, end: Sample) -> judge.Window:
    return judge.Window(sent=max(0, end.sent - start.sent),
                        retransmitted=max(0, end.retransmitted - start.retransmitted))


class Recorder:
    """Per-interval windows of each host, from successive samples; for hosts in FOCUS
    (host -> control), the figures of that control's connections where the host has them."""

    def __init__(self, sessions: dict[str, fleet.Session], forks: int, focus: dict[str, str] | None = None):
        self.sessions, self.forks, self.focus = sessions, forks, focus or {}
        self.per_control: set[str] = set()  # hosts whose windows are their control's alone
        self.series: dict[str, judge.Series] = {host: [] for host in sessions}
        self.unreachable: dict[str, str] = {}
        self._last, errors = sample(sessions, forks)
        self.unreachable.update(errors)

    def step(self) -> None:
        latest, errors = sample(self.sessions, self.forks)
        self.unreachable.update(errors)
        for host, reading in latest.items():
            if host in self._last:
                self.series[host].append(self._window(host, self._last[host], reading))
        self._last.update(latest)

    def _window(self, host: str, start: Sample, end: Sample) -> judge.Window:
        control = self.focus.get(host)
        if control and start.by_control is not None and end.by_control is not None:
            self.per_control.add(host)
            empty = Sample(host, start.time, 0, 0)  # the control's first connection opened just now
            return window(start.of_control(control) or empty, end.of_control(control) or empty)
        return window(start, end)

    def of(self, hosts) -> dict[str, judge.Series]:
        return {host: self.series[host] for host in hosts if host not in self.unreachable}


def measure_baseline(sessions: dict[str, fleet.Session], seconds: float, interval: float,
                     forks: int) -> dict[str, judge.Series]:
    """Each host's intervals over SECONDS before anything changes."""
    if seconds <= 0:
        return {}
    recorder = Recorder(sessions, forks)
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0.05:
        time.sleep(min(interval, remaining))
        recorder.step()
    return recorder.of(sessions)


def bake(changed: dict[str, fleet.Session], control: dict[str, fleet.Session],
         baselines: dict[str, judge.Series], limits: judge.Limits,
         seconds: float, interval: float, forks: int, progress=lambda text: None,
         new_control: str | None = None) -> judge.Verdict:
    """Watch the changed hosts for SECONDS against their baselines and the control hosts;
    longer, an interval at a time, while the plan allows and more data could decide.
    With NEW_CONTROL, a changed host's figures are its connections under that control."""
    recorder = Recorder({**changed, **control}, forks,
                        {host: new_control for host in changed} if new_control else None)
    started = time.monotonic()
    deadline = started + seconds
    budget = judge.interval_budget(limits, round(seconds / interval))
    intervals = 0
    while True:
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        recorder.step()
        intervals += 1
        verdict = judge.judge(
            canaries=recorder.of(changed), baselines=baselines, controls=recorder.of(control),
            limits=limits, unreachable=tuple(sorted(h for h in recorder.unreachable if h in changed)))
        progress(f"  bake: {verdict.outcome} after {time.monotonic() - started:.1f}s"
                 + (f" ({', '.join(sorted(recorder.per_control))}: {new_control}'s connections only)"
                    if recorder.per_control and intervals == 1 else ""))
        if judge.can_stop_early(verdict, intervals):
            return verdict
        if deadline - time.monotonic() <= 0.05:
            if not judge.should_extend(verdict, intervals, budget):
                return verdict
            deadline += interval
            progress("  bake: extended by one interval")
