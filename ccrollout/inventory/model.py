"""A loaded inventory: hosts, groups, and Ansible's host patterns over them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ccrollout.diagnostics import suggest

from .patterns import apply_subscript, match_names, order_terms, split_host_pattern, split_subscript


@dataclass(frozen=True)
class Origin:
    """Where a variable was set: a file, and its 1-based line and column (0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}"
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Host:
    """One inventory host.

    ``vars`` is the fully merged variable dict (group and host variables, files
    included); ``groups`` every group the host belongs to, directly or through a
    child group, in inventory order, ``all`` first; ``origins`` where each of
    ``vars`` was set (the one that won the merge), for messages.
    """

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    origins: dict[str, Origin] = field(default_factory=dict, compare=False, repr=False)

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def group_names(self) -> list[str]:
        """Ansible's ``group_names``: sorted, without ``all`` and ``ungrouped``."""
        return sorted(g for g in self.groups if g not in ("all", "ungrouped"))


@dataclass(frozen=True, eq=False)
class Group:
    """One inventory group: its own variables (from the inventory sources, not
    group_vars files), direct hosts, child and parent groups."""

    name: str
    vars: dict[str, Any]
    hosts: tuple[str, ...]
    children: tuple[str, ...]
    parents: tuple[str, ...]
    depth: int = 0
    priority: int = 1


class Inventory:
    """Hosts and groups, and Ansible's host patterns over them."""

    def __init__(self, hosts: dict[str, Host], groups: dict[str, Group], sources: Iterable[str] = (), *,
                 export_group_vars: dict[str, dict[str, Any]] | None = None,
                 export_host_vars: dict[str, dict[str, Any]] | None = None):
        self.hosts: dict[str, Host] = dict(hosts)
        self.groups: dict[str, Group] = dict(groups)
        self.sources: tuple[str, ...] = tuple(sources)
        self._group_hosts: dict[str, list[Host]] = {}
        # For to_ansible_list(export=True): a group's own vars with its group_vars
        # files, a host's own vars with its host_vars files.
        self._export_group_vars = export_group_vars or {}
        self._export_host_vars = export_host_vars or {}

    def __repr__(self) -> str:
        return f"Inventory({len(self.hosts)} hosts, {len(self.groups)} groups)"

    def group_names(self) -> list[str]:
        """All group names, sorted (as ``ansible`` lists them), ``all`` and ``ungrouped`` included."""
        return sorted(self.groups)

    def group_hosts(self, name: str) -> list[Host]:
        """The hosts of a group and of its descendants, in Ansible's order:
        the group's own hosts, then its children's, level by level."""
        if name not in self._group_hosts:
            ordered = [name, *self.groups[name].children]
            seen: set[str] = set()
            level = list(dict.fromkeys(ordered))
            while level:
                seen.update(level)
                following: list[str] = []
                for group in level:
                    ordered.extend(self.groups[group].children)
                    following.extend(self.groups[group].children)
                level = [g for g in dict.fromkeys(following) if g not in seen]
            hosts: dict[str, Host] = {}
            for group in ordered:
                for host in self.groups[group].hosts:
                    hosts.setdefault(host, self.hosts[host])
            self._group_hosts[name] = list(hosts.values())
        return list(self._group_hosts[name])

    # -- patterns ---------------------------------------------------------------

    def select(self, pattern: str) -> list[Host]:
        """The hosts an Ansible host pattern names, in the order ``ansible --list-hosts`` gives.

        ``group``, ``host``, ``a:b`` / ``a,b`` (union), ``a:&b`` (intersection),
        ``a:!b`` (exclusion), globs ``web*``, regexes ``~web\\d+``, subscripts
        ``group[0]``, ``group[-1]``, ``group[0:2]`` (inclusive, as Ansible). Nothing
        matched gives []. An invalid regex raises InvalidInput.
        """
        terms = order_terms(split_host_pattern(pattern))
        selected: list[Host] = []
        for term in terms:
            if term in self.hosts:
                selected.append(self.hosts[term])
                continue
            matched = self._match_term(term)
            if term[0] == "!":
                excluded = {h.name for h in matched}
                selected = [h for h in selected if h.name not in excluded]
            elif term[0] == "&":
                kept = {h.name for h in matched}
                selected = [h for h in selected if h.name in kept]
            else:
                present = {h.name for h in selected}
                selected.extend(h for h in matched if h.name not in present)
        return list({h.name: h for h in selected}.values())

    def unmatched_terms(self, pattern: str) -> list[str]:
        """The terms of a pattern that name no group and match no host: likely typos."""
        unmatched = []
        for term in split_host_pattern(pattern):
            bare = term[1:] if term[0] in "&!" else term
            if bare in self.hosts:
                continue
            expression, _ = split_subscript(bare)
            if not match_names(self.groups, expression) and not match_names(self.hosts, expression):
                unmatched.append(term)
        return unmatched

    def suggest(self, name: str) -> list[str]:
        """Group or host names near ``name`` (for 'did you mean'), best first."""
        bare = name.lstrip("&!")
        bare, _ = split_subscript(bare) if bare else (bare, None)
        return suggest(bare, [*self.groups, *self.hosts], n=3)

    def did_you_mean(self, name: str) -> str:
        """``"; did you mean group 'lab'?"`` or ``""``."""
        close = self.suggest(name)
        if not close:
            return ""
        kind = "group" if close[0] in self.groups else "host"
        return f"; did you mean {kind} {close[0]!r}?"

    def _match_term(self, term: str) -> list[Host]:
        bare = term[1:] if term[0] in "&!" else term
        expression, subscript = split_subscript(bare)
        hosts: list[Host] = []
        groups = match_names(self.groups, expression)
        for group in groups:
            hosts.extend(self.group_hosts(group))
        if not groups or expression[0] == "~" or any(c in expression for c in ".?*["):
            hosts.extend(self.hosts[name] for name in match_names(self.hosts, expression))
        return apply_subscript(hosts, subscript)

    # -- output -------------------------------------------------------------------

    def to_ansible_list(self, export: bool = False) -> dict[str, Any]:
        """The inventory as ``ansible-inventory --list`` prints it.

        Groups with ``hosts`` / ``children`` (empty keys and empty groups left out),
        and ``_meta.hostvars`` with each host's merged variables. With ``export``,
        as ``--list --export``: each group also carries its own ``vars`` and
        hostvars are the host's own (inventory and host_vars) variables.
        """
        reached, seen = ["all"], {"all"}
        for name in reached:  # breadth first, a loop and not recursion: chains of groups can be long
            for child in self.groups[name].children:
                if child not in seen:
                    seen.add(child)
                    reached.append(child)
        result: dict[str, Any] = {}
        for name in reached:
            group = self.groups[name]
            entry = {"hosts": list(group.hosts) if name != "all" else [], "children": list(group.children),
                     "vars": dict(self._export_group_vars.get(name, group.vars)) if export else {}}
            entry = {key: value for key, value in entry.items() if value}
            if entry:
                result[name] = entry
        hostvars = {}
        for host in self.hosts.values():
            values = self._export_host_vars.get(host.name, {}) if export else host.vars
            if values:
                hostvars[host.name] = dict(values)
        result["_meta"] = {"hostvars": hostvars}
        return result
