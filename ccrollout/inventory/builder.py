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
        if child == parent or self._reaches(child, parent):
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

    def _reaches(self, start: str, goal: str) -> bool:
        """Whether GOAL is a descendant of START. Searches down from START and up from GOAL
        at once, the side that has seen less first, and stops when either runs out: a chain of
        groups is then checked in a step or two whichever end it grows from, not in its length."""
        down, up = [start], [goal]
        seen_down, seen_up = {start}, {goal}
        while down and up:
            frontier, seen, other, edges = ((down, seen_down, seen_up, "children") if len(seen_down) <= len(seen_up)
                                            else (up, seen_up, seen_down, "parents"))
            for group in getattr(self.groups[frontier.pop()], edges):
                if group in other:
                    return True
                if group not in seen:
                    seen.add(group)
                    frontier.append(group)
        return False

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
                # directly in it, or through a child group ([ungrouped:children] is allowed)
                if groups - {"all", "ungrouped"} and "ungrouped" in self.hosts[host].groups:
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
        """Longest distance from ``all``, as Ansible's Group.depth. In topological order, not
        by recursion: a chain of thousands of :children is as deep as the inventory says."""
        depth = {name: 0 for name in self.groups}
        parents_left = {name: len(group.parents) for name, group in self.groups.items()}
        ready = [name for name, count in parents_left.items() if count == 0]
        while ready:
            name = ready.pop()
            for child in self.groups[name].children:
                depth[child] = max(depth[child], depth[name] + 1)
                parents_left[child] -= 1
                if parents_left[child] == 0:
                    ready.append(child)
        return depth
