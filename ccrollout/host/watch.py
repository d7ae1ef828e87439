"""The stage's watcher on a host: keeps the per-control ledger (ledger.py) for the length of
a canary stage, so that connections that open and close between two of the controller's
samples still count.

It is a thread of the host agent, which lives for the controller's session: it ends when
asked, when its lifetime runs out, or with the agent (whose stdin closes when the
controller goes), so nothing outlives a controller that dies. The `counters` operation
reads its totals from memory.
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Optional

from . import sockdiag
from .ledger import Ledger

TICK_SECONDS = 0.25
_START_WAIT_SECONDS = 3.0
_TRACER_START_WAIT_SECONDS = 30.0  # bcc compiles its probe first (and once per host builds headers)
_STOP_WAIT_SECONDS = 2.0


class Watcher(threading.Thread):
    def __init__(self, lifetime: float, source: str):
        super().__init__(name="ccrollout-watcher", daemon=True)
        self.lifetime, self.wanted_source = lifetime, source
        self.source, self.note = "sockets", None
        self.totals: dict = {}
        self.rtt: dict = {}
        self.connections: dict = {}
        self.overflowed = 0
        self.error: Optional[str] = None
        self.ready = threading.Event()   # set after the first tick (or a failure to start)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        # Written to by stop(): it wakes the tick's select, so a stop is not a tick late.
        self._wake_read, self._wake_write = os.pipe()

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:  # never a write to a closed descriptor's number, which may be reused
            if self._wake_write is not None:
                os.write(self._wake_write, b"x")

    def run(self) -> None:
        retransmits = None
        try:
            retransmits, self.note = _tracer_or_note(self.wanted_source)
            self.source = "trace" if retransmits else "sockets"
            ledger = Ledger(count_retransmits=retransmits is None)
            deadline = time.monotonic() + self.lifetime
            with sockdiag.destroyed_tcp_sockets_channel() as channel:
                while time.monotonic() < deadline and not self.stopping.is_set():
                    destroyed, dropped = sockdiag.read_destroyed(channel)
                    ledger.closed(destroyed)  # before the table: their last reads are still remembered
                    ledger.read(sockdiag.tcp_sockets())
                    if retransmits:
                        ledger.traced(retransmits.read_interval().by_congestion())
                    with self._lock:
                        self.totals = {name: tuple(figures) for name, figures in ledger.totals.items()}
                        self.rtt = {name: tuple(sums) for name, sums in ledger.rtt.items()}
                        self.connections = dict(ledger.connections)
                        self.overflowed += dropped
                    self.ready.set()
                    select.select([channel, self._wake_read], [], [], TICK_SECONDS)
        except sockdiag.SockDiagError as exc:
            self.error = str(exc)
        finally:
            if retransmits:
                retransmits.stop()  # the probe goes with the watcher, whatever ends it
            self.ready.set()
            with self._lock:
                os.close(self._wake_read)
                os.close(self._wake_write)
                self._wake_write = None

    def reading(self) -> dict:
        with self._lock:
            return {"totals": dict(self.totals), "rtt": dict(self.rtt), "connections": dict(self.connections),
                    "overflowed": self.overflowed, "source": self.source, "note": self.note}


_current: Optional[Watcher] = None


def _tracer_or_note(source: str):
    """(a started tracer, None) when SOURCE is trace and bcc works here; else (None, why not)."""
    if source != "trace":
        return None, None
    from . import tracer  # bcc is needed only here
    try:
        retransmits = tracer.RetransTracer()
        retransmits.start()
        return retransmits, None
    except tracer.TracerError as exc:
        return None, f"the tracer cannot run here ({exc}); retransmissions come from tcp_info"


def read(state_dir: str) -> Optional[dict]:
    """The running watcher's latest totals, or None when none runs."""
    watcher = _current
    if watcher is None or not watcher.is_alive() or watcher.error:
        return None
    return watcher.reading()


def start(state_dir: str, lifetime: float, source: str) -> dict:
    """Start a watcher for LIFETIME seconds unless one runs; answers once it has read once."""
    global _current
    if _current is not None and _current.is_alive():
        current = _current.reading()
        return {"changed": False, "started": False, "source": current["source"], "note": current["note"]}
    watcher = Watcher(lifetime, source)
    watcher.start()
    watcher.ready.wait(_TRACER_START_WAIT_SECONDS if source == "trace" else _START_WAIT_SECONDS)
    if watcher.error or not watcher.is_alive():
        watcher.stop()
        raise sockdiag.SockDiagError(watcher.error or "the socket watcher did not start (it needs CAP_NET_ADMIN)")
    _current = watcher
    reading = watcher.reading()
    return {"changed": False, "started": True, "source": reading["source"], "note": reading["note"]}


def stop(state_dir: str) -> dict:
    global _current
    watcher, _current = _current, None
    running = watcher is not None and watcher.is_alive()
    if watcher is not None:
        watcher.stop()
        watcher.join(_STOP_WAIT_SECONDS)
    return {"changed": False, "stopped": running}
