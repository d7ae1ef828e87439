"""A stage's evidence as the report draws it, from the journal's events: every interval's
figures per host (kind "interval"), placed on one clock from the stage's start, and the
verdict. Pure: no drawing, no files."""

import dataclasses
import statistics
from dataclasses import dataclass, field

from ..rollout.judge import Window
from ..rollout.metrics import METRICS, Metric
from ..status import HostRole, StagePhase

CANARY, CONTROL = HostRole.CANARY, HostRole.CONTROL
BASELINE, BAKE = StagePhase.BASELINE, StagePhase.BAKE
WINDOW_FIELDS = tuple(f.name for f in dataclasses.fields(Window))

Points = list[tuple[float, float]]  # (seconds from the stage's start, value)


@dataclass(frozen=True)
class Interval:
    phase: str                               # BASELINE or BAKE
    x: float                                 # its end, in seconds from the stage's start
    hosts: dict[str, tuple[str, Window]]     # host -> (role, its window)


@dataclass
class StageEvidence:
    number: int
    intervals: list[Interval] = field(default_factory=list)
    verdict: dict | None = None              # the journal's verdict event, as written
    bake_start: float | None = None          # where the bake began, on the stage's clock
    baseline_end: float | None = None        # where the baseline ended (the change came next)

    def hosts(self, role: str) -> list[str]:
        seen = {}
        for interval in self.intervals:
            seen.update({host: None for host, (their_role, _) in interval.hosts.items() if their_role == role})
        return list(seen)

    def metrics(self) -> list[Metric]:
        """The metrics some recorded window carries, in METRICS' order."""
        return [metric for metric in METRICS
                if any(metric.value(window) is not None
                       for interval in self.intervals for _, window in interval.hosts.values())]

    def host_points(self, metric: Metric, host: str, phase: str) -> Points:
        return [(interval.x, value) for interval in self.intervals if interval.phase == phase
                and host in interval.hosts and (value := metric.value(interval.hosts[host][1])) is not None]

    def control_points(self, metric: Metric) -> tuple[Points, Points, Points]:
        """Per interval over the control hosts: their median, lowest and highest value."""
        median, low, high = [], [], []
        for interval in self.intervals:
            values = [value for role, window in interval.hosts.values()
                      if role == CONTROL and (value := metric.value(window)) is not None]
            if values:
                median.append((interval.x, statistics.median(values)))
                low.append((interval.x, min(values)))
                high.append((interval.x, max(values)))
        return median, low, high


def stages(events: list[dict]) -> list[StageEvidence]:
    """Each stage that has a verdict or intervals, in order, from a rollout's EVENTS (checked
    by journalrows, oldest first)."""
    found: dict[int, StageEvidence] = {}
    recorded: dict[int, list[dict]] = {}
    for event in events:
        if event["stage"] is None:
            continue
        if event["kind"] == "interval":
            recorded.setdefault(event["stage"], []).append(event)
            found.setdefault(event["stage"], StageEvidence(event["stage"]))
        elif event["kind"] == "verdict":
            found.setdefault(event["stage"], StageEvidence(event["stage"])).verdict = event["data"]
    for number, stage in found.items():
        _place(stage, last_run(recorded.get(number, [])))
    return [found[number] for number in sorted(found)]


def last_run(events: list[dict]) -> list[dict]:
    """The intervals of the stage's last run: a resumed rollout bakes the stage its controller
    died in again, and only that run led to the verdict."""
    runs: list[list[dict]] = []
    previous = None
    for event in events:
        data = event["data"]
        begins = data["index"] == 1 and (data["phase"] == BASELINE or previous in (None, BAKE))
        if begins or not runs:
            runs.append([])
        runs[-1].append(event)
        previous = data["phase"]
    return runs[-1] if runs else []


def _place(stage: StageEvidence, events: list[dict]) -> None:
    """Put the stage's intervals on one clock: each phase began at its events' time less their
    elapsed seconds, and the stage at its first phase's beginning."""
    began = {}
    for event in events:
        phase = event["data"]["phase"]
        began[phase] = min(began.get(phase, event["time"]), event["time"] - event["data"]["elapsed"])
    if not began:
        return
    origin = min(began.values())
    for event in events:
        data = event["data"]
        x = began[data["phase"]] - origin + data["elapsed"]
        stage.intervals.append(Interval(data["phase"], x, {host: (figures["role"], window_of(figures))
                                                           for host, figures in data["hosts"].items()}))
    stage.intervals.sort(key=lambda interval: interval.x)
    if BAKE in began:
        stage.bake_start = began[BAKE] - origin
    baseline = [interval.x for interval in stage.intervals if interval.phase == BASELINE]
    stage.baseline_end = max(baseline) if baseline else None


def window_of(figures: dict) -> Window:
    """A Window from an interval event's figures of one host (fields it does not know, from a
    newer ccrollout, are left out)."""
    return Window(**{name: figures[name] for name in WINDOW_FIELDS if name in figures})
