"""What a rollout tells the world as it goes: typed events, and the bus that carries them.

The runner, the stage and the canary emit these; they never format sentences. Renderers
in cli/ (the live view, plain lines, JSON lines) and notify.py (webhooks) subscribe. Each
event's `as_dict()` is one line of `--events`, in the shape schema/events.schema.json
gives, so the schema and the dataclasses must change together.
"""

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from .status import HostStatus, RolloutStatus, StageOutcome

SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every event carries; the bus fills in the rollout, the stage and the time."""

    kind: ClassVar[str] = "event"
    rollout: str | None = None
    stage: int | None = None
    time: float = 0.0  # seconds since the epoch, when emitted

    def as_dict(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"event": self.kind, "version": SCHEMA_VERSION, **_plain(fields)}


def _plain(value):
    """Enums as their values, tuples as lists: what JSON carries."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (HostStatus, RolloutStatus, StageOutcome)):
        return value.value
    return value


@dataclass(frozen=True, kw_only=True)
class Built(Event):
    kind: ClassVar[str] = "built"
    algorithm: str
    digest: str
    cached: bool


@dataclass(frozen=True, kw_only=True)
class RolloutStarted(Event):
    kind: ClassVar[str] = "rollout_started"
    name: str
    algorithm: str
    digest: str
    hosts: list[str]
    stages: int
    resumed_after: int | None = None  # a resumed rollout: the stages that passed before


@dataclass(frozen=True, kw_only=True)
class StageStarted(Event):
    kind: ClassVar[str] = "stage_started"
    stages: int
    hosts: list[str]
    controls: list[str]


@dataclass(frozen=True, kw_only=True)
class PhaseStarted(Event):
    """A timed phase: baseline, settle or bake, and how long the plan gives it."""

    kind: ClassVar[str] = "phase_started"
    phase: str
    seconds: float
    intervals: int = 0  # planned samples (0 for settle)
    hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class HostChanged(Event):
    kind: ClassVar[str] = "host_changed"
    host: str
    status: HostStatus
    note: str | None = None  # what the host said besides (a boot unit, an upgrade in place)


@dataclass(frozen=True, kw_only=True)
class IntervalSampled(Event):
    """One interval of a baseline or a bake: each host's figures, and the judge so far."""

    kind: ClassVar[str] = "interval_sampled"
    phase: str
    index: int                   # 1-based
    intervals: int               # planned for the phase, extensions included
    elapsed: float               # seconds since the phase began
    seconds: float               # the phase's planned length, extensions included
    figures: dict[str, dict]     # host -> {"sent", "retransmitted"} of this interval
    unreachable: list[str] = field(default_factory=list)
    outcome: StageOutcome | None = None  # the bake's verdict so far
    reasons: list[str] = field(default_factory=list)
    needed: int = 0              # intervals the judge needs before it judges a host


@dataclass(frozen=True, kw_only=True)
class BakeExtended(Event):
    kind: ClassVar[str] = "bake_extended"
    seconds: float               # the bake's new planned length


@dataclass(frozen=True, kw_only=True)
class StageVerdict(Event):
    kind: ClassVar[str] = "verdict"
    outcome: StageOutcome
    hosts: list[str]
    controls: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class HostRolledBack(Event):
    kind: ClassVar[str] = "rolled_back"
    host: str
    ok: bool
    detail: str                  # what the host now has, or why it could not be rolled back
    control: str | None = None


@dataclass(frozen=True, kw_only=True)
class Paused(Event):
    kind: ClassVar[str] = "paused"
    reason: str                  # "gate" (the plan's pause) or "inconclusive"


@dataclass(frozen=True, kw_only=True)
class Decided(Event):
    """An operator's answer to a pause."""

    kind: ClassVar[str] = "decided"
    decision: str                # promote | abort
    by: str


@dataclass(frozen=True, kw_only=True)
class Note(Event):
    """Something worth knowing that is no step of its own: a control left out, a watcher's
    fallback, a failed claim renewal."""

    kind: ClassVar[str] = "note"
    text: str
    host: str | None = None


@dataclass(frozen=True, kw_only=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    status: str
    exit_code: int
    message: str
    hosts: dict[str, str]        # host -> its HostStatus


EVENT_KINDS = {cls.kind: cls for cls in (Built, RolloutStarted, StageStarted, PhaseStarted, HostChanged,
                                         IntervalSampled, BakeExtended, StageVerdict, HostRolledBack, Paused,
                                         Decided, Note, Finished)}

Subscriber = Callable[[Event], None]


class Bus:
    """Hands each event to every subscriber, in order, stamped with the rollout and the
    stage the emitter is in (where it did not name them) and the time."""

    def __init__(self, subscribers: list[Subscriber] | None = None):
        self.subscribers: list[Subscriber] = list(subscribers or [])
        self.rollout: str | None = None
        self.stage: int | None = None
        self._lock = threading.RLock()  # hosts are reached from threads; events stay whole

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        stamped = dataclasses.replace(
            event, rollout=event.rollout if event.rollout is not None else self.rollout,
            stage=event.stage if event.stage is not None else self.stage, time=event.time or time.time())
        with self._lock:
            for subscriber in self.subscribers:
                subscriber(stamped)

    def __call__(self, event: Event) -> None:
        self.emit(event)
