"""Inventories only Ansible can read: executable inventory scripts and inventory plugin
configurations (``plugin: ...``), read through ``ansible-inventory -i SOURCE --list --export``
when Ansible is installed (the controller's environment first, then PATH).

``--export`` gives each group's own variables and each host's own, as the other readers
give them, so they merge here in the same order. Nothing is run when Ansible is missing: the
error says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ccrollout.diagnostics import Diagnostics

from .builder import InventoryBuilder
from .model import Origin

TIMEOUT_SECONDS = 120
# An unreadable source is a failure, not an empty inventory with a warning.
_ENVIRONMENT = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def ansible_inventory() -> str | None:
    """The ansible-inventory beside this Python (its virtual environment), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-inventory"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ansible-inventory")


def needs_ansible(path: Path, text: str, plugin: Any) -> str | None:
    """Why only Ansible can read this source (PLUGIN: its top-level ``plugin`` value, if it is
    a YAML mapping with one), or None."""
    if text.startswith("#!") and os.access(path, os.X_OK):
        return "an executable inventory script"
    if plugin is not None:
        return f"an inventory plugin configuration (plugin: {plugin})"
    return None


def read_with_ansible(builder: InventoryBuilder, diagnostics: Diagnostics, file: str, kind: str) -> None:
    """Add what ``ansible-inventory --list --export`` reads from FILE (KIND says what it is)."""
    command = ansible_inventory()
    if command is None:
        diagnostics.add(file, 0, 0, f"{kind}: only Ansible can read it, and ansible-inventory is not "
                                    "installed (pip install ansible-core); or write the inventory as INI or YAML")
        return
    try:
        ran = subprocess.run([command, "-i", file, "--list", "--export"], capture_output=True, text=True,
                             timeout=TIMEOUT_SECONDS, env={**os.environ, **_ENVIRONMENT}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        diagnostics.add(file, 0, 0, f"{kind}: ansible-inventory did not finish: {exc}")
        return
    if ran.returncode != 0:
        lines = [line for line in ran.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("[ERROR]")] or lines[-1:]
        diagnostics.add(file, 0, 0, f"{kind}: ansible-inventory failed: {' '.join(errors) or ran.returncode}")
        return
    try:
        _add(builder, json.loads(ran.stdout), Origin(file))
    except (ValueError, TypeError, AttributeError) as exc:
        diagnostics.add(file, 0, 0, f"{kind}: ansible-inventory printed what ccrollout cannot read: {exc}")


def _add(builder: InventoryBuilder, listing: dict, origin: Origin) -> None:
    """Groups, children, hosts and variables of one ``--list --export`` listing."""
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    groups = {name: entry or {} for name, entry in listing.items() if name != "_meta"}
    for name in groups:
        builder.add_group(name)
    for name, entry in groups.items():
        for child in entry.get("children", []):
            builder.add_group(child)
            builder.add_child(name, child)
        for host in entry.get("hosts", []):
            variables = hostvars.get(host) or {}
            builder.add_hosts([str(host)], name, variables=variables, origins=dict.fromkeys(variables, origin))
        for key, value in (entry.get("vars") or {}).items():
            builder.set_group_variable(name, key, value, origin)
