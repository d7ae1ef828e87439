"""Controls that survive a reboot: what the boot unit needs, kept beside the host's record.

bpffs pins and sysctls vanish at reboot; the record (state.py) and the objects kept under
their digest do not. `persist` keeps a copy of the host side's zip beside the record and,
where the host boots with systemd, units that run it (restore.py) from the record alone:

    python3 STATE_DIR/boot/ccrollout-host.pyz restore --phase controls STATE_DIR
        before network-pre.target: load, pin, mark users, default, ECN
    python3 STATE_DIR/boot/ccrollout-host.pyz restore --phase routes STATE_DIR
        after network-online.target (only when a control has routes: they need the network)

A unit is written only where the inventory's ccrollout_boot_unit allows it: by default
(auto) only in the initial network namespace of a host whose init is systemd, so a
container or a lab namespace never writes the machine's units. Once nothing the record
holds is to be kept, the units and the copy go (forget_if_idle).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional

from . import facts, layout, state
from .osutil import write_atomically

UNIT_DIR = "/etc/systemd/system"
SYSTEMD_RUNNING = "/run/systemd/system"  # exists when systemd is this machine's init
WANTED_BY = "multi-user.target"
KEPT_ZIP = os.path.join("boot", "ccrollout-host.pyz")
PHASES = ("controls", "routes")


def kept_zip(state_dir: str) -> str:
    return os.path.join(state_dir, KEPT_ZIP)


def unit_name(state_dir: str, phase: str) -> str:
    """One unit per state directory and phase (a host could hold two state directories)."""
    return f"ccrollout-{phase}-{hashlib.sha256(state_dir.encode()).hexdigest()[:12]}.service"


def restore_command(state_dir: str, phase: str, python: Optional[str] = None) -> List[str]:
    return [python or sys.executable, kept_zip(state_dir), "restore", "--phase", phase, state_dir]


def unit_text(state_dir: str, phase: str, python: Optional[str] = None) -> str:
    command = shlex.join(restore_command(state_dir, phase, python))  # systemd reads shell-like quotes
    if phase == "controls":
        order = ["DefaultDependencies=no",
                 # bpffs and the state directory must be there; networking must wait for us
                 "After=local-fs.target sys-fs-bpf.mount",
                 "Before=network-pre.target shutdown.target",
                 "Wants=network-pre.target",
                 "Conflicts=shutdown.target"]
        what = "the BPF congestion controls"
    else:
        order = [f"After=network-online.target {unit_name(state_dir, 'controls')}",
                 "Wants=network-online.target"]
        what = "the congctl routes"
    return "\n".join([
        "# Written by ccrollout: it restores what this host's record keeps. Do not edit;",
        "# `ccrollout rollback` removes it with the last control it keeps.",
        "[Unit]",
        f"Description=ccrollout: restore {what} recorded in {state_dir}",
        *order,
        f"RequiresMountsFor={state_dir}",
        f"ConditionPathExists={layout.state_file(state_dir)}",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart={command}",
        "",
        "[Install]",
        f"WantedBy={WANTED_BY}",
        "",
    ])


def running_zip() -> Optional[str]:
    """The zip this host side runs from (the bootstrap's copy), or None when it runs from
    a source tree (tests). The bootstrap runs it from its copy unpacked beside the zip
    (STATE_DIR/ccrollout-host-DIGEST/ for STATE_DIR/ccrollout-host-DIGEST.pyz) when it can."""
    archive = getattr(globals().get("__loader__"), "archive", None)  # set by zipimport
    if archive is None:
        unpacked = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if os.path.basename(unpacked).startswith("ccrollout-host-"):
            archive = unpacked + ".pyz"
    return archive if archive and os.path.isfile(archive) else None


def _boot_unit_refused(choice: str, unit_dir: str) -> Optional[str]:
    """Why no unit is written here (None: it may be)."""
    if choice == "no":
        return "no boot unit: ccrollout_boot_unit is false for this host"
    if not os.path.isdir(SYSTEMD_RUNNING):
        return f"no boot unit: systemd is not this machine's init ({SYSTEMD_RUNNING} is missing)"
    if choice == "auto" and facts.netns_id() != facts.initial_netns_id():
        return ("no boot unit: not the initial network namespace (a container or a namespace shares "
                "the machine's units; set ccrollout_boot_unit: true to write them anyway)")
    if not os.access(unit_dir, os.W_OK):
        return f"no boot unit: {unit_dir} is not writable here"
    return None


def _kept(host: state.HostState) -> Dict[str, state.ControlRecord]:
    return {name: record for name, record in host.controls.items() if record.persist}


def _phases(kept: Dict[str, state.ControlRecord]) -> List[str]:
    """The restore's phases these controls need: routes only when one of them has routes."""
    return [phase for phase in PHASES if kept and (phase == "controls" or any(r.routes for r in kept.values()))]


def persist(state_dir: str, boot_unit: str = "auto", unit_dir: str = UNIT_DIR) -> dict:
    """Keep what a restore at boot needs for the controls the record keeps: the zip and,
    where BOOT_UNIT allows, the units; or remove them when it keeps none."""
    kept = _kept(state.load(state_dir))
    if not kept:
        return {"changed": forget(state_dir, unit_dir), "unit": None, "commands": [],
                "note": "nothing to restore at boot"}
    changed = False
    source = running_zip()
    if source is None:
        return {"changed": False, "unit": None, "commands": [],
                "note": "the host side does not run from its zip: nothing kept for a restore at boot"}
    with open(source, "rb") as handle:
        code = handle.read()
    target = kept_zip(state_dir)
    if _read(target) != code:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        write_atomically(target, code, mode=0o600, durable=True)
        changed = True
    phases = _phases(kept)
    commands = [restore_command(state_dir, phase) for phase in phases]
    refused = _boot_unit_refused(boot_unit, unit_dir)
    if refused:
        return {"changed": changed, "unit": None, "commands": commands, "note": refused}
    units = []
    for phase in PHASES:
        if phase in phases:
            changed |= _write_unit(unit_dir, unit_name(state_dir, phase), unit_text(state_dir, phase))
            units.append(os.path.join(unit_dir, unit_name(state_dir, phase)))
        else:
            changed |= _remove_unit(unit_dir, unit_name(state_dir, phase))
    if changed:
        _reload_systemd()
    return {"changed": changed, "unit": units, "commands": commands, "note": None}


def forget(state_dir: str, unit_dir: str = UNIT_DIR) -> bool:
    """Remove the units and the kept zip of STATE_DIR; whether anything was there."""
    removed = any([_remove_unit(unit_dir, unit_name(state_dir, phase)) for phase in PHASES])
    if removed:
        _reload_systemd()
    try:
        os.unlink(kept_zip(state_dir))
        removed = True
    except FileNotFoundError:
        pass
    return removed


def forget_if_idle(state_dir: str, unit_dir: str = UNIT_DIR) -> bool:
    """After a rollback: nothing left to restore at boot means no unit and no kept zip."""
    return not _kept(state.load(state_dir)) and forget(state_dir, unit_dir)


def status(state_dir: str, host: state.HostState, unit_dir: str = UNIT_DIR) -> dict:
    """What a restore at boot would run here, the units that run it, and the last restore."""
    kept = _kept(host)
    phases = _phases(kept)
    return {"kept": sorted(kept),
            "commands": [restore_command(state_dir, phase) for phase in phases]
            if os.path.isfile(kept_zip(state_dir)) else [],
            "units": [os.path.join(unit_dir, unit_name(state_dir, phase)) for phase in PHASES
                      if os.path.isfile(os.path.join(unit_dir, unit_name(state_dir, phase)))],
            "restored": host.restored.to_json() if host.restored else None}


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _wants_link(unit_dir: str, name: str) -> str:
    return os.path.join(unit_dir, f"{WANTED_BY}.wants", name)


def _write_unit(unit_dir: str, name: str, text: str) -> bool:
    """Write and enable (as `systemctl enable` would: a link in the target's wants)."""
    path, link = os.path.join(unit_dir, name), _wants_link(unit_dir, name)
    changed = False
    if _read(path) != text.encode():
        write_atomically(path, text, mode=0o644, durable=True)
        changed = True
    if not (os.path.islink(link) and os.path.realpath(link) == os.path.realpath(path)):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(path, link)
        changed = True
    return changed


def _remove_unit(unit_dir: str, name: str) -> bool:
    removed = False
    for path in (_wants_link(unit_dir, name), os.path.join(unit_dir, name)):
        if os.path.lexists(path):
            os.unlink(path)
            removed = True
    return removed


def _reload_systemd() -> None:
    """Tell a running systemd its units changed (elsewhere there is nobody to tell)."""
    if os.path.isdir(SYSTEMD_RUNNING):
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True)
