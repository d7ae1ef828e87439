"""The socket table (inet_diag) and the tracer's pure parts, without root or a lab."""

import os
import socket

import pytest

from ccrollout.host import kernelheaders, sockdiag, tracer

def test_sockdiag_lists_a_loopback_connection_with_its_control():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.socket()
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")
            client.connect(server.getsockname())
            client_inode = os.fstat(client.fileno()).st_ino
            accepted, _ = server.accept()
            with accepted:
                client.sendall(b"x" * 100_000)
                received = 0
                while received < 100_000:
                    received += len(accepted.recv(1 << 16))
                client_end = sockdiag.Connection("ipv4", *client.getsockname(), *client.getpeername())
                listener = sockdiag.Connection("ipv4", *server.getsockname(), "0.0.0.0", 0)
                listed = {entry.connection: entry for entry in sockdiag.tcp_sockets()}
        finally:
            client.close()
    assert client_end in listed, f"{client_end} not among {sorted(listed)}"
    entry = listed[client_end]
    assert entry.state == "ESTABLISHED" and entry.congestion == "reno"
    assert entry.inode == client_inode
    assert entry.bytes_acked >= 100_000 and entry.data_segs_out >= 1 and entry.total_retrans == 0
    assert entry.snd_cwnd > 0 and entry.rtt_us > 0
    assert listed[listener].state == "LISTEN"


def test_sockdiag_lists_ipv6_sockets():
    if not socket.has_ipv6 or not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6 in this kernel")
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        address, port = server.getsockname()[:2]
        entry = {entry.connection: entry for entry in sockdiag.tcp_sockets()}.get(
            sockdiag.Connection("ipv6", address, port, "::", 0))
    assert entry is not None and entry.state == "LISTEN"


def test_shorter_tcp_info_from_an_older_kernel_leaves_missing_fields_none():
    older = (7).to_bytes(4, "little").rjust(104, b"\0")   # ends right after total_retrans
    fields = sockdiag._tcp_info_fields(older)
    assert fields["total_retrans"] == 7 and fields["snd_cwnd"] == 0
    assert fields["bytes_sent"] is None and fields["segs_out"] is None and fields["bytes_retrans"] is None


def socket_entry(sport: int, state: str = "ESTABLISHED", congestion: str | None = "cubic") -> sockdiag.TcpSocket:
    return sockdiag.TcpSocket("ipv4", state, "10.198.0.101", sport, "10.198.0.110", 5311, sport * 10, sport, congestion,
                              0, 0, 0, 0, 0, 0, 10, 100)


def test_a_closed_connection_keeps_its_control_for_one_more_read(monkeypatch):
    """Events drained after a connection left the table still count for it, with its control;
    a connection this namespace never listed is reported as unattributed, never guessed."""
    traced = tracer.RetransTracer()
    traced._bpf = object()   # stands in for the loaded program; _drain is replaced below
    tables = iter([[socket_entry(40001), socket_entry(40002, congestion="reno")],   # at start
                   [socket_entry(40002, state="TIME-WAIT", congestion=None)],       # 40001 is gone
                   [], []])
    monkeypatch.setattr(sockdiag, "tcp_sockets", lambda: next(tables))
    traced._remember(sockdiag.tcp_sockets())
    connection = socket_entry(40001).connection
    stranger = socket_entry(49999).connection
    monkeypatch.setattr(traced, "_drain", lambda: ({connection: (5, 1), stranger: (7, 0),
                                                    socket_entry(40002).connection: (2, 0)}, 0))
    interval = traced.read_interval()
    found = {entry.connection.sport: entry for entry in interval.connections}
    assert found[40001].retransmits == 5 and found[40001].failed == 1
    assert found[40001].congestion == "cubic" and not found[40001].open
    assert found[40002].congestion == "reno" and found[40002].open and found[40002].state == "TIME-WAIT"
    assert interval.unattributed == 7 and interval.by_congestion() == {"cubic": 5, "reno": 2}
    # Its last events may be drained at the read after the one that missed it; after that it is forgotten.
    monkeypatch.setattr(traced, "_drain", lambda: ({connection: (1, 0)}, 0))
    assert [entry.congestion for entry in traced.read_interval().connections] == ["cubic"]
    assert traced.read_interval().unattributed == 1


# ---------------------------------------------------------------- bcc and headers

def test_missing_debian_headers_are_explained(tmp_path):
    with pytest.raises(kernelheaders.HeadersError, match="no kernel headers for bcc.*linux-headers"):
        kernelheaders.merged_header_tree(tmp_path / "cache", root=tmp_path)
