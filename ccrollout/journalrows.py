"""What the journal gives back, checked before the controller acts on it.

The journal is a file its owner (or anything running as its owner) can edit. What it says
becomes requests to hosts (the control to deactivate, the default to restore, the rollout
whose claims to drop), hosts to contact, a plan to read and lines on a terminal. So each
row is checked against what ccrollout itself writes there: a row that is not gives one
TamperedRow naming the table, the row and the field, never a request or a traceback.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .host import protocol
from .status import ChangeState, HostRole, MetricOutcome, RolloutStatus, StageOutcome, StagePhase

ROLLOUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # the plan schema's
MAX_NAME = 1024
MAX_PID = 1 << 22  # the kernel's PID_MAX_LIMIT


@dataclass(frozen=True)
class Change:
    id: int
    rollout_id: str
    host: str
    stage: int
    algorithm: str
    digest: str
    previous_default: str | None
    state: str


class TamperedRow(ValueError):
    """A row that is not what ccrollout writes."""


def _fail(where: str, field: str, value: Any, expected: str) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:40] + "..."
    raise TamperedRow(f"{where}: {field} {shown} is not {expected}; was the journal edited?")


def _matching(where: str, field: str, value: Any, pattern: re.Pattern, expected: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        _fail(where, field, value, expected)
    return value


def _name(where: str, field: str, value: Any) -> str:
    """A host name, or other text that is printed: printable, and of a sane length."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME or not value.isprintable():
        _fail(where, field, value, f"printable text of 1 to {MAX_NAME} characters")
    return value


def _whole(where: str, field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(where, field, value, f"a whole number from {low} to {high}")
    return value


def _time(where: str, field: str, value: Any, optional: bool = False) -> float | None:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, field, value, "a time")
    return float(value)


def _one_of(where: str, field: str, value: Any, choices: type) -> str:
    if value not in {member.value for member in choices}:
        _fail(where, field, value, "one of " + ", ".join(member.value for member in choices))
    return value


def _control(where: str, field: str, value: Any) -> str:
    return _matching(where, field, value, protocol.CONTROL_NAME, "a congestion-control name")


def rollout_id(where: str, value: Any) -> str:
    return _matching(where, "id", value, protocol.ROLLOUT_ID, "a rollout id")


def rollout(row: tuple) -> dict:
    """A rollouts row as a dict; TamperedRow if a field is not what ccrollout writes."""
    where = f"rollouts row {str(row[0])[:40]!r}"
    keys = ("id", "plan", "rollout", "algorithm", "digest", "started", "finished", "status")
    record = dict(zip(keys, row))
    rollout_id(where, record["id"])
    if not isinstance(record["plan"], str) or not 0 < len(record["plan"]) <= 4096 or not record["plan"].isprintable():
        _fail(where, "plan", record["plan"], "the path of a plan")
    _matching(where, "rollout", record["rollout"], ROLLOUT_NAME, "a rollout name")
    _control(where, "algorithm", record["algorithm"])
    _matching(where, "digest", record["digest"], protocol.DIGEST, "a sha256 digest")
    _time(where, "started", record["started"])
    _time(where, "finished", record["finished"], optional=True)
    _one_of(where, "status", record["status"], RolloutStatus)
    return record


def change(row: tuple) -> Change:
    where = f"changes row {str(row[0])[:20]}"
    record = Change(*row)
    _whole(where, "id", record.id, 1, 1 << 62)
    rollout_id(where, record.rollout_id)
    _name(where, "host", record.host)
    _whole(where, "stage", record.stage, 1, 1 << 31)
    _control(where, "algorithm", record.algorithm)
    _matching(where, "digest", record.digest, protocol.DIGEST, "a sha256 digest")
    if record.previous_default is not None:
        _control(where, "previous_default", record.previous_default)
    _one_of(where, "state", record.state, ChangeState)
    return record


def controller(where: str, machine: Any, pid: Any) -> tuple[str, int]:
    return _name(where, "controller", machine), _whole(where, "pid", pid, 1, MAX_PID)


def event(row: tuple, rollout: str) -> dict:
    """An events row as {time, stage, kind, data}, its data parsed and, for the kinds the
    controller reads back (plan, verdict, promote, abort, interval, started, finished), checked."""
    moment, stage, kind, text = row
    where = f"events row of rollout {rollout} ({str(kind)[:20]!r})"
    _time(where, "time", moment)
    if stage is not None:
        _whole(where, "stage", stage, 1, 1 << 31)
    _name(where, "kind", kind)
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        _fail(where, "data", text, "a JSON object")
    _EVENT_CHECKS.get(kind, lambda where, data: None)(where, data)
    return {"time": moment, "stage": stage, "kind": kind, "data": data}


def _hosts(where: str, field: str, value: Any) -> None:
    if not isinstance(value, list):
        _fail(where, field, value, "a list of host names")
    for host in value:
        _name(where, field, host)


def _plan_event(where: str, data: dict) -> None:
    stages = data.get("stages")
    if not isinstance(stages, list) or not all(isinstance(stage, dict) for stage in stages):
        _fail(where, "stages", stages, "a list of stages")
    for stage in stages:
        _hosts(where, "hosts", stage.get("hosts"))
        _hosts(where, "controls", stage.get("controls"))


def _verdict_event(where: str, data: dict) -> None:
    _whole(where, "stage", data.get("stage"), 1, 1 << 31)
    _one_of(where, "outcome", data.get("outcome"), StageOutcome)
    _hosts(where, "hosts", data.get("hosts"))
    figures = data.get("figures", {})
    if not isinstance(figures, dict):
        _fail(where, "figures", figures, "a mapping of hosts to figures")
    for host, figure in figures.items():
        _name(where, "figures", host)
        if not isinstance(figure, dict):
            _fail(where, "figures", figure, "a host's figures")
        ratio = figure.get("retransmit_ratio")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
            _fail(where, "retransmit_ratio", ratio, "a finite number")
        _whole(where, "sent", figure.get("sent"), 0, 1 << 62)
        _metric_figures(where, figure.get("metrics", {}))


def _finite(where: str, field: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, field, value, "a finite number")


def _metric_figures(where: str, metrics: Any) -> None:
    """A host's per-metric figures (absent in records from before metrics)."""
    if not isinstance(metrics, dict):
        _fail(where, "metrics", metrics, "a mapping of metric names to figures")
    for name, figures in metrics.items():
        _name(where, "metrics", name)
        if not isinstance(figures, dict):
            _fail(where, name, figures, "a metric's figures")
        _one_of(where, f"{name}.outcome", figures.get("outcome"), MetricOutcome)
        _finite(where, f"{name}.canary_median", figures.get("canary_median"), optional=True)
        _finite(where, f"{name}.limit", figures.get("limit"))


def _gate_event(where: str, data: dict) -> None:
    if "by" in data:
        _name(where, "by", data["by"])


MAX_FIGURE = 1e18  # far beyond any counter a host reports in one interval, or any RTT in ms
MAX_INTERVAL_HOSTS = 100_000


def _figure(where: str, field: str, value: Any) -> None:
    """One number of a host's window: None (unknown), or finite, not negative, bounded."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_FIGURE:
        _fail(where, field, value, f"a finite number from 0 to {MAX_FIGURE:g}")


def _interval_event(where: str, data: dict) -> None:
    _one_of(where, "phase", data.get("phase"), StagePhase)
    _whole(where, "index", data.get("index"), 1, 1 << 31)
    _figure(where, "elapsed", data.get("elapsed"))
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or len(hosts) > MAX_INTERVAL_HOSTS:
        _fail(where, "hosts", hosts, f"a mapping of at most {MAX_INTERVAL_HOSTS} hosts to figures")
    for host, figures in hosts.items():
        _name(where, "hosts", host)
        if not isinstance(figures, dict) or len(figures) > 64:
            _fail(where, "hosts", figures, "a host's figures")
        _one_of(where, "role", figures.get("role"), HostRole)
        for field, value in figures.items():
            if field != "role":
                _figure(where, str(field)[:40], value)
        _whole(where, "sent", figures.get("sent"), 0, 1 << 62)
        _whole(where, "retransmitted", figures.get("retransmitted"), 0, 1 << 62)


def _ended_event(where: str, data: dict) -> None:
    _one_of(where, "status", data.get("status"), RolloutStatus)
    _name(where, "by", data.get("by"))
    if not isinstance(data.get("by_hand"), bool):
        _fail(where, "by_hand", data.get("by_hand"), "true or false")
    note = data.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NAME or not note.isprintable():
        _fail(where, "note", note, f"printable text of at most {MAX_NAME} characters")


def _started_event(where: str, data: dict) -> None:
    _name(where, "by", data.get("by"))


_EVENT_CHECKS = {"plan": _plan_event, "verdict": _verdict_event, "promote": _gate_event, "abort": _gate_event,
                 "interval": _interval_event, "started": _started_event, "finished": _ended_event}
