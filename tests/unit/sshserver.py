"""A small SSH server on 127.0.0.1 for tests (paramiko's server side): one host key, one
client key it lets in, and forwarding (direct-tcpip) to other loopback ports, so it can be
a jump host. Nothing leaves loopback; every thread ends when the server is closed."""

from __future__ import annotations

import socket
import threading

import paramiko


def new_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()  # fast to make, unlike RSA


def known_hosts_line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


class _Interface(paramiko.ServerInterface):
    def __init__(self, server: LoopbackSSHServer):
        self.server = server

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        self.server.logins.append(username)
        return paramiko.AUTH_SUCCESSFUL if key == self.server.client_key else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        if destination[0] != "127.0.0.1":
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.server.forwarded.append(tuple(destination))
        try:  # as sshd: the channel opens only once the destination answers
            self.server.pending[chanid] = socket.create_connection(tuple(destination), timeout=5)
        except OSError:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        return paramiko.OPEN_SUCCEEDED


class LoopbackSSHServer:
    """Listens on 127.0.0.1 (a free port) until closed."""

    def __init__(self, client_key: paramiko.PKey):
        self.host_key = new_key()
        self.host_keys = [self.host_key]  # all it offers; a test may add others before connecting
        self.client_key = client_key
        self.logins: list[str] = []
        self.forwarded: list[tuple[str, int]] = []  # destinations it was asked to reach
        self.pending: dict[int, tuple[str, int]] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        self.upstreams: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            transport = paramiko.Transport(client)
            for key in self.host_keys:
                transport.add_server_key(key)
            self.transports.append(transport)
            try:
                transport.start_server(server=_Interface(self))
            except (paramiko.SSHException, EOFError, OSError):
                continue  # the client refused our key: what the tests are about
            self._start(self._serve, transport)

    def _serve(self, transport: paramiko.Transport) -> None:
        while transport.is_active():
            channel = transport.accept(timeout=0.2)
            if channel is None:
                continue
            upstream = self.pending.pop(channel.get_id(), None)
            if upstream is None:
                channel.close()
                continue
            self._start(self._relay, channel, upstream)

    def _relay(self, channel: paramiko.Channel, upstream: socket.socket) -> None:
        self.upstreams.append(upstream)
        with upstream:
            upstream.settimeout(None)
            self._start(self._pump, upstream, channel)
            while True:
                data = channel.recv(1 << 15)
                if not data:
                    break
                upstream.sendall(data)

    @staticmethod
    def _pump(upstream: socket.socket, channel: paramiko.Channel) -> None:
        try:
            while True:
                data = upstream.recv(1 << 15)
                if not data:
                    break
                channel.sendall(data)
        except OSError:
            pass
        finally:
            channel.close()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not
        except OSError:
            pass
        self.listener.close()
        for transport in self.transports:
            transport.close()
        for upstream in self.upstreams:
            try:
                upstream.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self.threads:
            thread.join(timeout=5)
