"""How to reach a host, from its inventory variables, checked before any host is reached.

The connection variables ccrollout honours are HONOURED. A variable it reads that still
holds a Jinja template is an error naming where it was set (nothing here renders
templates); so is a value it cannot use (a port that is not one, a port or user given
twice, an unsupported ansible_connection). Every other Ansible connection variable is a
warning, once per variable, so nobody believes a password or an option took effect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..errors import InvalidInput
from ..host import protocol
from .sshargs import SSHArgsError, SSHOptions, parse_ssh_args, split_host_port

DEFAULT_STATE_DIR = "/var/lib/ccrollout"
DEFAULT_PYTHON = "/usr/bin/python3"
SSH_CONNECTIONS = ("ssh", "paramiko", "smart")
LOCAL = "local"
MAX_TIMEOUT = 3600

# Each honoured setting under its names, Ansible's first; two names with different values is an error.
_ALIASES = {
    "ansible_host": ("ansible_host", "ansible_ssh_host"),
    "ansible_port": ("ansible_port", "ansible_ssh_port"),
    "ansible_user": ("ansible_user", "ansible_ssh_user"),
    "ansible_ssh_private_key_file": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "ansible_timeout": ("ansible_timeout", "ansible_ssh_timeout"),
}
_SSH_ARGS = ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")  # ssh's order
HONOURED = frozenset({*(name for names in _ALIASES.values() for name in names), *_SSH_ARGS,
                      "ansible_connection", "ansible_become", "ansible_become_user", "ansible_become_method",
                      "ansible_python_interpreter", "ccrollout_known_hosts", "ccrollout_state_dir"})
# Variables of Ansible's ssh, paramiko, become and shell plugins that ccrollout does not honour.
_CONNECTION_PREFIXES = ("ansible_ssh_", "ansible_paramiko_", "ansible_become_", "ansible_sudo", "ansible_su_",
                        "ansible_sftp_", "ansible_scp_", "ansible_local_")
_CONNECTION_NAMES = frozenset({
    "ansible_password", "ansible_private_key", "ansible_private_key_passphrase", "ansible_host_key_checking",
    "ansible_pipelining", "ansible_control_path", "ansible_control_path_dir", "ansible_sshpass_prompt",
    "ansible_shell_type", "ansible_shell_executable", "ansible_remote_tmp", "ansible_connection_timeout"})
_WHY_NOT = {
    "ansible_password": "ccrollout logs in with keys (files or an agent) only",
    "ansible_ssh_pass": "ccrollout logs in with keys (files or an agent) only",
    "ansible_ssh_password": "ccrollout logs in with keys (files or an agent) only",
    "ansible_become_password": "ccrollout runs sudo -n, which needs no password (NOPASSWD)",
    "ansible_become_pass": "ccrollout runs sudo -n, which needs no password (NOPASSWD)",
    "ansible_host_key_checking": "host keys are always checked",
    "ansible_ssh_host_key_checking": "host keys are always checked",
}
_JINJA = re.compile(r"\{\{|\{%|\{#")
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f", "")


@dataclass(frozen=True)
class Target:
    """How to reach one host, from its inventory variables."""

    name: str
    address: str
    port: int | None = None  # None: ~/.ssh/config's Port for the address, else 22 (as Ansible)
    user: str | None = None  # None: ~/.ssh/config's User for the address, else the local user
    key_file: str | None = None
    known_hosts: str | None = None
    python: str = DEFAULT_PYTHON  # a path, or one of hostcode.AUTO_PYTHON (found on the host)
    state_dir: str = DEFAULT_STATE_DIR
    become: bool = False
    become_user: str | None = None  # None: root
    connection: str = "ssh"         # "ssh" or LOCAL
    connect_timeout: float | None = None  # ansible_timeout; None: the command's --timeout
    ssh: SSHOptions = SSHOptions()

    @classmethod
    def from_vars(cls, name: str, host_vars: Mapping[str, Any], origins: Mapping | None = None) -> Target:
        """The target of host NAME. InvalidInput naming every problem (and, given ORIGINS,
        where the variable was set); warnings are left to check_targets."""
        reader = _TargetReader(name, host_vars, origins or {})
        target = reader.target()
        if reader.errors:
            raise InvalidInput("\n".join(reader.errors))
        return target


def check_targets(hosts: Iterable, warn: Callable[[str], None] | None = None) -> dict[str, Target]:
    """Every inventory host's Target (hosts have name, vars and origins). WARN receives one
    warning per connection variable that is not honoured, naming a host; then InvalidInput
    lists every problem of every host, if there are any."""
    targets, errors = {}, []
    ignored: dict[str, list[str]] = {}  # warning -> hosts
    for host in hosts:
        reader = _TargetReader(host.name, host.vars, getattr(host, "origins", {}))
        targets[host.name] = reader.target()
        errors += reader.errors
        for warning in reader.warnings:
            ignored.setdefault(warning, []).append(host.name)
    for warning, names in ignored.items():
        more = f" and {len(names) - 1} more host{'s' if len(names) > 2 else ''}" if len(names) > 1 else ""
        if warn:
            warn(f"{warning} (host {names[0]}{more})")
    if errors:
        raise InvalidInput("\n".join(dict.fromkeys(errors)))
    return targets


class _TargetReader:
    """Reads one host's variables into a Target, gathering errors and warnings."""

    def __init__(self, name: str, host_vars: Mapping[str, Any], origins: Mapping):
        self.name, self.vars, self.origins = name, host_vars, origins
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, variable: str, message: str) -> None:
        where = f"{self.origins[variable]}: " if variable in self.origins else ""
        self.errors.append(f"{where}host {self.name}: {message}")

    def text(self, variable: str, default: str | None = None) -> str | None:
        """A variable ccrollout reads, as text; a Jinja template in it is an error."""
        value = self.vars.get(variable)
        if value is None:
            return default
        value = str(value)
        if _JINJA.search(value):
            self.error(variable, f"{variable} holds a Jinja template ({value!r}), which ccrollout does not "
                                 "render: write the value itself")
            return default
        return value

    def aliased(self, setting: str) -> tuple[str, str | None]:
        """(the name given, its text) of a setting with aliases; both names differing is an error."""
        given = [name for name in _ALIASES[setting] if self.vars.get(name) is not None]
        values = {name: self.text(name) for name in given}
        if len(set(values.values())) > 1:
            self.error(given[1], f"{given[0]}={values[given[0]]!r} and {given[1]}={values[given[1]]!r} "
                                 "disagree: give one")
        return (given[0], values[given[0]]) if given else (setting, None)

    def target(self) -> Target:
        self.warn_unhonoured()
        connection = self.connection()
        address, user, port = self.address()
        become = self.boolean("ansible_become")
        return Target(
            name=self.name, address=address, port=port, user=user,
            key_file=self.aliased("ansible_ssh_private_key_file")[1],
            known_hosts=self.text("ccrollout_known_hosts"),
            python=self.python(),
            state_dir=self.state_dir(), become=become,
            become_user=self.text("ansible_become_user") if become else None,
            connection=connection, connect_timeout=self.timeout(), ssh=self.ssh_options())

    def warn_unhonoured(self) -> None:
        for variable in self.vars:
            if variable in HONOURED or not (variable in _CONNECTION_NAMES
                                            or variable.startswith(_CONNECTION_PREFIXES)):
                continue
            why = _WHY_NOT.get(variable, "ccrollout does not use it")
            self.warnings.append(f"{variable} is not honoured: {why}")
        method = self.text("ansible_become_method")
        if method not in (None, "sudo"):
            self.warnings.append(f"ansible_become_method={method} is not honoured: ccrollout becomes "
                                 "another user with sudo -n")

    def connection(self) -> str:
        value = self.text("ansible_connection", "ssh")
        if value == LOCAL or value in SSH_CONNECTIONS:
            return LOCAL if value == LOCAL else "ssh"
        self.error("ansible_connection", f"ansible_connection={value} is not supported: ccrollout reaches a "
                                         f"host over SSH ({', '.join(SSH_CONNECTIONS)}) or runs on this "
                                         f"machine ({LOCAL})")
        return "ssh"

    def address(self) -> tuple[str, str | None, int | None]:
        """The host to reach, and the user and port, from ansible_host (``user@host:port``
        is taken apart) and ansible_user and ansible_port."""
        host_name, host = self.aliased("ansible_host")
        user_name, user = self.aliased("ansible_user")
        port_name, port = self.port()
        host = host if host is not None else self.name
        if "@" in host:
            given_user, _, host = host.rpartition("@")
            if user is not None:
                self.error(host_name, f"{host_name} names user {given_user!r} and {user_name} is {user!r} too: "
                                      "give the user once")
            user = given_user or user
        try:
            host, given_port = split_host_port(host)
        except SSHArgsError as exc:
            self.error(host_name, f"{host_name}: {exc}")
            given_port = None
        if given_port is not None:
            if port is not None:
                self.error(host_name, f"{host_name} names port {given_port} and {port_name} is {port} too: "
                                      "give the port once")
            port = given_port
        if not host:
            self.error(host_name, f"{host_name} names no host")
        return host or self.name, user or None, port

    def port(self) -> tuple[str, int | None]:
        name, _ = self.aliased("ansible_port")
        value = self.vars.get(name)
        if value is None:
            return name, None
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
            if not _JINJA.search(text):
                self.error(name, f"{name} must be a port number (a whole number from 1 to 65535), got {value!r}")
            return name, None
        return name, int(text)

    def timeout(self) -> float | None:
        name, text = self.aliased("ansible_timeout")
        if text is None:
            return None
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if isinstance(self.vars.get(name), bool) or not 0 < seconds <= MAX_TIMEOUT:
            self.error(name, f"{name} must be a number of seconds from 0 to {MAX_TIMEOUT}, got {text!r}")
            return None
        return seconds

    def boolean(self, variable: str) -> bool:
        text = self.text(variable, "false").strip().lower()
        if text not in _TRUE + _FALSE:
            self.error(variable, f"{variable} must be true or false, got {self.vars[variable]!r}")
        return text in _TRUE

    def python(self) -> str:
        python = self.text("ansible_python_interpreter", DEFAULT_PYTHON)
        if not python.strip():
            self.error("ansible_python_interpreter", "ansible_python_interpreter is empty: give a path, or auto")
        return python

    def state_dir(self) -> str:
        path = self.text("ccrollout_state_dir", DEFAULT_STATE_DIR)
        if not protocol.STATE_DIR.match(path) or "/../" in path + "/":
            self.error("ccrollout_state_dir", f"ccrollout_state_dir must be an absolute path of letters, digits, "
                                              f"'_', '.', '-' and '/', got {path!r}")
        return path

    def ssh_options(self) -> SSHOptions:
        given = [(name, text) for name in _SSH_ARGS if (text := self.text(name)) is not None]
        try:
            parsed = parse_ssh_args(given)
        except SSHArgsError as exc:
            self.error(exc.source, str(exc))
            return SSHOptions()
        for source, option in parsed.ignored:
            self.warnings.append(f"{option!r} in {source} is not honoured: ccrollout reads only -J, -i and "
                                 "-o ProxyJump, ProxyCommand, IdentityFile, UserKnownHostsFile, GlobalKnownHostsFile")
        return parsed.options
