"""Watching a stage: sample TCP counters on changed hosts and control hosts, then judge.

Figures come from a sampler: a function that reads, once, the counters of the hosts it
is given, wherever they come from (the host agents over SSH, or a simulation). A bake
samples every interval; a failure that is already clear ends it early. Figures are
counter deltas from each host's own network namespace: host-wide (TcpOutSegs,
TcpRetransSegs), or, on a changed host whose socket watcher runs (host/watch.py), those
of the connections that run the new control only, so old connections do not blur them.
"""

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from ..schedule import Schedule
from . import judge


@dataclass(frozen=True)
class Sample:
    """One reading of one host's counters: segments sent and retransmitted since some
    moment, for the whole namespace and, where the socket watcher runs, per control."""

    host: str
    time: float
    total: judge.Window
    by_control: dict[str, judge.Window] | None = None

    def of_control(self, control: str) -> judge.Window | None:
        return (self.by_control or {}).get(control)


class NoFigures(str):
    """A sampler's error that says a host's figures are missing (its monitoring did not
    give them), not that the host is down: such a stage is inconclusive, never passed."""


# hosts -> (a sample of each host that answered, the error of each that did not)
Sampler = Callable[[list[str]], tuple[dict[str, Sample], dict[str, str]]]


def growth(start: judge.Window, end: judge.Window) -> judge.Window:
    """What the counters grew by between two readings (a counter reset counts as no growth)."""
    return judge.Window(sent=max(0, end.sent - start.sent),
                        retransmitted=max(0, end.retransmitted - start.retransmitted))


class Recorder:
    """Per-interval windows of each host, from successive samples; for hosts in FOCUS
    (host -> control), the figures of that control's connections where the host has them."""

    def __init__(self, sampler: Sampler, hosts: list[str], focus: dict[str, str] | None = None):
        self.sampler, self.hosts, self.focus = sampler, list(hosts), focus or {}
        self.per_control: set[str] = set()  # hosts whose windows are their control's alone
        self.series: dict[str, judge.Series] = {host: [] for host in self.hosts}
        self.unreachable: dict[str, str] = {}
        self.missing: dict[str, str] = {}  # hosts whose figures the last reading lacked, and why
        self._last, errors = sampler(self.hosts)
        self._note(self._last, errors)

    def _note(self, latest: dict, errors: dict[str, str]) -> None:
        for host, error in errors.items():
            (self.missing if isinstance(error, NoFigures) else self.unreachable)[host] = error
        for host in latest:
            self.missing.pop(host, None)

    def step(self) -> None:
        latest, errors = self.sampler(self.hosts)
        self._note(latest, errors)
        for host, reading in latest.items():
            if host in self._last:
                self.series[host].append(self._window(host, self._last[host], reading))
        self._last.update(latest)

    def _window(self, host: str, start: Sample, end: Sample) -> judge.Window:
        control = self.focus.get(host)
        if control and start.by_control is not None and end.by_control is not None:
            self.per_control.add(host)
            empty = judge.Window(0, 0)  # the control's first connection opened just now
            return growth(start.of_control(control) or empty, end.of_control(control) or empty)
        return growth(start.total, end.total)

    def of(self, hosts, keep_missing: bool = False) -> dict[str, judge.Series]:
        return {host: self.series[host] for host in hosts if host not in self.unreachable
                and (keep_missing or host not in self.missing)}


def measure_baseline(sampler: Sampler, hosts: list[str], schedule: Schedule,
                     progress=lambda text: None) -> dict[str, judge.Series]:
    """Each host's intervals over the schedule's baseline, before anything changes."""
    if schedule.baseline <= 0:
        return {}
    recorder = Recorder(sampler, hosts)
    deadline = time.monotonic() + schedule.baseline
    while (remaining := deadline - time.monotonic()) > 0.05:
        time.sleep(min(schedule.interval, remaining))
        recorder.step()
    return recorder.of(hosts)


@dataclass(frozen=True)
class Bake:
    """What a bake compares: the changed hosts against their baselines and the controls."""

    changed: list[str]
    controls: list[str]
    baselines: dict[str, judge.Series]
    new_control: str | None = None  # with it, a changed host's figures are that control's connections


def without_figures(verdict: judge.Verdict, missing: dict[str, str]) -> judge.Verdict:
    """A stage some of whose changed hosts lack figures is inconclusive, whatever
    on_inconclusive says, unless the figures it has already fail it."""
    if not missing or verdict.outcome == judge.FAIL:
        return verdict
    reasons = tuple(f"{host}: inconclusive: {why}" for host, why in sorted(missing.items()))
    return dataclasses.replace(verdict, outcome=judge.INCONCLUSIVE, reasons=reasons + verdict.reasons)


def bake(sampler: Sampler, watched: Bake, limits: judge.Limits, schedule: Schedule,
         progress=lambda text: None) -> judge.Verdict:
    """Watch for the schedule's bake, and longer, an interval at a time, while the plan
    allows and more data could decide."""
    focus = {host: watched.new_control for host in watched.changed} if watched.new_control else None
    recorder = Recorder(sampler, watched.changed + watched.controls, focus)
    started = time.monotonic()
    deadline = started + schedule.bake
    budget = judge.interval_budget(limits, schedule.bake_intervals)
    intervals = 0
    while True:
        time.sleep(max(0.0, min(schedule.interval, deadline - time.monotonic())))
        recorder.step()
        intervals += 1
        verdict = judge.judge(
            canaries=recorder.of(watched.changed, keep_missing=True), baselines=watched.baselines,
            controls=recorder.of(watched.controls), limits=limits,
            unreachable=tuple(sorted(h for h in recorder.unreachable if h in watched.changed)))
        verdict = without_figures(verdict, {h: why for h, why in recorder.missing.items() if h in watched.changed})
        progress(f"  bake: {verdict.outcome} after {time.monotonic() - started:.1f}s"
                 + (f" ({', '.join(sorted(recorder.per_control))}: {watched.new_control}'s connections only)"
                    if recorder.per_control and intervals == 1 else ""))
        if judge.can_stop_early(verdict, intervals):
            return verdict
        if deadline - time.monotonic() <= 0.05:
            if not judge.should_extend(verdict, intervals, budget):
                return verdict
            deadline += schedule.interval
            progress("  bake: extended by one interval")
