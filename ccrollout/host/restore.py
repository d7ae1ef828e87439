"""Putting the host's record back after a reboot: what the boot units run (boot.py).

    python3 STATE_DIR/boot/ccrollout-host.pyz restore [--phase all|controls|routes] STATE_DIR

The record is the truth: each control it keeps (persist) is loaded from its kept object
under its recorded digest unless this kernel already runs it (another namespace of the
same kernel restored it first), this namespace is marked a user again, and the default,
ECN and routes are set as the record says. A control a rollback removed is gone from the
record, so it never comes back. Running it again changes nothing.
"""

from __future__ import annotations

import time
from typing import List

from . import actions, facts, routes, state
from .errors import ActionError


def restore(state_dir: str, phase: str = "all") -> dict:
    host = state.load(state_dir)
    kept = sorted(((name, record) for name, record in host.controls.items() if record.persist),
                  key=lambda item: item[1].since or 0)
    restored: List[str] = []
    problems: List[str] = []
    changed = False
    for name, record in kept:
        try:
            if phase in ("all", "controls"):
                changed |= _restore_control(state_dir, host, name, record, problems)
            if phase in ("all", "routes"):
                for prefix, previous in record.routes.items():
                    changed |= routes.activate(prefix, name, previous)
            restored.append(name)
        except (ActionError, routes.RouteError) as exc:
            problems.append(f"{name}: {exc}")
    _remember(state_dir, phase, restored, problems)
    return {"changed": changed, "restored": restored, "problems": problems}


def _restore_control(state_dir: str, host: state.HostState, name: str, record: state.ControlRecord,
                     problems: List[str]) -> bool:
    digest = record.digest
    if digest is None:
        raise ActionError("the record names no version")
    changed, note = actions.ensure_loaded(state_dir, name, digest, host.maps.get(name, {}).get(digest))
    if note:
        problems.append(f"{name}: {note}")
    activated = actions.activate(state_dir, name, digest, default=record.default, prefixes=(),
                                 ecn=record.previous_ecn is not None, persist=record.persist)
    return changed or activated["changed"]


def _remember(state_dir: str, phase: str, restored: List[str], problems: List[str]) -> None:
    """The last restore, for `ccrollout status`; the routes phase adds to its boot's record."""
    host = state.load(state_dir)
    boot_id = facts.boot_id()
    earlier = host.restored
    if phase == "routes" and earlier is not None and earlier.boot_id == boot_id:
        restored, problems = earlier.controls, earlier.problems + problems
    host.restored = state.Restored(at=time.time(), boot_id=boot_id, controls=restored, problems=problems)
    state.save(state_dir, host)

