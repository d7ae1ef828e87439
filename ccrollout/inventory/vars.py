"""group_vars/ and host_vars/ files, and the order in which variables merge.

Ansible's defaults, later wins and top-level keys are replaced: inventory ``all``
vars < inventory group vars (by depth, ``ansible_group_priority``, name) <
``group_vars/all`` < ``group_vars/GROUP`` (same order) < inventory host vars <
``host_vars/HOST``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ccrollout.diagnostics import Diagnostics
from ccrollout.localfiles import INVENTORY_LIMIT, UnreadableFile, read_regular_text, walk_files

from .builder import GroupData, HostData, InventoryBuilder
from .model import Origin
from .yaml import YAML_EXTENSIONS, load_yaml_document


class VarsFiles:
    """The group_vars/ and host_vars/ beside each inventory source, each file read once."""

    def __init__(self, diagnostics: Diagnostics, directories: list[str]):
        self.diagnostics = diagnostics
        self.directories = list(directories)
        self._file_vars: dict[str, Variables] = {}
        self._entity_vars: dict[tuple[str, str, str], Variables] = {}

    def merged(self, kind: str, entities: list[str]) -> Variables:
        """The ``kind`` ("group_vars" or "host_vars") variables of ``entities``, later ones
        winning, with where each was set."""
        merged = Variables()
        for base in self.directories:  # source by source, then entity by entity, as Ansible
            for entity in entities:
                merged.update(self.read(base, kind, entity))
        return merged

    def read(self, base: str, kind: str, entity: str) -> Variables:
        """Variables from ``base/kind/entity{,.yml,.yaml,.json}`` or ``base/kind/entity/``."""
        if not entity or "/" in entity or entity in (".", ".."):
            return Variables()
        cache_key = (base, kind, entity)
        if cache_key not in self._entity_vars:
            self._entity_vars[cache_key] = Variables()
            directory = Path(base) / kind
            if _kind_of(directory) == "directory":
                stem = directory / entity
                for candidate in (stem, *(stem.with_name(entity + ext) for ext in YAML_EXTENSIONS)):
                    found = _kind_of(candidate)
                    if found == "directory":
                        files = self._vars_dir_files(candidate)
                    elif found == "other":  # a FIFO or device is reported, not read
                        files = [candidate]
                    else:
                        continue
                    for file in files:
                        self._entity_vars[cache_key].update(self._read_file(file))
                    break
        return self._entity_vars[cache_key]

    def _read_file(self, path: Path) -> Variables:
        key = str(path)
        if key in self._file_vars:
            return self._file_vars[key]
        self._file_vars[key] = Variables()
        try:
            text = read_regular_text(path, INVENTORY_LIMIT)
        except UnreadableFile as exc:
            self.diagnostics.add(key, 0, 0, f"variables file {exc}")
            return Variables()
        if text.startswith("$ANSIBLE_VAULT;"):
            self.diagnostics.add(key, 1, 0, "Ansible Vault encrypted files are not supported")
            return Variables()
        document = load_yaml_document(self.diagnostics, key, text)
        if document is None or document.data is None:
            return Variables()
        if not isinstance(document.data, dict):
            self.diagnostics.add(key, 1, 1, f"a variables file must be a mapping of names to values, "
                                            f"got {type(document.data).__name__}")
            return Variables()
        origins = {name: Origin(key, *document.mark((name,))) for name in document.data}
        self._file_vars[key] = Variables(document.data, origins)
        return self._file_vars[key]

    def _vars_dir_files(self, directory: Path) -> list[Path]:
        """The files of a group_vars/NAME/ directory, as Ansible reads them: hidden and backup
        files skipped, subdirectories without an extension entered."""
        def wanted(path: Path, is_directory: bool) -> bool:
            if path.name.startswith(".") or path.name.endswith("~"):
                return False
            extension = os.path.splitext(path.name)[1]
            if is_directory:
                return not extension
            return path.exists() and (not extension or extension in YAML_EXTENSIONS)

        def unreadable(path: Path, exc: OSError) -> None:
            self.diagnostics.add(str(path), 0, 0, f"cannot read the variables directory: {exc.strerror or exc}")

        return walk_files(directory, wanted, unreadable)


class Variables:
    """Variables by name, and where each was set (for messages about a value)."""

    def __init__(self, values: dict[str, Any] | None = None, origins: dict[str, Origin] | None = None):
        self.vars: dict[str, Any] = dict(values or {})
        self.origins: dict[str, Origin] = dict(origins or {})

    def update(self, other: Variables | GroupData | HostData) -> None:
        """Later wins, top-level keys replaced; a value whose origin is unknown forgets the old one."""
        for name, value in other.vars.items():
            self.vars[name] = value
            if name in other.origins:
                self.origins[name] = other.origins[name]
            else:
                self.origins.pop(name, None)


def _kind_of(path: Path) -> str | None:
    """"directory", "other", or None when there is nothing to read there, including names
    no file can have (a group name of 5,000 characters, or with a NUL in it)."""
    try:
        return "directory" if path.is_dir() else "other" if path.exists() else None
    except (OSError, ValueError):
        return None


def sort_groups(builder: InventoryBuilder, depths: dict[str, int], names: Iterable[str]) -> list[str]:
    """Groups in merge order: by depth, then ``ansible_group_priority``, then name."""
    return sorted(names, key=lambda g: (depths[g], builder.groups[g].priority, g))


def host_variables(builder: InventoryBuilder, files: VarsFiles, host: str,
                   groups: list[str]) -> tuple[Variables, dict[str, Any]]:
    """(merged, own) variables of ``host``: everything in precedence order (with where each
    was set), and only its own (inventory and host_vars). ``groups`` are its groups but
    ``all``, in merge order."""
    merged = Variables()
    merged.update(builder.groups["all"])
    for group in groups:
        merged.update(builder.groups[group])
    merged.update(files.merged("group_vars", ["all"]))
    merged.update(files.merged("group_vars", groups))
    merged.update(builder.hosts[host])
    own_files = files.merged("host_vars", [host])
    merged.update(own_files)
    return merged, {**builder.hosts[host].vars, **own_files.vars}


def group_own_variables(builder: InventoryBuilder, files: VarsFiles, group: str) -> dict[str, Any]:
    """A group's own variables: from the inventory, then its group_vars files."""
    return {**builder.groups[group].vars, **files.merged("group_vars", [group]).vars}
