"""The language between the controller and the host agent: every operation, with its
request fields (types, bounds, defaults) and its answer fields.

Imported by both sides: the controller builds requests with `request()` and reads answers
with `answer()`; the host validates every request with `parse()` before it acts, so a
malformed or hostile request is refused in JSON and changes nothing. Standard library
only, Python 3.8 and newer (it travels to the hosts inside the agent's zip).

The wire: the agent reads JSON lines `{"id": N, "state_dir": DIR, "actions": [...]}` and
answers each with one line `{"id": N, "results": [...]}`; long operations may first write
lines `{"id": N, "progress": {...}}`. Actions of one message run in order, and the first
failure ends the message.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# A kernel congestion-control name: TCP_CA_NAME_MAX is 16 bytes with the NUL.
CONTROL_NAME = re.compile(r"[A-Za-z0-9_]{1,15}\Z")
DIGEST = re.compile(r"[0-9a-f]{64}\Z")
# A struct_ops map as libbpf names it: the C variable of the tcp_congestion_ops.
MAP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
ROLLOUT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
STATE_DIR = re.compile(r"/[A-Za-z0-9_./-]{0,4095}\Z")
WATCH_SOURCES = ("sockets", "trace")
DEFAULT_WATCH_SOURCE = "sockets"
# The inventory's ccrollout_boot_unit: auto installs a boot unit only in the initial network
# namespace of a host whose init is systemd (never from a container or a lab namespace).
BOOT_UNIT_CHOICES = ("auto", "yes", "no")
# A restore at boot: the controls (before the network is up), the routes (once it is), or both.
RESTORE_PHASES = ("all", "controls", "routes")
MAX_VMLINUX_TEXT = 64 << 20      # bpftool's vmlinux.h of a distribution kernel is 3 to 8 MB

WEEK = 7 * 24 * 3600.0
MAX_OBJECT_BASE64 = 16 << 20     # a BPF object is a few kB to a few hundred kB
MAX_ACTIONS = 16                 # per message
MAX_ROUTES = 256
MAX_TEXT = 256


class ProtocolError(ValueError):
    """A request (or an answer) that does not follow the protocol."""


_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One request field: NAME, its CHECK (value -> value, raising ValueError), DEFAULT."""

    name: str
    check: Callable[[Any], Any]
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Operation:
    name: str
    fields: Tuple[Field, ...] = ()
    answer: Tuple[str, ...] = ()     # answer fields beyond ok / changed / error / seconds
    changes_host: bool = False       # may change the host (a read-only command never sends it)

    def field_names(self) -> List[str]:
        return [spec.name for spec in self.fields]


# -- field checks: each returns the value (normalised) or raises ValueError --------------------

def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if not math.isfinite(value) or not low < value <= high:
            raise ValueError(f"must be a finite number above {low:g} and at most {high:g}")
        return float(value)
    return check


def _whole(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value
    return check


def _matching(pattern: "re.Pattern[str]", what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise ValueError(f"must be {what}")
        return value
    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return value
    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT or not value.isprintable():
        raise ValueError(f"must be printable text of 1 to {MAX_TEXT} characters")
    return value


def _base64(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_OBJECT_BASE64 \
            or not re.match(r"[A-Za-z0-9+/]*={0,2}\Z", value):
        raise ValueError(f"must be base64 text of at most {MAX_OBJECT_BASE64} characters")
    return value


def _prefixes(value: Any) -> List[str]:
    if not isinstance(value, list) or len(value) > MAX_ROUTES:
        raise ValueError(f"must be a list of at most {MAX_ROUTES} IP prefixes")
    prefixes = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError("must hold IP prefixes as text")
        try:
            prefixes.append(str(ipaddress.ip_network(item)))
        except ValueError:
            raise ValueError(f"{item[:64]!r} is not an IP prefix") from None
    return prefixes


control_name = _matching(CONTROL_NAME, "a congestion-control name (1 to 15 of A-Z a-z 0-9 _)")
digest = _matching(DIGEST, "a sha256 digest (64 lower-case hex digits)")
map_name = _matching(MAP_NAME, "a struct_ops map name (a C identifier of at most 128 characters)")
rollout_id = _matching(ROLLOUT_ID, "a rollout id")

# -- what `counters` answers per control (by_control) --------------------------------------------

# Counters since the watcher started (sums over connections), and connections, a gauge: the
# control's connections at the watcher's last read. RTT comes as sums over readings (one
# reading: one connection that had data acked since the read before), so two answers'
# differences give the mean RTT over the reads between them.
CONTROL_FIGURES = ("sent", "retransmitted", "bytes_acked", "connections",
                   "srtt_us_sum", "min_rtt_us_sum", "rtt_readings")


def control_figures(totals: Sequence[int], rtt: Optional[Sequence[int]], connections: int) -> Dict[str, int]:
    """One control's entry of by_control, from the ledger's counters and RTT sums."""
    sent, retransmitted, bytes_acked = totals
    srtt_sum, min_rtt_sum, readings = rtt or (0, 0, 0)
    return dict(zip(CONTROL_FIGURES, (sent, retransmitted, bytes_acked, connections,
                                      srtt_sum, min_rtt_sum, readings)))


# -- the operations ----------------------------------------------------------------------------

OPERATIONS: Dict[str, Operation] = {op.name: op for op in (
    Operation("facts", (Field("tracer", _boolean, False),), answer=("facts",)),
    Operation("counters", answer=("time", "counters", "by_control")),
    Operation("drift", answer=("drift", "managed", "restored")),
    Operation("install", (Field("name", control_name), Field("digest", digest),
                          Field("object", _optional(_base64), None),
                          # which struct_ops map of the object to attach; None: its only one
                          Field("map", _optional(map_name), None)),
              answer=("loaded", "replaced", "link", "netns", "other_users"), changes_host=True),
    Operation("activate", (Field("name", control_name), Field("digest", digest),
                           Field("default", _boolean, True), Field("routes", _prefixes, []),
                           Field("ecn", _boolean, False), Field("persist", _boolean, True)),
              answer=("default", "previous"), changes_host=True),
    # Keep what the record needs at boot (the host side's zip) and the boot unit, or remove
    # them when nothing is to be restored any more.
    Operation("persist", (Field("boot_unit", _one_of(*BOOT_UNIT_CHOICES), "auto"),),
              answer=("unit", "commands", "note"), changes_host=True),
    # What the boot unit runs (python3 ZIP restore STATE_DIR): the record put back.
    Operation("restore", (Field("phase", _one_of(*RESTORE_PHASES), "all"),),
              answer=("restored", "problems"), changes_host=True),
    Operation("vmlinux", answer=("text", "kernel")),
    Operation("deactivate", (Field("name", control_name), Field("digest", _optional(digest), None),
                             Field("restore", _optional(control_name), None)),
              answer=("restored", "unloaded", "reverted_to", "note"), changes_host=True),
    Operation("withdraw_all", answer=("undone",), changes_host=True),
    Operation("lock", (Field("rollout", rollout_id), Field("controller", _text),
                       Field("lease", _number(0, WEEK))),
              answer=("renewed",), changes_host=True),
    Operation("unlock", (Field("rollout", rollout_id),), changes_host=True),
    Operation("watch_start", (Field("lifetime", _number(0, 8 * 24 * 3600.0)),
                              Field("source", _one_of(*WATCH_SOURCES), DEFAULT_WATCH_SOURCE)),
              answer=("started", "source", "note")),
    Operation("watch_stop", answer=("stopped",)),
    Operation("trace", (Field("seconds", _number(0, 3600.0)), Field("interval", _number(0, 60.0)),
                        Field("top", _whole(0, 100), 5)),
              answer=("seconds", "intervals", "retransmits", "by_congestion", "unattributed", "top")),
)}


# -- requests ----------------------------------------------------------------------------------

def action(op: str, **values: Any) -> Dict[str, Any]:
    """One action for a message, checked as the host will check it (the controller's side)."""
    built = {"op": op, **values}
    parse_action(built)
    return built


def parse_action(raw: Any) -> Tuple[Operation, Dict[str, Any]]:
    """The operation and its arguments (defaults filled in), or ProtocolError naming the
    first thing that is wrong. Unknown fields are refused too: nothing is ignored silently."""
    if not isinstance(raw, dict):
        raise ProtocolError("an action must be an object")
    op_name = raw.get("op")
    operation = OPERATIONS.get(op_name) if isinstance(op_name, str) else None
    if operation is None:
        raise ProtocolError(f"unknown operation {str(op_name)[:32]!r}")
    unknown = sorted(set(raw) - {"op"} - set(operation.field_names()))
    if unknown:
        raise ProtocolError(f"{operation.name}: unknown field {str(unknown[0])[:32]!r}")
    arguments = {}
    for spec in operation.fields:
        if spec.name not in raw:
            if spec.required:
                raise ProtocolError(f"{operation.name}: {spec.name} is missing")
            arguments[spec.name] = spec.default
            continue
        try:
            arguments[spec.name] = spec.check(raw[spec.name])
        except ValueError as exc:
            raise ProtocolError(f"{operation.name}: {spec.name} {exc}") from None
    return operation, arguments


@dataclass(frozen=True)
class Message:
    id: int
    state_dir: str
    actions: List[Any] = field(default_factory=list)


def parse_message(raw: Any) -> Message:
    """The envelope; each action is checked on its own as it comes (see parse_action)."""
    if not isinstance(raw, dict):
        raise ProtocolError("a message must be a JSON object")
    message_id = raw.get("id", 0)
    if isinstance(message_id, bool) or not isinstance(message_id, int) or not 0 <= message_id < 2 ** 53:
        raise ProtocolError("id must be a whole number")
    state_dir = raw.get("state_dir")
    if not isinstance(state_dir, str) or not STATE_DIR.match(state_dir) \
            or "/../" in state_dir + "/" or "/./" in state_dir + "/" or "//" in state_dir:
        raise ProtocolError("state_dir must be an absolute, normalised path of A-Z a-z 0-9 _ . - /")
    actions = raw.get("actions", [])
    if not isinstance(actions, list) or len(actions) > MAX_ACTIONS:
        raise ProtocolError(f"actions must be a list of at most {MAX_ACTIONS}")
    return Message(message_id, state_dir, actions)


def message(message_id: int, state_dir: str, actions: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"id": message_id, "state_dir": state_dir, "actions": actions}


# -- answers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """One action's answer as the controller reads it: the common fields, and the
    operation's own under `fields` (also reachable as attributes: `answer.facts`)."""

    op: str
    ok: bool
    changed: bool = False
    error: Optional[str] = None
    log: str = ""
    seconds: float = 0.0
    fields: Dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        operation = OPERATIONS.get(self.__dict__.get("op", ""))
        if operation is not None and name in operation.answer:
            return self.__dict__["fields"].get(name)
        raise AttributeError(name)


def answer(raw: Any) -> Answer:
    """An action's answer from the host, checked for the shape every answer has."""
    if not isinstance(raw, dict) or not isinstance(raw.get("op"), str) or not isinstance(raw.get("ok"), bool):
        raise ProtocolError("the host answered something that is not an action's answer")
    operation = OPERATIONS.get(raw["op"])
    own = {key: raw.get(key) for key in (operation.answer if operation else ())}
    return Answer(op=raw["op"], ok=raw["ok"], changed=bool(raw.get("changed")),
                  error=None if raw.get("error") is None else str(raw["error"]),
                  log=str(raw.get("log") or ""), seconds=float(raw.get("seconds") or 0.0), fields=own)
