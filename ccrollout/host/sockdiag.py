"""This network namespace's TCP sockets, as the kernel's inet_diag reports them (what `ss -ti` shows).

Standard library only: one NETLINK_SOCK_DIAG dump per address family, asking for
the tcp_info and congestion-control extensions. A netlink socket answers for the
network namespace it was created in, so this lists the caller's namespace and no
other. tcp_info is read by the offsets of include/uapi/linux/tcp.h, which only
ever grows at its end: a field past the end of what an older kernel sends is None.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_INFO = 2   # attribute carrying struct tcp_info
INET_DIAG_CONG = 4   # attribute carrying the congestion control's name

_NLMSG_HEADER = struct.Struct("=IHHII")       # len, type, flags, seq, pid
_RTATTR_HEADER = struct.Struct("=HH")          # len, type
_REQUEST = struct.Struct("=BBBxI48x")          # inet_diag_req_v2 with a zeroed inet_diag_sockid
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sIQIIIII")  # struct inet_diag_msg, 72 bytes
_ERROR_CODE = struct.Struct("=i")

TCP_STATES = ("UNKNOWN", "ESTABLISHED", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT",
              "CLOSE", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING", "NEW-SYN-RECV")
_ALL_STATES = sum(1 << state for state in range(1, len(TCP_STATES)))
FAMILY_NAMES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}

# (offset, struct format) of the struct tcp_info fields we read, from include/uapi/linux/tcp.h.
_TCP_INFO_FIELDS = {
    "rtt_us": (68, "=I"),
    "snd_cwnd": (80, "=I"),
    "total_retrans": (100, "=I"),
    "bytes_acked": (120, "=Q"),
    "segs_out": (136, "=I"),
    "min_rtt_us": (148, "=I"),
    "data_segs_out": (156, "=I"),
    "bytes_sent": (200, "=Q"),
    "bytes_retrans": (208, "=Q"),
}

_RECEIVE_BUFFER = 1 << 20
_TIMEOUT_SECONDS = 5
# A kernel built without IPv6 (or without its diag handler) answers a dump for it with one of these.
_FAMILY_UNSUPPORTED = {errno.ENOENT, errno.EAFNOSUPPORT, errno.EOPNOTSUPP}


class SockDiagError(Exception):
    """The kernel's socket table could not be read; the message says why."""


class Connection(NamedTuple):
    """One end of a TCP connection as this host sees it; the key retransmissions are counted under."""

    family: str   # "ipv4" or "ipv6"
    saddr: str
    sport: int
    daddr: str
    dport: int


@dataclass(frozen=True)
class TcpSocket:
    family: str
    state: str
    saddr: str
    sport: int
    daddr: str
    dport: int
    inode: int
    cookie: int                  # the kernel's id of the socket, unique for its life
    congestion: str | None       # None for sockets that have no control (TIME-WAIT, requests)
    total_retrans: int | None    # retransmitted segments over the socket's life
    segs_out: int | None
    data_segs_out: int | None
    bytes_sent: int | None       # includes retransmitted bytes
    bytes_acked: int | None
    bytes_retrans: int | None
    snd_cwnd: int | None         # in segments
    rtt_us: int | None           # smoothed round-trip time
    min_rtt_us: int | None = None  # the least RTT seen over the socket's life (windowed by the kernel)

    @property
    def connection(self) -> Connection:
        return Connection(self.family, self.saddr, self.sport, self.daddr, self.dport)


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket of this network namespace, IPv4 and IPv6, in every state."""
    sockets: list[TcpSocket] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as channel:
        channel.settimeout(_TIMEOUT_SECONDS)
        for sequence, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            sockets.extend(_dump(channel, family, sequence))
    return sockets


# Multicast groups on which the kernel announces each TCP socket it destroys, with its final
# tcp_info (but not its control's name): how a connection that closes between two reads of
# the table still gets counted to its end.
_SKNLGRP_INET_TCP_DESTROY, _SKNLGRP_INET6_TCP_DESTROY = 1, 3


def destroyed_tcp_sockets_channel() -> socket.socket:
    """A non-blocking netlink socket that receives this namespace's TCP socket destructions
    (needs CAP_NET_ADMIN); read it with read_destroyed()."""
    channel = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:
        channel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        channel.bind((0, (1 << (_SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (_SKNLGRP_INET6_TCP_DESTROY - 1))))
    except OSError as exc:
        channel.close()
        raise SockDiagError(f"cannot listen for closing TCP sockets: {exc.strerror}") from None
    channel.setblocking(False)
    return channel


def read_destroyed(channel: socket.socket) -> tuple[list[TcpSocket], bool]:
    """The destructions announced since the last read, and whether the kernel dropped some
    (the receive buffer overflowed)."""
    found, overflowed = [], False
    while True:
        try:
            datagram = channel.recv(_RECEIVE_BUFFER)
        except BlockingIOError:
            return found, overflowed
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                overflowed = True
                continue
            raise SockDiagError(f"reading closing TCP sockets failed: {exc.strerror}") from None
        found += [_parse_socket(body) for kind, _sequence, body in _messages(datagram) if kind == SOCK_DIAG_BY_FAMILY]


def _dump(channel: socket.socket, family: int, sequence: int) -> list[TcpSocket]:
    extensions = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1))
    payload = _REQUEST.pack(family, socket.IPPROTO_TCP, extensions, _ALL_STATES)
    header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(payload), SOCK_DIAG_BY_FAMILY,
                                NLM_F_REQUEST | NLM_F_DUMP, sequence, 0)
    try:
        channel.sendto(header + payload, (0, 0))
    except OSError as exc:
        raise SockDiagError(f"cannot ask the kernel for its TCP sockets: {exc.strerror}") from None
    found: list[TcpSocket] = []
    while True:
        try:
            datagram = channel.recv(_RECEIVE_BUFFER)
        except socket.timeout:
            raise SockDiagError(f"the kernel did not finish listing {FAMILY_NAMES[family]} TCP sockets "
                                f"within {_TIMEOUT_SECONDS} s") from None
        except OSError as exc:
            raise SockDiagError(f"reading the kernel's TCP socket list failed: {exc.strerror}") from None
        for message_type, message_sequence, body in _messages(datagram):
            if message_sequence != sequence:
                continue  # an answer to an earlier request on this channel
            if message_type == NLMSG_DONE:
                return found
            if message_type == NLMSG_ERROR:
                code = -_ERROR_CODE.unpack_from(body)[0]
                if code == 0:
                    continue  # an acknowledgement, not an error
                if code in _FAMILY_UNSUPPORTED and family == socket.AF_INET6:
                    return found
                raise SockDiagError(f"the kernel refused to list {FAMILY_NAMES[family]} TCP sockets: "
                                    f"{os.strerror(code)}")
            if message_type == SOCK_DIAG_BY_FAMILY:
                found.append(_parse_socket(body))


def _messages(datagram: bytes):
    """(type, sequence, body) of each netlink message in one datagram; a dump spans many datagrams."""
    offset = 0
    while offset + _NLMSG_HEADER.size <= len(datagram):
        length, message_type, _flags, sequence, _pid = _NLMSG_HEADER.unpack_from(datagram, offset)
        if length < _NLMSG_HEADER.size or offset + length > len(datagram):
            raise SockDiagError("the kernel's socket list came back truncated")
        yield message_type, sequence, datagram[offset + _NLMSG_HEADER.size:offset + length]
        offset += _align(length)


def _attributes(data: bytes) -> dict[int, bytes]:
    found = {}
    offset = 0
    while offset + _RTATTR_HEADER.size <= len(data):
        length, kind = _RTATTR_HEADER.unpack_from(data, offset)
        if length < _RTATTR_HEADER.size:
            break
        found[kind] = data[offset + _RTATTR_HEADER.size:offset + length]
        offset += _align(length)
    return found


def _align(length: int) -> int:
    return (length + 3) & ~3


def _parse_socket(body: bytes) -> TcpSocket:
    (family, state, _timer, _retrans, sport, dport, source, destination,
     _interface, cookie, _expires, _rqueue, _wqueue, _uid, inode) = _DIAG_MSG.unpack_from(body)
    attributes = _attributes(body[_DIAG_MSG.size:])
    congestion = attributes.get(INET_DIAG_CONG)
    info = _tcp_info_fields(attributes.get(INET_DIAG_INFO, b""))
    return TcpSocket(
        family=FAMILY_NAMES.get(family, str(family)),
        state=TCP_STATES[state] if state < len(TCP_STATES) else str(state),
        saddr=address_text(family, source),
        sport=int.from_bytes(sport, "big"),
        daddr=address_text(family, destination),
        dport=int.from_bytes(dport, "big"),
        inode=inode,
        cookie=cookie,
        congestion=congestion.split(b"\0", 1)[0].decode() if congestion else None,
        **info,
    )


def _tcp_info_fields(info: bytes) -> dict[str, int | None]:
    fields: dict[str, int | None] = {}
    for name, (offset, layout) in _TCP_INFO_FIELDS.items():
        fits = offset + struct.calcsize(layout) <= len(info)
        fields[name] = struct.unpack_from(layout, info, offset)[0] if fits else None
    return fields


def address_text(family: int, raw: bytes) -> str:
    """The address in the form both inet_diag and the tracer use (IPv4 in the first 4 bytes)."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return socket.inet_ntop(socket.AF_INET6, raw[:16])
