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

import os
import re
from pathlib import Path
from typing import Any, Iterable

from ccrollout.diagnostics import Diagnostics

from .builder import InventoryBuilder
from .ini import read_ini_inventory
from .model import Group, Host, Inventory
from .patterns import expand_host_range, parse_host_and_port, split_host_pattern
from .yaml import YAML_EXTENSIONS, is_yaml_mapping, load_yaml_document, read_yaml_inventory

__all__ = [
    "Host",
    "Group",
    "Inventory",
    "load_inventory",
    "expand_host_range",
    "split_host_pattern",
]

# Names skipped when a directory is an inventory source (Ansible's INVENTORY_IGNORE_*).
_IGNORED_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")
_IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst",
                       ".orig", ".cfg", ".retry")


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
        if suffix in YAML_EXTENSIONS or (not suffix and is_yaml_mapping(text)):
            read_yaml_inventory(self.builder, self.diagnostics, file, text)
        else:
            read_ini_inventory(self.builder, self.diagnostics, file, text)

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
        document = load_yaml_document(self.diagnostics, key, text)
        if document is None or document.data is None:
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
