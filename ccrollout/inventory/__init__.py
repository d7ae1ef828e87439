"""Ansible-compatible inventories and host patterns.

What is read, and how, follows Ansible (ansible-core 2.x) so that an inventory
that works with ``ansible -i`` selects the same hosts here:

- INI files: ``[group]``, ``[group:children]``, ``[group:vars]``, hosts before
  any section are ungrouped, inline ``key=value`` host variables (values go
  through ``ast.literal_eval`` as Ansible does: ``port=22`` is an int, ``x="a b"``
  a string), ``host:port``, ranges ``web[01:20].example.com``, ``db-[a:f]``,
  ``n[0:10:2]``.
- YAML files (``.yml``, ``.yaml``, ``.json``; an extension-less file is tried as
  YAML first, as Ansible's plugin order does): top-level keys are groups, each with
  ``hosts`` / ``children`` / ``vars``.
- ``group_vars/`` and ``host_vars/`` beside each ``-i`` source (its directory, or
  the source itself when it is a directory): ``NAME``, ``NAME.yml``, ``NAME.yaml``,
  ``NAME.json`` (the first that exists), or a directory ``NAME/`` of such files.
- several sources, a directory of inventory files, ``"a,b,"`` host lists.
- implicit groups ``all`` and ``ungrouped``.
- executable inventory scripts and inventory plugin configurations (``plugin:``),
  through ``ansible-inventory --list --export`` where Ansible is installed.

Variables merge as Ansible's defaults do (later wins, top-level keys replaced):
inventory ``all`` vars < inventory group vars (by depth, ``ansible_group_priority``,
name) < ``group_vars/all`` < ``group_vars/GROUP`` (same order) < inventory host
vars < ``host_vars/HOST``.

Deliberately stricter than Ansible, because a typo here puts a change on the
wrong hosts: unknown keys in YAML groups, duplicate YAML keys and non-mapping
group or host entries are errors, not warnings; there is no implicit ``localhost``.

Laid out as ansible-core's own: ``sources`` reads each ``-i`` source into the
``builder`` through ``ini`` or ``yaml`` (or ``ansible``, Ansible's own reader); ``vars`` reads group_vars/host_vars and
merges; ``model`` is the loaded Inventory, which ``patterns`` select from.
"""

from __future__ import annotations

import os
from typing import Any

from ccrollout.diagnostics import Diagnostics

from .builder import InventoryBuilder
from .model import Group, Host, Inventory, Origin
from .patterns import expand_host_range, split_host_pattern
from .sources import read_sources
from .vars import VarsFiles, group_own_variables, host_variables, sort_groups

__all__ = [
    "Host",
    "Group",
    "Inventory",
    "Origin",
    "load_inventory",
    "expand_host_range",
    "split_host_pattern",
]


def load_inventory(sources: list[str] | str) -> Inventory:
    """Read one or more ``-i`` sources (files, directories, ``a,b,`` lists) into an Inventory.

    Raises InvalidInput listing every problem found, each as ``file:line: message``.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [str(source) for source in sources]
    diagnostics = Diagnostics()
    builder = InventoryBuilder()
    vars_directories = read_sources(builder, diagnostics, sources)
    diagnostics.raise_if_any()
    builder.reconcile()
    inventory = _freeze(builder, VarsFiles(diagnostics, vars_directories), sources)
    diagnostics.raise_if_any()
    return inventory


def _freeze(builder: InventoryBuilder, files: VarsFiles, sources: list[str]) -> Inventory:
    """The read inventory as the model, every host's variables merged."""
    depths = builder.depths()
    order = {name: index for index, name in enumerate(builder.groups)}
    hosts: dict[str, Host] = {}
    host_own: dict[str, dict[str, Any]] = {}
    for name in builder.hosts:
        member_of = builder.host_groups(name) | {"all"}
        merge_order = sort_groups(builder, depths, (g for g in member_of if g != "all"))
        merged, host_own[name] = host_variables(builder, files, name, merge_order)
        hosts[name] = Host(name, merged.vars, tuple(sorted(member_of, key=order.__getitem__)), merged.origins)
    group_own = {name: group_own_variables(builder, files, name) for name in builder.groups}
    groups = {
        name: Group(name, dict(data.vars), tuple(data.hosts), tuple(data.children), tuple(data.parents),
                    depths[name], data.priority)
        for name, data in builder.groups.items()
    }
    return Inventory(hosts, groups, sources, export_group_vars=group_own, export_host_vars=host_own)
