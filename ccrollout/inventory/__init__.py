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

Variables merge as Ansible's defaults do (later wins, top-level keys replaced):
inventory ``all`` vars < inventory group vars (by depth, ``ansible_group_priority``,
name) < ``group_vars/all`` < ``group_vars/GROUP`` (same order) < inventory host
vars < ``host_vars/HOST``.

Deliberately stricter than Ansible, because a typo here puts a change on the
wrong hosts: unknown keys in YAML groups, duplicate YAML keys and non-mapping
group or host entries are errors, not warnings; executable inventory scripts and
inventory plugin configs are not run; there is no implicit ``localhost``.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import Any, Iterable

from ccrollout.diagnostics import (
    Diagnostics,
    YAMLSyntaxError,
    did_you_mean,
    format_doc_path,
    load_marked_yaml,
)

from .builder import InventoryBuilder
from .model import Group, Host, Inventory
from .patterns import expand_host_range, parse_host_and_port, split_host_pattern

__all__ = [
    "Host",
    "Group",
    "Inventory",
    "load_inventory",
    "expand_host_range",
    "split_host_pattern",
]

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# Names skipped when a directory is an inventory source (Ansible's INVENTORY_IGNORE_*).
_IGNORED_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")
_IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst",
                       ".orig", ".cfg", ".retry")

_SECTION_RE = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME_RE = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


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
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k) if not isinstance(k, (list, dict)) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, complex) or value is Ellipsis:
        return "..." if value is Ellipsis else str(value)
    return value


class _Reader:
    """Reads inventory sources into an InventoryBuilder, collecting errors."""

    def __init__(self) -> None:
        self.diagnostics = Diagnostics()
        self.builder = InventoryBuilder()
        self._vars_cache: dict[str, dict[str, Any]] = {}
        self._entity_vars: dict[tuple[str, str, str], dict[str, Any]] = {}

    def error(self, file: str, line: int, message: str, column: int = 0) -> None:
        self.diagnostics.add(file, line, column, message)

    # sources

    def read_source(self, source: str) -> str | None:
        """Read one ``-i`` source; returns the directory whose group_vars/host_vars apply."""
        path = Path(os.path.expanduser(source))
        if not path.exists():
            if "," in source:
                self.read_host_list(source)
                return None
            self.error(source, 0, "inventory source not found")
            return None
        if path.is_dir():
            self.read_directory(path)
            return str(path)
        self.read_file(path)
        return str(path.parent)

    def read_host_list(self, source: str) -> None:
        for item in source.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                names, port = parse_host_and_port(item)
            except ValueError as exc:
                self.error(source, 0, str(exc))
                continue
            self.builder.add_hosts(names, "ungrouped", port)

    def read_directory(self, directory: Path) -> None:
        for entry in sorted(os.listdir(directory)):
            if _IGNORED_NAMES.search(entry) or entry.endswith(_IGNORED_EXTENSIONS):
                continue
            path = directory / entry
            if path.is_dir():
                self.read_directory(path)
            elif path.is_file():
                self.read_file(path)

    def read_file(self, path: Path) -> None:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            self.error(file, 0, f"not UTF-8 text: {exc.reason} at byte {exc.start}")
            return
        except OSError as exc:
            self.error(file, 0, f"cannot read: {exc.strerror or exc}")
            return
        if text.startswith("#!") and os.access(path, os.X_OK):
            self.error(file, 1, "executable inventory scripts are not supported; "
                                "write the inventory as an INI or YAML file")
            return
        suffix = path.suffix.lower()
        if suffix in YAML_EXTENSIONS:
            self.read_yaml_inventory(file, text)
        elif not suffix and self._is_yaml_mapping(text):
            self.read_yaml_inventory(file, text)
        else:
            self.read_ini_inventory(file, text)

    @staticmethod
    def _is_yaml_mapping(text: str) -> bool:
        try:
            return isinstance(load_marked_yaml(text).data, dict)
        except YAMLSyntaxError:
            return False

    # INI

    def read_ini_inventory(self, file: str, text: str) -> None:
        builder = self.builder
        pending: dict[str, dict[str, Any]] = {}
        group, state = "ungrouped", "hosts"
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            try:
                section = _SECTION_RE.match(line)
                if section:
                    group, state = section.group(1), section.group(2) or "hosts"
                    if state not in ("hosts", "children", "vars"):
                        state = "skip"
                        raise ValueError(f"section [{line[1:line.index(']')]}] has unknown type "
                                         f"{section.group(2)!r}; expected [{group}], [{group}:children] "
                                         f"or [{group}:vars]")
                    if group not in builder.groups:
                        if state == "vars" and group not in pending:
                            pending[group] = {"line": number, "state": "vars"}
                        builder.add_group(group)
                    if group in pending and state != "vars":
                        if pending[group]["state"] == "children":
                            self._add_pending_children(file, group, pending)
                        else:
                            del pending[group]
                    continue
                if line.startswith("[") and line.endswith("]"):
                    state = "skip"
                    raise ValueError(f"invalid section header {line!r}: a group name has no spaces, "
                                     f"':' or ']', and the only section types are :children and :vars")
                if state == "hosts":
                    self._ini_host_line(file, line, group)
                elif state == "vars":
                    if "=" not in line:
                        raise ValueError(f"expected key=value in [{group}:vars], got {line!r}")
                    key, value = (part.strip() for part in line.split("=", 1))
                    if not key:
                        raise ValueError(f"expected key=value in [{group}:vars], got {line!r}")
                    builder.set_group_variable(group, key, _parse_ini_value(value))
                elif state == "children":
                    match = _GROUP_NAME_RE.match(line)
                    if not match:
                        raise ValueError(f"expected a group name in [{group}:children], got {line!r}")
                    child = match.group(1)
                    if child in builder.groups:
                        builder.add_child(group, child)
                    elif child in pending:
                        pending[child].setdefault("parents", []).append(group)
                    else:
                        pending[child] = {"line": number, "state": "children", "parents": [group]}
            except ValueError as exc:
                self.error(file, number, str(exc))
        for name, declaration in pending.items():
            if declaration["state"] == "vars":
                self.error(file, declaration["line"],
                           f"section [{name}:vars] is for a group that is not defined in this inventory"
                           f"{did_you_mean(name, builder.groups)}")
            else:
                self.error(file, declaration["line"],
                           f"section [{declaration['parents'][-1]}:children] names group {name!r}, "
                           f"which has no [{name}] or [{name}:children] section"
                           f"{did_you_mean(name, builder.groups)}")

    def _add_pending_children(self, file: str, group: str, pending: dict[str, dict[str, Any]]) -> None:
        declaration = pending.pop(group)
        for parent in declaration.get("parents", []):
            try:
                self.builder.add_child(parent, group)
            except ValueError as exc:
                self.error(file, declaration["line"], str(exc))
            if parent in pending and pending[parent]["state"] == "children":
                self._add_pending_children(file, parent, pending)

    def _ini_host_line(self, file: str, line: str, group: str) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ValueError(f"cannot read host line {line!r}: {exc}") from None
        if not tokens:
            return
        names, port = parse_host_and_port(tokens[0])
        variables: dict[str, Any] = {}
        for token in tokens[1:]:
            key, equals, value = token.partition("=")
            if not equals or not key:
                raise ValueError(f"expected key=value after host {tokens[0]!r}, got {token!r}")
            variables[key] = _parse_ini_value(value)
        self.builder.add_hosts(names, group, port, variables)

    # YAML

    def read_yaml_inventory(self, file: str, text: str) -> None:
        try:
            document = load_marked_yaml(text)
        except YAMLSyntaxError as exc:
            self.error(file, exc.line, exc.message, exc.column)
            return
        for path, (first, line, column) in document.duplicate_keys.items():
            self.error(file, line, f"{format_doc_path(path)}: key given twice (first at line {first})", column)
        data = document.data
        if data is None:
            return
        if not isinstance(data, dict):
            self.error(file, 1, "a YAML inventory must be a mapping of group names "
                                "(usually starting with 'all:')", 1)
            return
        if "plugin" in data:
            line, column = document.mark(("plugin",), key=True)
            self.error(file, line, "inventory plugin configurations are not supported; "
                                   "list the hosts and groups instead", column)
            return
        for name, group_data in data.items():
            self._yaml_group(file, document, name, group_data, (name,))

    def _yaml_group(self, file: str, document: Any, name: Any, data: Any, path: tuple) -> str | None:
        builder = self.builder

        def error(at: tuple, message: str, key: bool = False) -> None:
            line, column = document.mark(at, key=key)
            self.error(file, line, f"{format_doc_path(at)}: {message}", column)

        if not isinstance(name, str) or not name:
            error(path, f"a group name must be a non-empty string, got {name!r}", key=True)
            return None
        if data is not None and not isinstance(data, dict):
            error(path, f"group {name!r} must be a mapping with 'hosts', 'children' and/or 'vars', "
                        f"got {type(data).__name__}")
            return None
        builder.add_group(name)
        if data is None:
            return name
        for key, value in data.items():
            if key not in ("hosts", "children", "vars"):
                error(path + (key,), f"unknown key {key!r} in group {name!r}; a group has 'hosts', "
                                     f"'children' and 'vars'{did_you_mean(key, ('hosts', 'children', 'vars'))}",
                      key=True)
                continue
            if isinstance(value, str):
                value = {value: None}
            if value is None:
                continue
            if not isinstance(value, dict):
                error(path + (key,), f"'{key}' of group {name!r} must be a mapping, got {type(value).__name__}")
                continue
            if key == "vars":
                for var, var_value in value.items():
                    try:
                        builder.set_group_variable(name, var, var_value)
                    except ValueError as exc:
                        error(path + (key, var), str(exc))
            elif key == "children":
                for child, child_data in value.items():
                    child_name = self._yaml_group(file, document, child, child_data, path + (key, child))
                    if child_name is not None:
                        try:
                            builder.add_child(name, child_name)
                        except ValueError as exc:
                            error(path + (key, child), str(exc), key=True)
            else:
                for pattern, host_vars in value.items():
                    at = path + (key, pattern)
                    if not isinstance(pattern, str):
                        error(at, f"a host name must be a string, got {pattern!r}", key=True)
                        continue
                    if host_vars is not None and not isinstance(host_vars, dict):
                        error(at, f"the variables of host {pattern!r} must be a mapping, "
                                  f"got {type(host_vars).__name__} (write '{pattern}:' with nothing "
                                  f"after it for a host without variables)")
                        continue
                    try:
                        names, port = parse_host_and_port(pattern)
                    except ValueError as exc:
                        error(at, str(exc), key=True)
                        continue
                    builder.add_hosts(names, name, port, host_vars)
        return name

    # group_vars / host_vars

    def vars_files(self, base: str, kind: str, entity: str) -> dict[str, Any]:
        """Variables from ``base/kind/entity{,.yml,.yaml,.json}`` or ``base/kind/entity/``."""
        if not entity or "/" in entity or entity in (".", ".."):
            return {}
        cache_key = (base, kind, entity)
        if cache_key not in self._entity_vars:
            self._entity_vars[cache_key] = {}
            directory = Path(base) / kind
            if directory.is_dir():
                stem = directory / entity
                for candidate in (stem, *(stem.with_name(entity + ext) for ext in YAML_EXTENSIONS)):
                    if candidate.is_dir():
                        files = _vars_dir_files(candidate)
                    elif candidate.is_file():
                        files = [candidate]
                    else:
                        continue
                    for file in files:
                        self._entity_vars[cache_key].update(self._vars_file(file))
                    break
        return self._entity_vars[cache_key]

    def _vars_file(self, path: Path) -> dict[str, Any]:
        key = str(path)
        if key in self._vars_cache:
            return self._vars_cache[key]
        self._vars_cache[key] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.error(key, 0, f"cannot read variables file: {exc}")
            return {}
        if text.startswith("$ANSIBLE_VAULT;"):
            self.error(key, 1, "Ansible Vault encrypted files are not supported")
            return {}
        try:
            document = load_marked_yaml(text)
        except YAMLSyntaxError as exc:
            self.error(key, exc.line, exc.message, exc.column)
            return {}
        for dup_path, (first, line, column) in document.duplicate_keys.items():
            self.error(key, line, f"{format_doc_path(dup_path)}: key given twice (first at line {first})", column)
        if document.data is None:
            return {}
        if not isinstance(document.data, dict):
            self.error(key, 1, f"a variables file must be a mapping of names to values, "
                               f"got {type(document.data).__name__}", 1)
            return {}
        self._vars_cache[key] = document.data
        return document.data


def _vars_dir_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path = directory / entry
        extension = os.path.splitext(entry)[1]
        if path.is_dir() and not extension:
            found.extend(_vars_dir_files(path))
        elif path.is_file() and (not extension or extension in YAML_EXTENSIONS):
            found.append(path)
    return found


def load_inventory(sources: list[str] | str) -> Inventory:
    """Read one or more ``-i`` sources (files, directories, ``a,b,`` lists) into an Inventory.

    Raises InvalidInput listing every problem found, each as ``file:line: message``.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    reader = _Reader()
    vars_dirs: list[str] = []
    for source in sources:
        base = reader.read_source(str(source))
        if base is not None:
            vars_dirs.append(base)
    reader.diagnostics.raise_if_any()

    builder = reader.builder
    builder.reconcile()
    depths = builder.depths()
    order = {name: index for index, name in enumerate(builder.groups)}

    def sort_groups(names: Iterable[str]) -> list[str]:
        return sorted(names, key=lambda g: (depths[g], builder.groups[g].priority, g))

    def from_files(kind: str, entities: list[str]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for base in vars_dirs:  # source by source, then entity by entity, as Ansible
            for entity in entities:
                merged.update(reader.vars_files(base, kind, entity))
        return merged

    hosts: dict[str, Host] = {}
    host_own: dict[str, dict[str, Any]] = {}
    for name, data in builder.hosts.items():
        member_of = builder.host_groups(name) | {"all"}
        ordered_groups = sort_groups(g for g in member_of if g != "all")
        merged: dict[str, Any] = dict(builder.groups["all"].vars)
        for group in ordered_groups:
            merged.update(builder.groups[group].vars)
        merged.update(from_files("group_vars", ["all"]))
        merged.update(from_files("group_vars", ordered_groups))
        merged.update(data.vars)
        own_files = from_files("host_vars", [name])
        merged.update(own_files)
        host_own[name] = {**data.vars, **own_files}
        hosts[name] = Host(name, merged, tuple(sorted(member_of, key=order.__getitem__)))
    group_export: dict[str, dict[str, Any]] = {}
    for name, data in builder.groups.items():
        group_export[name] = {**data.vars, **from_files("group_vars", [name])}
    reader.diagnostics.raise_if_any()

    groups = {
        name: Group(name, dict(data.vars), tuple(data.hosts), tuple(data.children), tuple(data.parents),
                    depths[name], data.priority)
        for name, data in builder.groups.items()
    }
    return Inventory(hosts, groups, [str(s) for s in sources],
                     export_group_vars=group_export, export_host_vars=host_own)
