"""YAML inventory files, as Ansible's yaml plugin reads them, and the YAML loading
that group_vars/host_vars files share.

Top-level keys are groups, each with ``hosts`` / ``children`` / ``vars``. Stricter
than Ansible: unknown group keys, duplicate keys and non-mapping entries are errors.
"""

from __future__ import annotations

from typing import Any

from ccrollout.diagnostics import (
    Diagnostics,
    MarkedDocument,
    YAMLSyntaxError,
    did_you_mean,
    format_doc_path,
    load_marked_yaml,
)

from .builder import InventoryBuilder
from .model import Origin
from .patterns import parse_host_and_port

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
_GROUP_KEYS = ("hosts", "children", "vars")


def load_yaml_document(diagnostics: Diagnostics, file: str, text: str) -> MarkedDocument | None:
    """The document, with its duplicate keys reported; None (reported) if it is not YAML."""
    try:
        document = load_marked_yaml(text)
    except YAMLSyntaxError as exc:
        diagnostics.add(file, exc.line, exc.column, exc.message)
        return None
    for path, (first, line, column) in document.duplicate_keys.items():
        diagnostics.add(file, line, column, f"{format_doc_path(path)}: key given twice (first at line {first})")
    return document


def is_yaml_mapping(text: str) -> bool:
    """Whether an extension-less file reads as a YAML mapping (else it is tried as INI)."""
    try:
        return isinstance(load_marked_yaml(text).data, dict)
    except YAMLSyntaxError:
        return False


def plugin_of(text: str):
    """The ``plugin`` of an inventory plugin configuration (a YAML mapping naming one), or None."""
    try:
        data = load_marked_yaml(text).data
    except YAMLSyntaxError:
        return None
    return data.get("plugin") if isinstance(data, dict) else None


def read_yaml_inventory(builder: InventoryBuilder, diagnostics: Diagnostics, file: str, text: str) -> None:
    """Add a YAML file's groups and hosts to ``builder``; report its errors to ``diagnostics``."""
    document = load_yaml_document(diagnostics, file, text)
    if document is None or document.data is None:
        return
    data = document.data
    if not isinstance(data, dict):
        diagnostics.add(file, 1, 1, "a YAML inventory must be a mapping of group names "
                                    "(usually starting with 'all:')")
        return
    if "plugin" in data:
        line, column = document.mark(("plugin",), key=True)
        diagnostics.add(file, line, column, "inventory plugin configurations are not supported; "
                                            "list the hosts and groups instead")
        return
    reader = _YamlGroups(builder, diagnostics, file, document)
    for name, group_data in data.items():
        reader.read_group(name, group_data, (name,))


class _YamlGroups:
    def __init__(self, builder: InventoryBuilder, diagnostics: Diagnostics, file: str, document: MarkedDocument):
        self.builder = builder
        self.diagnostics = diagnostics
        self.file = file
        self.document = document

    def error(self, at: tuple, message: str, key: bool = False) -> None:
        line, column = self.document.mark(at, key=key)
        self.diagnostics.add(self.file, line, column, f"{format_doc_path(at)}: {message}")

    def origin(self, at: tuple, key: bool = False) -> Origin:
        return Origin(self.file, *self.document.mark(at, key=key))

    def read_group(self, name: Any, data: Any, path: tuple) -> str | None:
        """Add the group at ``path`` and what it holds; its name, or None if it is not a group."""
        if not isinstance(name, str) or not name:
            self.error(path, f"a group name must be a non-empty string, got {name!r}", key=True)
            return None
        if data is not None and not isinstance(data, dict):
            self.error(path, f"group {name!r} must be a mapping with 'hosts', 'children' and/or 'vars', "
                             f"got {type(data).__name__}")
            return None
        self.builder.add_group(name)
        if data is None:
            return name
        for key, value in data.items():
            if key not in _GROUP_KEYS:
                self.error(path + (key,), f"unknown key {key!r} in group {name!r}; a group has 'hosts', "
                                          f"'children' and 'vars'{did_you_mean(key, _GROUP_KEYS)}", key=True)
                continue
            if isinstance(value, str):
                value = {value: None}
            if value is None:
                continue
            if not isinstance(value, dict):
                self.error(path + (key,), f"'{key}' of group {name!r} must be a mapping, "
                                          f"got {type(value).__name__}")
                continue
            if key == "vars":
                self._read_variables(name, value, path + (key,))
            elif key == "children":
                self._read_children(name, value, path + (key,))
            else:
                self._read_hosts(name, value, path + (key,))
        return name

    def _read_variables(self, group: str, variables: dict, path: tuple) -> None:
        for name, value in variables.items():
            try:
                self.builder.set_group_variable(group, name, value, self.origin(path + (name,)))
            except ValueError as exc:
                self.error(path + (name,), str(exc))

    def _read_children(self, group: str, children: dict, path: tuple) -> None:
        for child, child_data in children.items():
            child_name = self.read_group(child, child_data, path + (child,))
            if child_name is not None:
                try:
                    self.builder.add_child(group, child_name)
                except ValueError as exc:
                    self.error(path + (child,), str(exc), key=True)

    def _read_hosts(self, group: str, hosts: dict, path: tuple) -> None:
        for entry, host_vars in hosts.items():
            at = path + (entry,)
            if not isinstance(entry, str):
                self.error(at, f"a host name must be a string, got {entry!r}", key=True)
                continue
            if host_vars is not None and not isinstance(host_vars, dict):
                self.error(at, f"the variables of host {entry!r} must be a mapping, "
                               f"got {type(host_vars).__name__} (write '{entry}:' with nothing "
                               f"after it for a host without variables)")
                continue
            try:
                names, port = parse_host_and_port(entry)
            except ValueError as exc:
                self.error(at, str(exc), key=True)
                continue
            origins = {key: self.origin(at + (key,)) for key in host_vars or {}}
            self.builder.add_hosts(names, group, port, host_vars, {"": self.origin(at, key=True), **origins})
