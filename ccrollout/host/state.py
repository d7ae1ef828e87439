"""The host's own record, STATE_DIR/state.json: what ccrollout changed in this network
namespace and what each change replaced, so that a rollback can put it back even when the
controller's journal is lost. This module alone reads and writes that file.

On disk (as every earlier version wrote it, so a host upgraded in place reads its old record):
    {"controls": {NAME: {"digests": [DIGEST, ...], "previous_default": "cubic", "since": 1.7e9,
                         "default": true, "routes": {PREFIX: {"previous": ROUTE or null}},
                         "link_id": 12, "previous_ecn": 0, "allowed_added": true, "persist": false}},
     "maps": {NAME: {DIGEST: MAP}},
     "lock": {"rollout": ID, "controller": "MACHINE:PID", "expires": 1.7e9},
     "restored": {"at": 1.7e9, "boot_id": ID, "controls": [NAME, ...], "problems": [TEXT, ...]}}
"maps" names the struct_ops map to attach of an object that holds several; "persist" (only
written when false) keeps a control out of the restore at boot; "restored" is the last one.
Records before 0.2 kept one "digest" instead of "digests", later ones kept both (the last of
"digests" was always the one that counted); only "digests" is written now. A record of any
other shape is refused rather than guessed at: it says what to undo.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Tuple

from . import layout, protocol
from .errors import ActionError
from .osutil import write_atomically


class StateError(ActionError):
    """The record cannot be read, or is not in a shape this version knows."""


@dataclass
class ControlRecord:
    """One control this namespace uses, and what choosing it replaced."""

    digests: list[str] = field(default_factory=list)   # versions used here, oldest first; the last is current
    previous_default: str | None = None                # the namespace's default before this control
    since: float | None = None                         # when this namespace first chose it (time.time())
    default: bool = True                               # made the namespace's default (not only routes')
    routes: dict[str, str | None] = field(default_factory=dict)  # prefix -> its route before (None: none)
    link_id: int | None = None                         # the link chosen last: another one means a reload
    previous_ecn: int | None = None                    # net.ipv4.tcp_ecn before ECN was asked for
    allowed_added: bool = False                        # ccrollout added it to tcp_allowed_congestion_control
    persist: bool = True                               # restored at boot (the plan's persist)

    @property
    def digest(self) -> str | None:
        """The version this namespace uses now."""
        return self.digests[-1] if self.digests else None

    def to_json(self) -> dict:
        document = {"digests": list(self.digests), "previous_default": self.previous_default,
                    "since": self.since, "default": self.default, "link_id": self.link_id,
                    "routes": {prefix: {"previous": route} for prefix, route in self.routes.items()}}
        # Written only when set, as before: earlier versions told "asked for" by the key's presence.
        if self.previous_ecn is not None:
            document["previous_ecn"] = self.previous_ecn
        if self.allowed_added:
            document["allowed_added"] = True
        if not self.persist:
            document["persist"] = False
        return document

    @classmethod
    def from_json(cls, document: object, where: str) -> ControlRecord:
        document = _object(document, where, _CONTROL_FIELDS)
        digests = _field(document, "digests", where, _STRINGS, None)
        if digests is None:  # before 0.2: one version
            digest = _field(document, "digest", where, _STRING, None, nullable=True)
            digests = [digest] if digest else []
        routes = {}
        for prefix, route in _field(document, "routes", where, _OBJECT, {}).items():
            route_where = f"{where}.routes[{prefix!r}]"
            routes[prefix] = _field(_object(route, route_where, ("previous",)), "previous", route_where,
                                    _STRING, None, nullable=True)
        previous = _field(document, "previous_default", where, _STRING, None, nullable=True)
        if previous is not None and not protocol.CONTROL_NAME.match(previous) \
                or not all(protocol.DIGEST.match(digest) for digest in digests):
            raise _Malformed(f"{where} names a control or a digest that is not one")
        return cls(digests=list(digests), routes=routes,
                   previous_default=previous,
                   since=_field(document, "since", where, _NUMBER, None, nullable=True),
                   default=_field(document, "default", where, _BOOLEAN, True),
                   link_id=_field(document, "link_id", where, _INTEGER, None, nullable=True),
                   previous_ecn=_field(document, "previous_ecn", where, _INTEGER, None, nullable=True),
                   allowed_added=_field(document, "allowed_added", where, _BOOLEAN, False),
                   persist=_field(document, "persist", where, _BOOLEAN, True))


@dataclass
class Claim:
    """A rollout's lease on this host (actions.lock): other rollouts keep out until it expires."""

    rollout: str
    controller: str      # MACHINE:PID of the controller that claimed it
    expires: float       # time.time() after which anyone may claim the host

    def to_json(self) -> dict:
        return {"rollout": self.rollout, "controller": self.controller, "expires": self.expires}

    @classmethod
    def from_json(cls, document: object, where: str) -> Claim:
        document = _object(document, where, ("rollout", "controller", "expires"))
        rollout = _field(document, "rollout", where, _STRING)
        controller = _field(document, "controller", where, _STRING)
        expires = _field(document, "expires", where, _NUMBER)
        if not math.isfinite(expires):  # "inf" would never expire, "nan" never compare
            raise _Malformed(f"{where}.expires is {_shown(expires)}, not a finite time")
        return cls(rollout=rollout, controller=controller, expires=expires)


@dataclass
class Restored:
    """The last restore at boot (host/boot.py): when, on which boot, what came back, what not."""

    at: float
    boot_id: str
    controls: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"at": self.at, "boot_id": self.boot_id, "controls": list(self.controls),
                "problems": list(self.problems)}

    @classmethod
    def from_json(cls, document: object, where: str) -> Restored:
        document = _object(document, where, ("at", "boot_id", "controls", "problems"))
        return cls(at=_field(document, "at", where, _NUMBER), boot_id=_field(document, "boot_id", where, _STRING),
                   controls=list(_field(document, "controls", where, _STRINGS, [])),
                   problems=list(_field(document, "problems", where, _STRINGS, [])))


@dataclass
class HostState:
    controls: dict[str, ControlRecord] = field(default_factory=dict)
    lock: Claim | None = None
    maps: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> digest -> struct_ops map
    restored: Restored | None = None

    def to_json(self) -> dict:
        document: dict = {"controls": {name: record.to_json() for name, record in self.controls.items()}}
        if self.lock is not None:
            document["lock"] = self.lock.to_json()
        if self.maps:
            document["maps"] = {name: dict(by_digest) for name, by_digest in self.maps.items()}
        if self.restored is not None:
            document["restored"] = self.restored.to_json()
        return document

    @classmethod
    def from_json(cls, document: object) -> HostState:
        document = _object(document, "record", ("controls", "lock", "maps", "restored"))
        controls = _field(document, "controls", "record", _OBJECT, {})
        lock = _field(document, "lock", "record", _OBJECT, None, nullable=True)
        restored = _field(document, "restored", "record", _OBJECT, None, nullable=True)
        for name in controls:
            # Names become paths under the pins' root: the same check as a request's (protocol.py).
            if not protocol.CONTROL_NAME.match(name):
                raise _Malformed(f"record.controls has {_shown(name)}, not a congestion-control name")
        return cls(controls={name: ControlRecord.from_json(record, f"record.controls[{name!r}]")
                             for name, record in controls.items()},
                   lock=None if lock is None else Claim.from_json(lock, "record.lock"),
                   maps=_maps(_field(document, "maps", "record", _OBJECT, {})),
                   restored=None if restored is None else Restored.from_json(restored, "record.restored"))


def _maps(document: dict) -> dict[str, dict[str, str]]:
    maps = {}
    for name, by_digest in document.items():
        where = f"record.maps[{name!r}]"
        if not protocol.CONTROL_NAME.match(name) or not isinstance(by_digest, dict) \
                or not all(isinstance(key, str) and protocol.DIGEST.match(key) and isinstance(value, str)
                           and protocol.MAP_NAME.match(value) for key, value in by_digest.items()):
            raise _Malformed(f"{where} is not a control's digests with their struct_ops maps")
        maps[name] = dict(by_digest)
    return maps


def load(state_dir: str) -> HostState:
    """The record; an empty one where none was written yet."""
    path = layout.state_file(state_dir)
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except FileNotFoundError:
        return HostState()
    except OSError as exc:
        raise StateError(f"cannot read this host's record {path}: {exc.strerror}") from None
    try:
        return HostState.from_json(json.loads(content))
    except ValueError as exc:  # not JSON, or not UTF-8
        raise StateError(f"this host's record {path} is not JSON ({exc}){_LEFT_ALONE}") from None
    except _Malformed as exc:
        raise StateError(f"this host's record {path} is not one this version reads: {exc}{_LEFT_ALONE}") from None


def save(state_dir: str, state: HostState) -> None:
    """Replace the record at once: a crash leaves the old one or the new one, never half of either."""
    os.makedirs(state_dir, exist_ok=True)
    write_atomically(layout.state_file(state_dir), json.dumps(state.to_json(), indent=1, sort_keys=True),
                     mode=0o600, durable=True)


# -- checking what was read --------------------------------------------------

_LEFT_ALONE = ("; nothing was changed (it names what ccrollout changed here: undo that by hand "
               "before moving the file aside)")
_CONTROL_FIELDS = ("digests", "digest", "previous_default", "since", "default", "routes", "link_id",
                   "previous_ecn", "allowed_added", "persist")


class _Malformed(Exception):
    pass


# (what a reader is told to expect, the check)
_Kind = Tuple[str, Callable[[object], bool]]
_STRING: _Kind = ("a string", lambda value: isinstance(value, str))
_STRINGS: _Kind = ("a list of strings", lambda value: isinstance(value, list)
                  and all(isinstance(item, str) for item in value))
_NUMBER: _Kind = ("a number", lambda value: isinstance(value, (int, float)) and not isinstance(value, bool))
_INTEGER: _Kind = ("an integer", lambda value: isinstance(value, int) and not isinstance(value, bool))
_BOOLEAN: _Kind = ("true or false", lambda value: isinstance(value, bool))
_OBJECT: _Kind = ("an object", lambda value: isinstance(value, dict))
_REQUIRED = object()


def _object(value: object, where: str, known: tuple[str, ...]) -> dict:
    """VALUE as a JSON object with none but the KNOWN fields (one this version does not know
    could hold something to undo, so it is not dropped silently)."""
    if not isinstance(value, dict):
        raise _Malformed(f"{where} is {_shown(value)}, not an object")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise _Malformed(f"{where} has {', '.join(map(repr, unknown))}, unknown to this version "
                         "(written by a newer ccrollout?)")
    return value


def _field(document: dict, key: str, where: str, kind: _Kind, default: object = _REQUIRED,
           nullable: bool = False):
    if key not in document:
        if default is _REQUIRED:
            raise _Malformed(f"{where} has no {key!r}")
        return default
    value = document[key]
    if value is None and nullable:
        return None
    expected, accepts = kind
    if not accepts(value):
        raise _Malformed(f"{where}.{key} is {_shown(value)}, not {expected}{' or null' if nullable else ''}")
    return value


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."

