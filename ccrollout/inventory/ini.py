"""INI inventory files, as Ansible's ini plugin reads them.

``[group]``, ``[group:children]`` and ``[group:vars]`` sections; hosts before any
section are ungrouped; host lines take inline ``key=value`` variables whose values
are Python literals when they parse as one (``port=22`` is an int).
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any

from ccrollout.diagnostics import Diagnostics, did_you_mean, short_repr

from .builder import InventoryBuilder
from .model import Origin
from .patterns import parse_host_and_port

_SECTION_RE = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME_RE = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def read_ini_inventory(builder: InventoryBuilder, diagnostics: Diagnostics, file: str, text: str) -> None:
    """Add an INI file's groups and hosts to ``builder``; report its errors to ``diagnostics``."""
    _IniReader(builder, diagnostics, file).read(text)


@dataclass
class _PendingGroup:
    """A group named before any section defines it, so not yet known to be defined."""

    line: int
    section: str  # "vars" or "children": the kind of section that named it
    parents: list[str] = field(default_factory=list)


class _IniReader:
    def __init__(self, builder: InventoryBuilder, diagnostics: Diagnostics, file: str):
        self.builder = builder
        self.diagnostics = diagnostics
        self.file = file
        self.group = "ungrouped"
        self.state = "hosts"  # the current section's type, or "skip" after a bad header
        self.pending: dict[str, _PendingGroup] = {}

    def error(self, line: int, message: str) -> None:
        self.diagnostics.add(self.file, line, 0, message)

    def read(self, text: str) -> None:
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            try:
                self._read_line(line, number)
            except ValueError as exc:
                self.error(number, str(exc))
        self._report_undefined_groups()

    def _read_line(self, line: str, number: int) -> None:
        section = _SECTION_RE.match(line)
        if section:
            self._start_section(section, line, number)
        elif line.startswith("[") and line.endswith("]"):
            self.state = "skip"
            raise ValueError(f"invalid section header {short_repr(line)}: a group name has no spaces, "
                             f"':' or ']', and the only section types are :children and :vars")
        elif self.state == "hosts":
            self._host_line(line, number)
        elif self.state == "vars":
            self._variable_line(line, number)
        elif self.state == "children":
            self._child_line(line, number)

    def _start_section(self, section: re.Match, line: str, number: int) -> None:
        builder, pending = self.builder, self.pending
        group = self.group = section.group(1)
        state = self.state = section.group(2) or "hosts"
        if state not in ("hosts", "children", "vars"):
            self.state = "skip"
            raise ValueError(f"section [{line[1:line.index(']')]}] has unknown type "
                             f"{section.group(2)!r}; expected [{group}], [{group}:children] "
                             f"or [{group}:vars]")
        if group not in builder.groups:
            if state == "vars" and group not in pending:
                pending[group] = _PendingGroup(number, "vars")
            builder.add_group(group)
        if group in pending and state != "vars":
            if pending[group].section == "children":
                self._add_pending_children(group)
            else:
                del pending[group]

    def _add_pending_children(self, group: str) -> None:
        """GROUP is defined now: it joins the parents that named it, and so does each of those
        that was itself waiting, up the chain (a loop, not recursion: chains can be long)."""
        waiting = [group]
        while waiting:
            group = waiting.pop()
            declaration = self.pending.pop(group)
            for parent in declaration.parents:
                try:
                    self.builder.add_child(parent, group)
                except ValueError as exc:
                    self.error(declaration.line, str(exc))
                if parent in self.pending and self.pending[parent].section == "children" \
                        and parent not in waiting:
                    waiting.append(parent)

    def _host_line(self, line: str, number: int) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ValueError(f"cannot read host line {short_repr(line)}: {exc}") from None
        if not tokens:
            return
        names, port = parse_host_and_port(tokens[0])
        variables: dict[str, Any] = {}
        for token in tokens[1:]:
            key, equals, value = token.partition("=")
            if not equals or not key:
                raise ValueError(f"expected key=value after host {short_repr(tokens[0])}, got {short_repr(token)}")
            variables[key] = _parse_ini_value(value)
        origin = Origin(self.file, number)
        self.builder.add_hosts(names, self.group, port, variables, {"": origin, **dict.fromkeys(variables, origin)})

    def _variable_line(self, line: str, number: int) -> None:
        if "=" not in line:
            raise ValueError(f"expected key=value in [{self.group}:vars], got {short_repr(line)}")
        key, value = (part.strip() for part in line.split("=", 1))
        if not key:
            raise ValueError(f"expected key=value in [{self.group}:vars], got {short_repr(line)}")
        self.builder.set_group_variable(self.group, key, _parse_ini_value(value), Origin(self.file, number))

    def _child_line(self, line: str, number: int) -> None:
        match = _GROUP_NAME_RE.match(line)
        if not match:
            raise ValueError(f"expected a group name in [{self.group}:children], got {short_repr(line)}")
        child = match.group(1)
        if child in self.builder.groups:
            self.builder.add_child(self.group, child)
        elif child in self.pending:
            self.pending[child].parents.append(self.group)
        else:
            self.pending[child] = _PendingGroup(number, "children", [self.group])

    def _report_undefined_groups(self) -> None:
        known = self.builder.groups
        for name, declaration in self.pending.items():
            if declaration.section == "vars":
                self.error(declaration.line,
                           f"section [{name}:vars] is for a group that is not defined in this inventory"
                           f"{did_you_mean(name, known)}")
            else:
                self.error(declaration.line,
                           f"section [{declaration.parents[-1]}:children] names group {name!r}, "
                           f"which has no [{name}] or [{name}:children] section"
                           f"{did_you_mean(name, known)}")


def _parse_ini_value(text: str) -> Any:
    """Ansible's INI value rule: a Python literal if it is one, else the string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    # Nesting is bounded by Python's parser (literal_eval refuses ~200 levels), so recursion is fine.
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # a key stays a key only as a scalar; (1, 2) becomes "(1, 2)"
        return {k if isinstance(k, (str, int, float, bool)) or k is None else str(k): _plain(v)
                for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, complex) or value is Ellipsis:
        return "..." if value is Ellipsis else str(value)
    return value
