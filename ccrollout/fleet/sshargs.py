"""The ssh command-line arguments an inventory may carry (ansible_ssh_args,
ansible_ssh_common_args, ansible_ssh_extra_args), read the way OpenSSH's ssh reads them.

Honoured: a jump host (``-J``, ``-o ProxyJump``), a proxy command (``-o ProxyCommand``),
the known_hosts files (``-o UserKnownHostsFile``, ``-o GlobalKnownHostsFile``) and extra
identities (``-i``, ``-o IdentityFile``). As in ssh, the first value given for an option
wins, and ProxyJump and ProxyCommand compete: whichever comes first. Options that only
shape ssh's own process (``-q``, ``-v``, ControlMaster...) are accepted silently; every
other option is reported as not honoured, so the operator knows it has no effect here.

A ProxyCommand is run without a shell: it is split as a shell would split it, and its
``%h %p %r %n %u %d %%`` are put into each word afterwards, so no inventory text can
become shell syntax.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
from dataclasses import dataclass, field

# ssh's options that take a value (from ssh(1)); the others are flags.
_VALUE_FLAGS = set("BbcDEeFIiJLlmOoPpQRSWw")
_SILENT_FLAGS = set("qvCTtxa")  # output, compression, tty and X11 choices: nothing to do here
_SILENT_OPTIONS = {"controlmaster", "controlpersist", "controlpath", "loglevel", "compression"}
_OPTION_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+)(.*?)\s*$")
_SHELL_OPERATOR = re.compile(r"^[();<>|&]+$")
_TOKEN = re.compile(r"%(.?)")
PROXY_TOKENS = "hprnud%"


class SSHArgsError(ValueError):
    """An argument ccrollout would honour, given in a form it cannot use."""

    source = ""  # the variable it came from


@dataclass(frozen=True)
class Hop:
    """One jump host of a ProxyJump: ``[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port else self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class SSHOptions:
    """What the inventory's ssh arguments say about reaching a host. None: not given (ssh_config
    then decides); an empty jump or proxy_command: given as "none" (no proxy, whatever
    ssh_config says)."""

    jump: tuple[Hop, ...] | None = None
    proxy_command: tuple[str, ...] | None = None  # argv with %-tokens still in it
    user_known_hosts: tuple[str, ...] | None = None
    global_known_hosts: tuple[str, ...] | None = None
    identity_files: tuple[str, ...] = ()


@dataclass
class ParsedArgs:
    options: SSHOptions = field(default_factory=SSHOptions)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (source, option as written): not honoured


def parse_ssh_args(sources: list[tuple[str, str]]) -> ParsedArgs:
    """Read ssh arguments: (source, text) pairs in the order ssh would see them. SSHArgsError,
    with its source, for an option ccrollout honours whose value it cannot use."""
    reader = _Reader()
    for source, text in sources:
        reader.source = source
        try:
            reader.read(shlex.split(text))
        except ValueError as exc:  # SSHArgsError too
            error = SSHArgsError(f"{source}: {exc}" if isinstance(exc, SSHArgsError)
                                 else f"{source}: cannot split {text!r} as ssh arguments: {exc}")
            error.source = source
            raise error from None
    return reader.parsed()


class _Reader:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.identity_files: list[str] = []
        self.ignored: list[tuple[str, str]] = []
        self.source = ""

    def parsed(self) -> ParsedArgs:
        options = SSHOptions(jump=self.values.get("proxyjump"), proxy_command=self.values.get("proxycommand"),
                             user_known_hosts=self.values.get("userknownhostsfile"),
                             global_known_hosts=self.values.get("globalknownhostsfile"),
                             identity_files=tuple(self.identity_files))
        return ParsedArgs(options, self.ignored)

    def read(self, words: list[str]) -> None:
        index = 0
        while index < len(words):
            word = words[index]
            index += 1
            if not word.startswith("-") or word == "-":
                self.ignore(word)
                continue
            flags = word[1:]
            for position, flag in enumerate(flags):
                if flag not in _VALUE_FLAGS:
                    if flag not in _SILENT_FLAGS:
                        self.ignore(f"-{flag}")
                    continue
                value = flags[position + 1:]
                if not value:
                    if index == len(words):
                        raise SSHArgsError(f"-{flag} needs a value")
                    value = words[index]
                    index += 1
                self.flag(flag, value)
                break

    def flag(self, flag: str, value: str) -> None:
        if flag == "o":
            match = _OPTION_RE.match(value)
            if not match:
                raise SSHArgsError(f"-o {value!r} is not Option=value")
            self.option(match.group(1), match.group(2), f"-o {value}")
        elif flag == "J":
            self.option("ProxyJump", value, f"-J {value}")
        elif flag == "i":
            self.identity_files.append(value)
        else:
            self.ignore(f"-{flag} {value}")

    def option(self, name: str, value: str, written: str) -> None:
        key = name.lower()
        if key in _SILENT_OPTIONS:
            return
        if key == "identityfile":
            self.identity_files.append(value)
        elif key in ("proxyjump", "proxycommand"):
            if "proxyjump" not in self.values and "proxycommand" not in self.values:  # they compete
                self.values[key] = parse_jump(value) if key == "proxyjump" else parse_proxy_command(value)
        elif key in ("userknownhostsfile", "globalknownhostsfile"):
            self.values.setdefault(key, tuple(shlex.split(value)))
        else:
            self.ignore(written)

    def ignore(self, written: str) -> None:
        self.ignored.append((self.source, written))


def parse_jump(text: str) -> tuple[Hop, ...]:
    """``[user@]host[:port][,...]`` (or ``ssh://`` URIs) as hops, first hop first; () for none."""
    if text.strip().lower() == "none":
        return ()
    hops = []
    for part in text.split(","):
        spec = part.strip()
        spec = spec[len("ssh://"):] if spec.startswith("ssh://") else spec
        user, _, hostport = spec.rpartition("@")
        host, port = split_host_port(hostport)
        if not host or (user == "" and "@" in spec):
            raise SSHArgsError(f"ProxyJump {text!r}: {part.strip()!r} is not [user@]host[:port]")
        hops.append(Hop(host, user or None, port))
    return tuple(hops)


def split_host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address (no port).
    SSHArgsError for a port that is not one."""
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", text)
    if bracketed:
        host, port = bracketed.group(1), bracketed.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if port is None:
        return host, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SSHArgsError(f"{text!r}: port {port!r} is not a number from 1 to 65535")
    return host, int(port)


def parse_proxy_command(text: str) -> tuple[str, ...]:
    """A ProxyCommand's words, run later without a shell; () for none."""
    if text.strip().lower() == "none":
        return ()
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        operators = [word for word in lexer if _SHELL_OPERATOR.match(word)]
        words = shlex.split(text)
    except ValueError as exc:
        raise SSHArgsError(f"ProxyCommand {text!r}: {exc}") from None
    if operators:
        raise SSHArgsError(f"ProxyCommand {text!r} needs a shell ({operators[0]!r}); ccrollout runs it "
                           "without one: put the pipeline in a script and name the script")
    if words[:1] == ["exec"]:  # OpenSSH runs it through `exec` itself
        words = words[1:]
    if not words:
        raise SSHArgsError(f"ProxyCommand {text!r} names no command")
    for word in words:
        for token in _TOKEN.findall(word):
            if not token or token not in PROXY_TOKENS:
                raise SSHArgsError(f"ProxyCommand {text!r}: unknown token %{token} "
                                   f"(known: {' '.join('%' + t for t in PROXY_TOKENS)})")
    return tuple(words)


def expand_tokens(words: tuple[str, ...], host: str, port: int, user: str, original: str) -> list[str]:
    """WORDS with OpenSSH's tokens replaced: %h host, %p port, %r remote user, %n the name as
    given, %u local user, %d local home, %% a percent sign."""
    values = {"h": host, "p": str(port), "r": user, "n": original, "u": getpass.getuser(),
              "d": os.path.expanduser("~"), "%": "%"}
    return [_TOKEN.sub(lambda match: values[match.group(1)], word) for word in words]
