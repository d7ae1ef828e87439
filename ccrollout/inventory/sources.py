"""``-i`` sources: files, directories of them, and ``a,b,`` host lists.

A file is YAML by its extension (``.yml``, ``.yaml``, ``.json``); an extension-less
file is tried as YAML first, as Ansible's plugin order does, and anything else is INI.
Executable inventory scripts and inventory plugin configurations are read through Ansible's
own ansible-inventory (ansible.py), where it is installed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from ccrollout.diagnostics import Diagnostics
from ccrollout.localfiles import INVENTORY_LIMIT, UnreadableFile, read_regular_text, walk_files

from .builder import InventoryBuilder
from .ansible import needs_ansible, read_with_ansible
from .ini import read_ini_inventory
from .model import Origin
from .patterns import parse_host_and_port
from .yaml import YAML_EXTENSIONS, is_yaml_mapping, plugin_of, read_yaml_inventory

# Names skipped when a directory is an inventory source (Ansible's INVENTORY_IGNORE_*).
_IGNORED_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")
_IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst",
                       ".orig", ".cfg", ".retry")


def read_sources(builder: InventoryBuilder, diagnostics: Diagnostics, sources: Iterable[str]) -> list[str]:
    """Read every source into ``builder``; returns the directories whose group_vars/host_vars apply."""
    reader = _SourceReader(builder, diagnostics)
    vars_directories: list[str] = []
    for source in sources:
        base = reader.read_source(source)
        if base is not None:
            vars_directories.append(base)
    return vars_directories


class _SourceReader:
    def __init__(self, builder: InventoryBuilder, diagnostics: Diagnostics):
        self.builder = builder
        self.diagnostics = diagnostics

    def error(self, file: str, line: int, message: str) -> None:
        self.diagnostics.add(file, line, 0, message)

    def read_source(self, source: str) -> str | None:
        """Read one ``-i`` source; returns the directory whose group_vars/host_vars apply."""
        path = Path(os.path.expanduser(source))
        try:
            exists, is_directory = path.exists(), path.is_dir()
        except (OSError, ValueError) as exc:  # a name too long for a file, for one
            exists, is_directory = False, False
            if "," not in source:
                self.error(source[:200], 0, f"inventory source cannot be read: {getattr(exc, 'strerror', None) or exc}")
                return None
        if not exists:
            if "," in source:
                self.read_host_list(source)
                return None
            self.error(source, 0, "inventory source not found")
            return None
        if is_directory:
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
            self.builder.add_hosts(names, "ungrouped", port, origins={"": Origin(source)})

    def read_directory(self, directory: Path) -> None:
        def wanted(path: Path, is_directory: bool) -> bool:
            name = path.name
            ignored = _IGNORED_NAMES.search(name) or name.endswith(_IGNORED_EXTENSIONS)
            return not ignored and (is_directory or path.is_file())

        def unreadable(path: Path, exc: OSError) -> None:
            self.error(str(path), 0, f"cannot read the inventory directory: {exc.strerror or exc}")

        for path in walk_files(directory, wanted, unreadable):
            self.read_file(path)

    def read_file(self, path: Path) -> None:
        file = str(path)
        try:
            text = read_regular_text(path, INVENTORY_LIMIT)
        except UnreadableFile as exc:
            self.error(file, 0, f"inventory file {exc}")
            return
        suffix = path.suffix.lower()
        kind = needs_ansible(path, text, plugin_of(text) if suffix in (".yml", ".yaml") else None)
        if kind:
            read_with_ansible(self.builder, self.diagnostics, file, kind)
            return
        if suffix in YAML_EXTENSIONS or (not suffix and is_yaml_mapping(text)):
            read_yaml_inventory(self.builder, self.diagnostics, file, text)
        else:
            read_ini_inventory(self.builder, self.diagnostics, file, text)
