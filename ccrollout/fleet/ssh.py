"""Sessions over SSH (fabric and paramiko): host keys checked, jump hosts and proxy commands.

A host's connection is built as OpenSSH would build it: the inventory's variables and ssh
arguments first, then ssh_config for that host (fabric reads ~/.ssh/config and
/etc/ssh/ssh_config). A ProxyJump is a chain of fabric Connections, each hop's host key
checked as the target's is; fabric's own gateways are never used, since they would add
unknown keys. A ProxyCommand runs without a shell (sshargs.py). Host keys are checked
against the files hostkeys.py names, and never added.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import subprocess
import time

import fabric
import paramiko

from .agent import AgentSession, AgentStream, HostError, Timeouts
from .hostkeys import KnownHostsError, TrustedKeys, key_name, known_hosts_files, transport_preferring, trust
from .sshargs import Hop, SSHArgsError, expand_tokens, parse_jump
from .targets import Target

# -vvv: how each host is reached (the CLI sets the level; 5 is below DEBUG).
_log = logging.getLogger(__name__)
SSH_DETAIL = 5

MAX_HOPS = 8  # a ProxyJump chain longer than this is taken for a loop of ssh_config entries


class GatewayError(Exception):
    """A jump host or proxy command failed; the message names which."""


class _ProxyCommand(paramiko.ProxyCommand):
    """paramiko's, but closing it twice (our close, then the transport's thread) is no error."""

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            super().close()


class CheckedConnection(fabric.Connection):
    """A fabric Connection whose gateway is opened by ccrollout: a jump host's channel within
    the connect timeout, or a proxy command (an argv) without a shell."""

    proxy_argv: list[str] | None = None
    _proxy: _ProxyCommand | None = None

    def use_proxy_command(self, argv: list[str]) -> None:
        self.proxy_argv = argv
        self.gateway = shlex.join(argv)  # fabric opens a gateway only when there is one

    def open_gateway(self):
        if self.proxy_argv is not None:
            self._close_proxy()
            try:
                self._proxy = _ProxyCommand(shlex.join(self.proxy_argv))
            except OSError as exc:
                raise GatewayError(f"proxy command {self.proxy_argv[0]!r} could not start: {exc}") from None
            return self._proxy
        hop = f"jump host {self.gateway.original_host}"
        try:
            self.gateway.open()
        except GatewayError:
            raise
        except Exception as exc:
            raise GatewayError(f"{hop}: {describe_open_error(self.gateway.host, self.gateway.port, exc)}") from None
        try:
            return self.gateway.transport.open_channel("direct-tcpip", dest_addr=(self.host, int(self.port)),
                                                       src_addr=("", 0), timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise GatewayError(f"{hop} could not reach {self.host}:{self.port}: {exc or type(exc).__name__}") from None

    def close(self) -> None:
        super().close()
        self.client.close()  # also a transport that never came up, which fabric leaves open
        self._close_proxy()
        if isinstance(self.gateway, fabric.Connection):
            self.gateway.close()

    def _close_proxy(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.close()  # SIGTERM
            try:
                proxy.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proxy.process.kill()
                proxy.process.wait()


def describe_open_error(host: str, port: int, exc: Exception) -> str:
    """Why opening a connection to HOST failed, in the words a refusal deserves."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return "host key does not match known_hosts (refusing to connect)"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return f"host key of {key_name(host, port)} is not in known_hosts (refusing to connect)"
    if isinstance(exc, paramiko.SSHException) and "@revoked" in str(exc):
        return f"{exc} (refusing to connect)"
    if isinstance(exc, paramiko.SSHException):
        return f"SSH failed: {exc}"
    return f"unreachable: {exc}"


def build_connection(target: Target, connect_timeout: float, config: fabric.Config | None = None) -> CheckedConnection:
    """The target's connection, with its gateway (if any) and host-key checks; opens nothing.
    HostError for a jump host or known_hosts file that cannot be used."""
    connect_kwargs: dict = {"banner_timeout": connect_timeout, "auth_timeout": connect_timeout}
    key_files = ([target.key_file] if target.key_file else []) + list(target.ssh.identity_files)
    if key_files:
        connect_kwargs["key_filename"] = [os.path.expanduser(name) for name in key_files]
    # user and port only when the inventory sets them: given, they override ssh_config.
    given = {key: value for key, value in (("user", target.user), ("port", target.port)) if value is not None}
    connection = CheckedConnection(target.address, **given, connect_kwargs=connect_kwargs, gateway=False,
                                   connect_timeout=connect_timeout, **({"config": config} if config else {}))
    try:
        _route(connection, target.ssh.jump, target.ssh.proxy_command, target.known_hosts, depth=0)
        _check_host_keys(connection, target.known_hosts, target.ssh.user_known_hosts, target.ssh.global_known_hosts)
    except (GatewayError, KnownHostsError, SSHArgsError) as exc:
        raise HostError(target.name, str(exc)) from None
    return connection


def _route(connection: CheckedConnection, jump: tuple[Hop, ...] | None, proxy: tuple[str, ...] | None,
           known_hosts: str | None, depth: int) -> None:
    """Set CONNECTION's gateway: JUMP or PROXY as the inventory gives them, else ssh_config's."""
    if jump is None and proxy is None:
        if "proxyjump" in connection.ssh_config:
            jump = parse_jump(connection.ssh_config["proxyjump"])
            if any((hop.host, hop.port or 22) == (connection.host, connection.port) for hop in jump):
                jump = ()  # a `Host *` ProxyJump met by the jump host itself (fabric's rule too)
        elif connection.ssh_config.get("proxycommand"):  # paramiko has expanded its tokens already
            proxy = tuple(shlex.split(connection.ssh_config["proxycommand"]))
    if proxy:
        connection.use_proxy_command(expand_tokens(proxy, connection.host, connection.port, connection.user,
                                                   connection.original_host))
    elif jump:
        if depth + len(jump) > MAX_HOPS:
            raise GatewayError(f"more than {MAX_HOPS} jump hosts to {connection.original_host}: a loop in ssh_config?")
        connection.gateway = _hops(connection, jump, known_hosts, depth)


def _hops(connection: CheckedConnection, jump: tuple[Hop, ...], known_hosts: str | None, depth: int):
    """The chain of jump hosts, last hop returned: the first is reached as its own ssh_config
    says, each later one through the one before. Each hop's host key is checked."""
    previous = None
    for hop in jump:
        given = {key: value for key, value in (("user", hop.user), ("port", hop.port)) if value is not None}
        hop_connection = CheckedConnection(hop.host, **given, gateway=previous or False,
                                           config=connection.config.clone(),
                                           connect_timeout=connection.connect_timeout,
                                           connect_kwargs={"banner_timeout": connection.connect_timeout,
                                                           "auth_timeout": connection.connect_timeout})
        if previous is None:
            _route(hop_connection, None, None, known_hosts, depth + len(jump))
        _check_host_keys(hop_connection, known_hosts, None, None)
        previous = hop_connection
    return previous


def _check_host_keys(connection: CheckedConnection, known_hosts: str | None, user_files, global_files) -> None:
    """Make CONNECTION accept only the host keys its known_hosts files list."""
    files = known_hosts_files(connection.ssh_config, user_files, global_files, extra=known_hosts)
    trusted = TrustedKeys.read(files, required=os.path.expanduser(known_hosts) if known_hosts else None)
    trust(connection.client, trusted)
    algorithms = trusted.algorithms_for(key_name(connection.host, connection.port))
    connection.connect_kwargs["transport_factory"] = transport_preferring(algorithms)


class Session(AgentSession):
    """One SSH connection to a host and one agent on it, kept for the whole command. The
    agent runs on a bare channel (fabric's `run` polls stdin and cost 0.6 s a call)."""

    def __init__(self, target: Target, timeouts: Timeouts = Timeouts()):
        super().__init__(target, timeouts)
        self._connection: CheckedConnection | None = None

    @property
    def connection(self) -> CheckedConnection:
        """Built on first use, so a host whose set-up is unusable fails as that host alone."""
        if self._connection is None:
            self._connection = build_connection(self.target, self.target.connect_timeout or self.timeouts.connect)
        return self._connection

    def open(self) -> None:
        if _log.isEnabledFor(SSH_DETAIL) and not self.connection.is_connected:
            ssh = self.target.ssh
            _log.log(SSH_DETAIL, "%s: ssh %s@%s port %s, timeout %gs%s%s, known hosts %s", self.target.name,
                     self.connection.user, self.connection.host, self.connection.port,
                     self.connection.connect_timeout,
                     f", jump {' '.join(map(str, ssh.jump))}" if ssh.jump else "",
                     f", proxy command {shlex.join(ssh.proxy_command)}" if ssh.proxy_command else "",
                     " ".join(filter(None, (self.target.known_hosts, *(ssh.user_known_hosts or ()),
                                            *(ssh.global_known_hosts or ())))) or "ssh_config's")
        try:
            self.connection.open()
        except GatewayError as exc:
            raise HostError(self.target.name, str(exc)) from None
        except (paramiko.SSHException, OSError, socket.timeout, EOFError) as exc:
            raise HostError(self.target.name,
                            describe_open_error(self.connection.host, self.connection.port, exc)) from None

    def close(self) -> None:
        self._stop_agent()
        if self._connection is not None:
            self._connection.close()

    def _launch(self, command: list[str]) -> AgentStream:
        self.open()
        try:
            channel = self.connection.create_session()
            channel.settimeout(self.timeouts.command)
            channel.exec_command(shlex.join(command))
        except paramiko.SSHException as exc:
            raise HostError(self.target.name, f"connection lost: {exc}") from None
        return _ChannelStream(channel, self.timeouts.command)


class _ChannelStream:
    """The agent's stdin and stdout as one SSH channel."""

    def __init__(self, channel: paramiko.Channel, wait: float):
        self.channel, self.wait = channel, wait
        self.lines = channel.makefile("rb")

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except paramiko.SSHException as exc:
            raise ConnectionError(str(exc)) from None

    def readline(self) -> bytes:
        try:
            return self.lines.readline()
        except paramiko.SSHException as exc:
            raise ConnectionError(str(exc)) from None

    def finish(self) -> tuple[int, str]:
        channel = self.channel
        channel.shutdown_write()
        stderr = channel.makefile_stderr("rb").read()
        deadline = time.monotonic() + self.wait
        while not channel.exit_status_ready() and time.monotonic() < deadline and not channel.closed:
            time.sleep(0.02)
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        detail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        return status, " / ".join(detail)

    def stop(self) -> None:
        """Closing stdin ends the agent; closing the channel ends our side of it."""
        try:
            self.channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass
