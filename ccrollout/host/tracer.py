"""Counts TCP retransmissions per connection and says which congestion control each one ran.

A bcc program on the tcp:tcp_retransmit_skb tracepoint counts, per connection
(family, addresses, ports), the retransmissions the kernel made; each read
drains those counts and joins them with this network namespace's socket table
(sockdiag), which names each connection's congestion control.

Runs in the host's system python3, where Debian's python3-bpfcc provides bcc.
bcc compiles at run time and wants kernel headers (kernelheaders.py finds or
merges a tree); the program reads only the tracepoint's own arguments (laid out
by tracefs' format file, so right for the running kernel) and never a kernel
struct through the headers, which may belong to another kernel version.
The command line is tracecli.py.

Counts are retransmitted skbs, not segments: one retransmission may carry
several segments (tcp_info's total_retrans counts segments).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import sockdiag
from .kernelheaders import DEBIAN_HEADERS_ROOT, DEFAULT_HEADER_CACHE, HeadersError, kernel_headers, kernel_source_for_bcc
from .sockdiag import Connection

TRACEFS_MOUNTS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
TRACEPOINT = ("tcp", "tcp_retransmit_skb")
MAP_ENTRIES = 65536   # connections with retransmissions between two reads
AF_INET6 = int(socket.AF_INET6)   # the tracepoint's family value, 10 on Linux

# Only the tracepoint's arguments are read: their layout comes from tracefs, so it is the running
# kernel's, whatever version the headers are. Kernels that report the outcome of each attempt
# (the `err` argument) get failed attempts counted apart; older ones trace successes only.
_PROGRAM = r"""
struct connection_t {
    u16 family;
    u16 sport;
    u16 dport;
    u16 padding;
    u8 saddr[16];
    u8 daddr[16];
};

struct counts_t {
    u64 retransmits;
    u64 failed;
};

BPF_HASH(retransmits, struct connection_t, struct counts_t, MAP_ENTRIES);
BPF_ARRAY(lost_events, u64, 1);   /* events not counted because the map was full */

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    struct connection_t key = {};
    struct counts_t zero = {};
    struct counts_t *counts;
    int slot = 0;
    u64 *lost;

    key.family = args->family;
    key.sport = args->sport;
    key.dport = args->dport;
    if (args->family == AF_INET6_FAMILY) {
        __builtin_memcpy(key.saddr, args->saddr_v6, 16);
        __builtin_memcpy(key.daddr, args->daddr_v6, 16);
    } else {
        __builtin_memcpy(key.saddr, args->saddr, 4);
        __builtin_memcpy(key.daddr, args->daddr, 4);
    }
    counts = retransmits.lookup_or_try_init(&key, &zero);
    if (!counts) {
        lost = lost_events.lookup(&slot);
        if (lost)
            __sync_fetch_and_add(lost, 1);
        return 0;
    }
#ifdef HAVE_ERR
    if (args->err) {
        __sync_fetch_and_add(&counts->failed, 1);
        return 0;
    }
#endif
    __sync_fetch_and_add(&counts->retransmits, 1);
    return 0;
}
"""


class TracerError(Exception):
    """The tracer cannot run here; the message says why in one line."""


# ---------------------------------------------------------------- tracefs

def tracefs_dir() -> Path | None:
    for mount in TRACEFS_MOUNTS:
        if (mount / "events").is_dir():
            return mount
    return None


def ensure_tracefs() -> Path:
    """bcc reads tracepoint layouts from tracefs, which these kernels do not mount at boot.
    The mount is left in place: it changes nothing else, and other tools expect it there."""
    found = tracefs_dir()
    if found is not None:
        return found
    target = TRACEFS_MOUNTS[0]
    result = subprocess.run(["mount", "-t", "tracefs", "tracefs", str(target)], capture_output=True, text=True)
    if result.returncode != 0 or tracefs_dir() is None:
        reason = (result.stderr.strip().splitlines() or ["no events directory after mounting"])[0]
        raise TracerError(f"tracefs is not mounted and mounting it on {target} failed: {reason}")
    return target


def tracepoint_format(tracefs: Path) -> str:
    category, event = TRACEPOINT
    try:
        return (tracefs / "events" / category / event / "format").read_text()
    except OSError:
        raise TracerError(f"this kernel has no {category}:{event} tracepoint (or it is not readable)") from None


# ---------------------------------------------------------------- status

def bcc_status(cache_dir: Path = DEFAULT_HEADER_CACHE, root: Path = DEBIAN_HEADERS_ROOT) -> dict:
    """Whether the tracer can run here and, if not, why. Changes nothing and never raises."""
    status = {"bcc": False, "bcc_version": None, "python": sys.executable,
              "headers": False, "headers_source": None, "headers_kind": None, "headers_built": False,
              "kernel_release": os.uname().release, "tracefs": None, "ready": False, "reason": ""}
    reasons = []
    try:
        import bcc
        status["bcc"] = True
        status["bcc_version"] = getattr(bcc, "__version__", None)
    except Exception as exc:  # an ImportError, or a broken libbcc underneath
        reasons.append(f"bcc does not import in {sys.executable} ({exc}): install python3-bpfcc "
                       f"and run with the system python3")
    try:
        tree, how = kernel_headers(cache_dir, root, build=False)
        status.update(headers=True, headers_source=str(tree), headers_kind=how,
                      headers_built=(tree / "include").is_dir())
    except HeadersError as exc:
        reasons.append(str(exc))
    except Exception as exc:
        reasons.append(f"looking for kernel headers failed: {exc}")
    found = tracefs_dir()
    status["tracefs"] = str(found) if found else None
    status["ready"] = not reasons
    status["reason"] = "; ".join(reasons) if reasons else (
        "ready" + ("" if found else " (tracefs will be mounted on start)")
        + ("" if status["headers_built"] else " (the merged header tree will be built on start)"))
    return status


# ---------------------------------------------------------------- the tracer

def _socket_table() -> list[sockdiag.TcpSocket]:
    try:
        return sockdiag.tcp_sockets()
    except sockdiag.SockDiagError as exc:
        raise TracerError(str(exc)) from None


@dataclass
class ConnectionRetransmits:
    connection: Connection
    retransmits: int              # retransmitted skbs sent this interval
    failed: int                   # retransmissions the stack tried and could not send this interval
    congestion: str | None        # the control the connection ran when last seen
    state: str | None             # its TCP state when last seen
    open: bool                    # still in the socket table at this read
    inode: int | None
    total_retrans: int | None     # tcp_info's segment count when last seen: an independent view

    def as_dict(self) -> dict:
        fields = asdict(self)
        del fields["connection"]
        return {**self.connection._asdict(), **fields}


@dataclass
class Interval:
    seconds: float
    connections: list[ConnectionRetransmits] = field(default_factory=list)
    # Retransmissions of connections never seen in this namespace's socket table: other
    # namespaces' traffic, or connections that opened and closed between two reads.
    unattributed: int = 0
    lost_events: int = 0          # events the kernel side could not count (its map was full)

    def by_congestion(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for entry in self.connections:
            name = entry.congestion or "unknown"
            totals[name] = totals.get(name, 0) + entry.retransmits
        return totals

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "connections": [c.as_dict() for c in self.connections],
                "by_congestion": self.by_congestion(), "unattributed": self.unattributed,
                "lost_events": self.lost_events}


@dataclass
class _SeenSocket:
    congestion: str | None
    state: str
    inode: int | None
    total_retrans: int | None
    last_read: int


class RetransTracer:
    """Attaches on enter, detaches on exit (also on an exception or Ctrl-C).

    Tracepoints are kernel-wide and tcp_retransmit_skb carries no network namespace, so every
    namespace's retransmissions reach the map. Results are kept to this namespace in user space:
    a connection counts only if its 4-tuple is (or was, at an earlier read) in this namespace's
    socket table; the rest is reported as `unattributed`, never mixed in. The one thing this
    cannot tell apart is two namespaces using the very same addresses and ports. A connection
    that closed keeps its control through the 4-tuples remembered from earlier reads, so state
    changes (sock:inet_sock_set_state, which carries no namespace either) need no probe.
    """

    def __init__(self, header_cache: Path = DEFAULT_HEADER_CACHE, headers_root: Path = DEBIAN_HEADERS_ROOT):
        self.header_cache = Path(header_cache)
        self.headers_root = Path(headers_root)
        self.kernel_source: Path | None = None
        self._bpf = None
        self._seen: dict[Connection, _SeenSocket] = {}
        self._reads = 0
        self._last_read_at = 0.0

    def __enter__(self) -> "RetransTracer":
        self.start()
        return self

    def __exit__(self, *_exc_info) -> None:
        self.stop()

    @property
    def attached(self) -> bool:
        return self._bpf is not None

    def start(self) -> None:
        if self._bpf is not None:
            return
        try:
            from bcc import BPF
        except Exception as exc:
            raise TracerError(f"bcc does not import in {sys.executable} ({exc}): install python3-bpfcc "
                              f"and run with the system python3") from None
        try:
            with kernel_source_for_bcc(self.header_cache, self.headers_root) as self.kernel_source:
                self._bpf = self._compile(BPF)
        except HeadersError as exc:
            raise TracerError(str(exc)) from None
        try:
            self._remember(_socket_table())
        except BaseException:
            self.stop()   # __exit__ does not run when __enter__ fails
            raise
        self._last_read_at = time.monotonic()

    def _compile(self, bpf_class):
        """The probe compiled and attached (TRACEPOINT_PROBE attaches itself)."""
        # Mounted only once everything else is known to be there, so a refusal changes nothing.
        tracefs = ensure_tracefs()
        has_err = re.search(r"\bfield:int err;", tracepoint_format(tracefs)) is not None
        cflags = [f"-DMAP_ENTRIES={MAP_ENTRIES}", f"-DAF_INET6_FAMILY={AF_INET6}"]
        if has_err:
            cflags.append("-DHAVE_ERR")
        try:
            return bpf_class(text=_PROGRAM.encode(), cflags=cflags)
        except Exception as exc:
            raise TracerError(f"bcc could not compile or attach the retransmit probe with headers from "
                              f"{self.kernel_source}: {exc}") from None

    def stop(self) -> None:
        """Detaches the probe and frees its maps; safe to call twice."""
        bpf, self._bpf = self._bpf, None
        if bpf is not None:
            bpf.cleanup()

    def read_interval(self) -> Interval:
        """Retransmissions since the last read (or the start), per connection of this namespace."""
        if self._bpf is None:
            raise TracerError("the tracer is not attached")
        drained, lost = self._drain()
        # Read the socket table after draining: every drained event happened before it, so its
        # connection is either listed now or was seen at an earlier read.
        self._remember(_socket_table())
        now = time.monotonic()
        interval = Interval(seconds=now - self._last_read_at, lost_events=lost)
        self._last_read_at = now
        for connection, (retransmits, failed) in sorted(drained.items()):
            seen = self._seen.get(connection)
            if seen is None:
                interval.unattributed += retransmits
                continue
            interval.connections.append(ConnectionRetransmits(
                connection=connection, retransmits=retransmits, failed=failed, congestion=seen.congestion,
                state=seen.state, open=seen.last_read == self._reads, inode=seen.inode,
                total_retrans=seen.total_retrans))
        self._forget_closed()
        return interval

    def _remember(self, sockets: list[sockdiag.TcpSocket]) -> None:
        self._reads += 1
        for socket_entry in sockets:
            previous = self._seen.get(socket_entry.connection)
            # TIME-WAIT entries carry no control and no inode: keep what the live socket said.
            keep = previous is not None and socket_entry.congestion is None
            self._seen[socket_entry.connection] = _SeenSocket(
                congestion=previous.congestion if keep else socket_entry.congestion,
                state=socket_entry.state,
                inode=previous.inode if keep and not socket_entry.inode else socket_entry.inode,
                total_retrans=previous.total_retrans if keep else socket_entry.total_retrans,
                last_read=self._reads)

    def _forget_closed(self) -> None:
        # A connection gone from the table can still have events drained at the next read
        # (those between the drain and its close), so it is kept one read longer.
        oldest_kept = self._reads - 1
        self._seen = {connection: seen for connection, seen in self._seen.items() if seen.last_read >= oldest_kept}

    def _drain(self) -> tuple[dict[Connection, tuple[int, int]], int]:
        table = self._bpf[b"retransmits"]
        drained = {}
        for key in list(table.keys()):
            counts = _take(table, key)
            if counts is None:
                continue
            family = sockdiag.FAMILY_NAMES.get(key.family, str(key.family))
            connection = Connection(family, sockdiag.address_text(key.family, bytes(key.saddr)), key.sport,
                                    sockdiag.address_text(key.family, bytes(key.daddr)), key.dport)
            drained[connection] = (counts.retransmits, counts.failed)
        lost_table = self._bpf[b"lost_events"]
        slot = lost_table.Key(0)
        lost = lost_table[slot].value
        if lost:
            lost_table[slot] = lost_table.Leaf(0)   # a racing increment may be lost here; it is a rare overflow count
        return drained, lost


def _take(table, key):
    """Reads and deletes one entry, atomically where the kernel can (hash maps since 5.14): an
    event after this re-creates the entry and is drained next time. Older kernels get a lookup
    and a delete, which can lose the events that fall between the two."""
    from bcc.libbcc import lib
    counts = table.Leaf()
    if lib.bpf_lookup_and_delete(table.map_fd, ctypes.byref(key), ctypes.byref(counts)) == 0:
        return counts
    if ctypes.get_errno() == errno.ENOENT:
        return None
    try:
        counts = table[key]
        del table[key]
    except KeyError:
        return None
    return counts


# ---------------------------------------------------------------- the host side's trace operation

def _connection_text(entry: dict) -> str:
    return f"{entry['saddr']}:{entry['sport']} > {entry['daddr']}:{entry['dport']}"


def _top(connections: dict[str, dict], count: int) -> list[dict]:
    return sorted(connections.values(), key=lambda entry: -entry["retransmits"])[:count]


def trace_for(seconds: float, interval: float, top: int, emit) -> dict:
    """Trace for SECONDS, calling EMIT with each interval's figures (the busiest TOP connections);
    the totals at the end. The probe is detached however this ends."""
    began = time.monotonic()
    totals: dict[str, dict] = {}
    by_congestion: dict[str, int] = {}
    unattributed = intervals = 0
    with RetransTracer() as tracer:
        emit({"event": "started", "startup_seconds": round(time.monotonic() - began, 3)})
        traced_from = time.monotonic()
        deadline = traced_from + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(interval, remaining))
            reading = tracer.read_interval()
            intervals += 1
            unattributed += reading.unattributed
            this_interval = {}
            for entry in (c.as_dict() for c in reading.connections):
                key = _connection_text(entry)
                this_interval[key] = entry
                total = totals.setdefault(key, {**entry, "retransmits": 0, "failed": 0})
                total.update(congestion=entry["congestion"], state=entry["state"], open=entry["open"])
                total["retransmits"] += entry["retransmits"]
                total["failed"] += entry["failed"]
            for name, count in reading.by_congestion().items():
                by_congestion[name] = by_congestion.get(name, 0) + count
            emit({"event": "interval", "elapsed": round(time.monotonic() - traced_from, 3),
                  "retransmits": sum(reading.by_congestion().values()), "by_congestion": reading.by_congestion(),
                  "unattributed": reading.unattributed, "top": _top(this_interval, top)})
    return {"seconds": round(time.monotonic() - traced_from, 3), "intervals": intervals,
            "retransmits": sum(by_congestion.values()), "by_congestion": by_congestion,
            "unattributed": unattributed, "connections": len(totals), "top": _top(totals, top)}
