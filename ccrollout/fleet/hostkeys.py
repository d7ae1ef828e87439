"""Which host keys the operator trusts for a host, read as OpenSSH reads them; never written.

The files, in this order: the inventory's ``ccrollout_known_hosts``, then ssh's
UserKnownHostsFile (default ``~/.ssh/known_hosts ~/.ssh/known_hosts2``) and
GlobalKnownHostsFile (default ``/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2``), each
as the inventory's ssh arguments give it, else as ssh_config gives it for that host. A file
that does not exist is skipped, as ssh skips it.

The check is OpenSSH's: a key of any file that matches lets the host in; a host known only
under other keys of the same type has a changed key (paramiko's BadHostKeyException); a host
not known at all is refused, as paramiko's RejectPolicy refuses it; a key marked
``@revoked`` is refused wherever else it is listed. Names may be hashed (``|1|``), patterns
(``*.example.com``, ``!bad``), or ``[host]:port`` for a port other than 22. paramiko's own
HostKeys cannot be used as is: it stops at the first ``@cert-authority`` or ``@revoked``
line, and it compares only the first key of a type.
"""

from __future__ import annotations

import functools
import getpass
import hmac
import os
import re
import shlex
from dataclasses import dataclass, field

import paramiko

DEFAULT_USER_FILES = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# paramiko negotiates these names for a key known as ssh-rsa.
_RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


class KnownHostsError(Exception):
    """A known_hosts file that exists but cannot be read."""


def known_hosts_files(ssh_config: dict, user_files=None, global_files=None, extra: str | None = None) -> list[str]:
    """The files to read for one host: EXTRA first, then USER_FILES and GLOBAL_FILES (the
    inventory's ssh arguments; None: as ssh_config says, else OpenSSH's defaults)."""
    if user_files is None:
        user_files = shlex.split(ssh_config["userknownhostsfile"]) if "userknownhostsfile" in ssh_config \
            else DEFAULT_USER_FILES
    if global_files is None:
        global_files = shlex.split(ssh_config["globalknownhostsfile"]) if "globalknownhostsfile" in ssh_config \
            else DEFAULT_GLOBAL_FILES
    files = ([extra] if extra else []) + list(user_files) + list(global_files)
    return list(dict.fromkeys(_expand(name) for name in files))


def _expand(name: str) -> str:
    """~, and the tokens OpenSSH fills into a known_hosts path that need no host: %d %u %%."""
    tokens = {"d": os.path.expanduser("~"), "u": getpass.getuser(), "%": "%"}
    return os.path.expanduser(re.sub(r"%([du%])", lambda match: tokens[match.group(1)], name))


@dataclass
class TrustedKeys:
    """Host keys read from known_hosts files: (host patterns, key) in file order, and revoked keys."""

    entries: list[tuple[list[str], paramiko.PKey]] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)

    @classmethod
    def read(cls, files: list[str], required: str | None = None) -> "TrustedKeys":
        """Keys from FILES; those missing are skipped but REQUIRED, which must exist."""
        trusted = cls()
        for name in files:
            try:
                with open(name, encoding="utf-8", errors="replace") as handle:
                    trusted.add_lines(handle.read().splitlines())
            except FileNotFoundError:
                if name == required:
                    raise KnownHostsError(f"cannot read known_hosts {name}: it does not exist") from None
            except OSError as exc:
                raise KnownHostsError(f"cannot read known_hosts {name}: {exc.strerror or exc}") from None
        return trusted

    def add_lines(self, lines: list[str]) -> None:
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            marker = None
            if line.startswith("@"):
                marker, _, line = line.partition(" ")
                line = line.strip()
            if marker not in (None, "@revoked"):
                continue  # @cert-authority: host certificates are not accepted by paramiko
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
                entry = None  # as OpenSSH: a line it cannot read is skipped
            if entry is None:
                continue
            if marker == "@revoked":
                self.revoked.append(entry.key)
            else:
                self.entries.append((entry.hostnames, entry.key))

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        """The keys trusted for NAME (``host``, or ``[host]:port``), in file order."""
        return [key for patterns, key in self.entries if _matches(name, patterns)]

    def algorithms_for(self, name: str) -> list[str]:
        """Host key algorithms to ask the server for first: those of the keys known for NAME."""
        found: list[str] = []
        for key in self.keys_for(name):
            found += _RSA_ALGORITHMS if key.get_name() == "ssh-rsa" else [key.get_name()]
        return list(dict.fromkeys(found))


def _matches(name: str, patterns: list[str]) -> bool:
    """OpenSSH's match_hostname: any positive pattern matches and no negated one does."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            hit = hmac.compare_digest(paramiko.HostKeys.hash_host(name, pattern), pattern)
        else:
            hit = _glob(pattern).fullmatch(name.lower()) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern:
    """OpenSSH's wildcards, * and ? only: brackets are literal (``[host]:2222``)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()))


class TrustedKeysPolicy(paramiko.MissingHostKeyPolicy):
    """Decides every connection (the client's own host keys stay empty), as OpenSSH does."""

    def __init__(self, trusted: TrustedKeys):
        self.trusted = trusted

    def missing_host_key(self, client, hostname: str, key: paramiko.PKey) -> None:
        if any(key == revoked for revoked in self.trusted.revoked):
            raise paramiko.SSHException(f"the host key of {hostname} is marked @revoked in known_hosts")
        known = self.trusted.keys_for(hostname)
        if any(key == trusted for trusted in known):
            return
        same_type = [trusted for trusted in known if trusted.get_name() == key.get_name()]
        if same_type:
            raise paramiko.BadHostKeyException(hostname, key, same_type[0])
        paramiko.RejectPolicy().missing_host_key(client, hostname, key)  # "not found in known_hosts"


def key_name(host: str, port: int) -> str:
    """The name a host's key is listed under: ``host``, or ``[host]:port`` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def transport_preferring(algorithms: list[str]):
    """A paramiko transport factory that asks first for the host key algorithms of the keys
    already known (as ssh does), so a host known only by its RSA key is not offered ed25519."""
    def factory(sock, **kwargs) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        options = transport.get_security_options()
        offered = list(options.key_types)
        preferred = [name for name in algorithms if name in offered]
        options.key_types = preferred + [name for name in offered if name not in preferred]
        return transport
    return factory


def trust(client: paramiko.SSHClient, trusted: TrustedKeys) -> None:
    """Make CLIENT check host keys against TRUSTED alone (fabric would add unknown ones)."""
    client.set_missing_host_key_policy(TrustedKeysPolicy(trusted))
