"""Watching a stage: sample TCP counters on changed hosts and control hosts, then judge.

Figures come from a sampler: a function that reads, once, the counters of the hosts it
is given, wherever they come from (the host agents over SSH, or a simulation). A bake
samples every interval; a failure that is already clear ends it early. Figures are
counter deltas from each host's own network namespace: host-wide (TcpOutSegs,
TcpRetransSegs), or, on a changed host whose socket watcher runs (host/watch.py), those
of the connections that run the new control only, so old connections do not blur them.
"""

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Callable

from .. import events
from ..schedule import Schedule
from ..status import HostRole, StagePhase
from . import judge

# -v: each host's figures per interval and the judge's comparisons (the CLI sets the level).
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One reading of one host's counters (segments sent and retransmitted, and where the
    socket watcher runs bytes acked and RTT sums) since some moment, for the whole namespace
    and, where the watcher runs, per control. TIME is the host's clock (seconds)."""

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
# (phase, index from 1, seconds since the phase began, {host: (role, window)}): each interval's
# figures as they come, for the journal to keep
OnInterval = Callable[[str, int, float, dict[str, tuple[str, judge.Window]]], None]


def growth(start: judge.Window, end: judge.Window, seconds: float = 0.0) -> judge.Window:
    """What the counters grew by between two readings SECONDS apart (a counter reset counts as
    no growth). Connections are a gauge: the end's. RTT is the mean over the reads between
    the two readings where the readings carry RTT sums, else the end's gauge."""
    readings = end.rtt_readings - start.rtt_readings

    def mean_rtt(end_sum: float, start_sum: float, gauge: float | None) -> float | None:
        if readings > 0 and end_sum >= start_sum:
            return (end_sum - start_sum) / readings
        return None if end.rtt_readings else gauge  # sums kept, but no read in between: unknown

    return judge.Window(sent=max(0, end.sent - start.sent),
                        retransmitted=max(0, end.retransmitted - start.retransmitted),
                        bytes_acked=max(0, end.bytes_acked - start.bytes_acked),
                        seconds=max(0.0, seconds), connections=end.connections,
                        srtt_ms=mean_rtt(end.srtt_ms_sum, start.srtt_ms_sum, end.srtt_ms),
                        min_rtt_ms=mean_rtt(end.min_rtt_ms_sum, start.min_rtt_ms_sum, end.min_rtt_ms))


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

    def step(self) -> dict[str, judge.Window]:
        """Sample once; the new window of each host that answered twice in a row."""
        latest, errors = self.sampler(self.hosts)
        self._note(latest, errors)
        windows = {}
        for host, reading in latest.items():
            if host in self._last:
                windows[host] = self._window(host, self._last[host], reading)
                self.series[host].append(windows[host])
        self._last.update(latest)
        return windows

    def _window(self, host: str, start: Sample, end: Sample) -> judge.Window:
        control = self.focus.get(host)
        if control and start.by_control is not None and end.by_control is not None:
            self.per_control.add(host)
            empty = judge.Window(0, 0)  # the control's first connection opened just now
            return growth(start.of_control(control) or empty, end.of_control(control) or empty,
                          end.time - start.time)
        return growth(start.total, end.total, end.time - start.time)

    def of(self, hosts, keep_missing: bool = False) -> dict[str, judge.Series]:
        return {host: self.series[host] for host in hosts if host not in self.unreachable
                and (keep_missing or host not in self.missing)}

    def log_last_interval(self, phase: str) -> None:
        if not _log.isEnabledFor(logging.INFO):
            return
        for host, series in self.series.items():
            if series and host not in self.unreachable:
                window = series[-1]
                _log.info("%s interval %d: %s sent %d, retransmitted %d (%.2f%%)%s", phase, len(series), host,
                          window.sent, window.retransmitted, window.retransmit_ratio * 100,
                          f", {self.focus[host]}'s connections" if host in self.per_control else "")


def _log_comparisons(verdict: judge.Verdict) -> None:
    if not _log.isEnabledFor(logging.INFO):
        return
    for host in verdict.hosts:
        for measured in host.metrics:
            if not measured.comparisons:
                _log.info("judge %s %s: %s", host.host, measured.metric, measured.outcome)
            for comparison in measured.comparisons:
                p_value = "not tested" if comparison.p_value is None else f"p={comparison.p_value:.3f}"
                _log.info("judge %s %s: median %s against %s %s (n=%d vs %d, %s; smallest p %.3f): %s",
                          host.host, measured.metric, judge.shown(measured.metric, comparison.canary_median),
                          comparison.reference, judge.shown(measured.metric, comparison.reference_median),
                          comparison.canary_intervals, comparison.reference_intervals, p_value,
                          comparison.smallest_p_value, measured.outcome)


def with_roles(windows: dict[str, judge.Window], controls) -> dict[str, tuple[str, judge.Window]]:
    return {host: (HostRole.CONTROL if host in controls else HostRole.CANARY, window)
            for host, window in windows.items()}


def interval_figures(windows: dict[str, judge.Window]) -> dict[str, dict]:
    """An interval's windows as an event carries them: the segment counts always, bytes acked,
    seconds, connections and RTTs where the source gave them."""
    def carried(window: judge.Window) -> dict:
        shown = {"sent": window.sent, "retransmitted": window.retransmitted}
        if window.bytes_acked or window.seconds:
            shown.update(bytes_acked=window.bytes_acked, seconds=round(window.seconds, 3),
                         connections=window.connections)
        for name in ("srtt_ms", "min_rtt_ms"):
            if getattr(window, name) is not None:
                shown[name] = round(getattr(window, name), 3)
        return shown
    return {host: carried(window) for host, window in windows.items()}


def measure_baseline(sampler: Sampler, hosts: list[str], schedule: Schedule,
                     emit=lambda event: None, on_interval: OnInterval | None = None,
                     controls=()) -> dict[str, judge.Series]:
    """Each host's intervals over the schedule's baseline, before anything changes; those of
    HOSTS in CONTROLS are told to ON_INTERVAL as control hosts, the others as canaries."""
    if schedule.baseline <= 0:
        return {}
    emit(events.PhaseStarted(phase="baseline", seconds=schedule.baseline, intervals=schedule.baseline_intervals,
                             hosts=list(hosts)))
    recorder = Recorder(sampler, hosts)
    started = time.monotonic()
    deadline = started + schedule.baseline
    index = 0
    while (remaining := deadline - time.monotonic()) > 0.05:
        time.sleep(min(schedule.interval, remaining))
        windows = recorder.step()
        recorder.log_last_interval("baseline")
        index += 1
        if on_interval:
            on_interval(StagePhase.BASELINE, index, time.monotonic() - started, with_roles(windows, controls))
        emit(events.IntervalSampled(
            phase="baseline", index=index, intervals=schedule.baseline_intervals,
            elapsed=round(time.monotonic() - started, 3), seconds=schedule.baseline,
            figures=interval_figures(windows), unreachable=sorted(recorder.unreachable)))
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
         emit=lambda event: None, on_interval: OnInterval | None = None) -> judge.Verdict:
    """Watch for the schedule's bake, and longer, an interval at a time, while the plan
    allows and more data could decide."""
    focus = {host: watched.new_control for host in watched.changed} if watched.new_control else None
    emit(events.PhaseStarted(phase="bake", seconds=schedule.bake, intervals=schedule.bake_intervals,
                             hosts=watched.changed + watched.controls))
    recorder = Recorder(sampler, watched.changed + watched.controls, focus)
    started = time.monotonic()
    deadline = started + schedule.bake
    budget = judge.interval_budget(limits, schedule.bake_intervals)
    intervals, planned = 0, schedule.bake_intervals
    while True:
        time.sleep(max(0.0, min(schedule.interval, deadline - time.monotonic())))
        windows = recorder.step()
        recorder.log_last_interval("bake")
        intervals += 1
        if on_interval:
            on_interval(StagePhase.BAKE, intervals, time.monotonic() - started, with_roles(windows, watched.controls))
        verdict = judge.judge(
            canaries=recorder.of(watched.changed, keep_missing=True), baselines=watched.baselines,
            controls=recorder.of(watched.controls), limits=limits,
            unreachable=tuple(sorted(h for h in recorder.unreachable if h in watched.changed)))
        verdict = without_figures(verdict, {h: why for h, why in recorder.missing.items() if h in watched.changed})
        _log_comparisons(verdict)
        if recorder.per_control and intervals == 1:
            emit(events.Note(text=f"{', '.join(sorted(recorder.per_control))}: judged on "
                                  f"{watched.new_control}'s connections only"))
        emit(events.IntervalSampled(
            phase="bake", index=intervals, intervals=max(planned, intervals),
            elapsed=round(time.monotonic() - started, 3), seconds=round(deadline - started, 3),
            figures=interval_figures(windows), unreachable=sorted(recorder.unreachable),
            outcome=verdict.outcome, reasons=list(verdict.reasons), needed=limits.min_intervals))
        if judge.can_stop_early(verdict, intervals):
            return verdict
        if deadline - time.monotonic() <= 0.05:
            if not judge.should_extend(verdict, intervals, budget):
                return verdict
            deadline += schedule.interval
            planned = intervals + 1
            emit(events.BakeExtended(seconds=round(deadline - started, 3)))
