"""The inventory while its sources are read, like Ansible's InventoryData.

The readers (ini, yaml, sources) add groups, hosts and variables here; once all
sources are read, ``reconcile`` puts orphans under ``all`` and ``ungrouped``, and
the frozen model is made from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import Origin


@dataclass
class GroupData:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, None] = field(default_factory=dict)  # an ordered set
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    priority: int = 1
    origins: dict[str, Origin] = field(default_factory=dict)  # where each of vars was set


@dataclass
class HostData:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, None] = field(default_factory=dict)  # direct groups, an ordered set
    origins: dict[str, Origin] = field(default_factory=dict)  # where each of vars was set


class InventoryBuilder:
    """Groups and hosts with their own variables, in the order the sources give them."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupData] = {}
        self.hosts: dict[str, HostData] = {}
        self._ancestor_cache: dict[str, set[str]] = {}
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    def add_group(self, name: str) -> None:
        if name not in self.groups:
            self.groups[name] = GroupData(name)

    def add_host(self, name: str, group: str, port: int | None = None, origin: Origin | None = None) -> None:
        """Add NAME to GROUP; PORT (from ``host:port``, written at ORIGIN) when first seen."""
        if name not in self.hosts:
            self.hosts[name] = HostData(name)
            if port is not None:
                self.hosts[name].vars["ansible_port"] = port
                if origin is not None:
                    self.hosts[name].origins["ansible_port"] = origin
        self.groups[group].hosts[name] = None
        self.hosts[name].groups[group] = None

    def add_hosts(self, names: list[str], group: str, port: int | None = None,
                  variables: dict[str, Any] | None = None, origins: dict[str, Origin] | None = None) -> None:
        """Hosts of one inventory entry (a range gives several), each with the entry's variables;
        ORIGINS says where each variable was written ("" is where the entry itself was)."""
        origins = origins or {}
        for name in names:
            self.add_host(name, group, port, origins.get(""))
            self.hosts[name].vars.update(variables or {})
            self.hosts[name].origins.update({key: origins[key] for key in variables or {} if key in origins})

    def set_group_variable(self, group: str, key: str, value: Any, origin: Origin | None = None) -> None:
        # As Ansible: the priority orders groups of equal depth when merging, and is not a variable.
        if key == "ansible_group_priority":
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"ansible_group_priority must be a whole number, got {value!r}") from None
        else:
            self.groups[group].vars[key] = value
            if origin is not None:
                self.groups[group].origins[key] = origin

    def add_child(self, parent: str, child: str) -> None:
        """Make ``child`` a child group of ``parent``. ValueError for a loop."""
        if child == "all":
            raise ValueError(f"group 'all' cannot be a child of {parent!r}")
        if child == parent or parent in self._descendants(child):
            raise ValueError(f"making {child!r} a child of {parent!r} creates a loop of groups")
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)
            self._ancestor_cache.clear()

    def _reachable(self, name: str, edges: str) -> set[str]:
        """Every group reached from NAME by following EDGES ("children" or "parents")."""
        found: set[str] = set()
        stack = list(getattr(self.groups[name], edges))
        while stack:
            group = stack.pop()
            if group not in found:
                found.add(group)
                stack.extend(getattr(self.groups[group], edges))
        return found

    def _descendants(self, name: str) -> set[str]:
        return self._reachable(name, "children")

    def _ancestors(self, name: str) -> set[str]:
        if name not in self._ancestor_cache:
            self._ancestor_cache[name] = self._reachable(name, "parents")
        return self._ancestor_cache[name]

    def reconcile(self) -> None:
        """Ansible's reconcile_inventory: orphan groups under ``all``, ungrouped hosts
        into ``ungrouped``, and out of it once they are in another group."""
        for name in self.groups:
            if name != "all" and not self.groups[name].parents:
                self.add_child("all", name)
        for host in self.hosts:
            groups = self.host_groups(host)
            if "ungrouped" in groups:
                if groups - {"all", "ungrouped"}:
                    del self.groups["ungrouped"].hosts[host]
                    del self.hosts[host].groups["ungrouped"]
            elif groups <= {"all"}:
                self.add_host(host, "ungrouped")

    def host_groups(self, host: str) -> set[str]:
        """Every group the host is in, directly or through a child group."""
        result = set(self.hosts[host].groups)
        for group in self.hosts[host].groups:
            result |= self._ancestors(group)
        return result

    def depths(self) -> dict[str, int]:
        """Longest distance from ``all``, as Ansible's Group.depth."""
        depth: dict[str, int] = {}

        def of(name: str) -> int:
            if name not in depth:
                parents = self.groups[name].parents
                depth[name] = max((of(p) + 1 for p in parents), default=0)
            return depth[name]

        for name in self.groups:
            of(name)
        return depth
