"""A short-lived watcher on a host: keeps the per-control ledger (ledger.py) for the length
of a canary stage, so that connections that open and close between two of the controller's
samples still count. It runs detached from the SSH command that starts it, ends by itself
after its lifetime (a controller that dies cannot leave it running), and writes its totals
to STATE_DIR/ledger.json, which the `counters` action reads."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from . import layout, sockdiag
from .ledger import Ledger
from .osutil import pid_alive, write_atomically

TICK_SECONDS = 0.25
_START_WAIT_SECONDS = 3.0
_TRACER_START_WAIT_SECONDS = 30.0
_STOP_WAIT_SECONDS = 2.0
# Watchers this agent started: it lives for a whole session, so it reaps them itself
# (a watcher whose parent never waits would stay a zombie until the agent ends).
_children: list[subprocess.Popen] = []


def reap() -> None:
    """Forget the watchers that ended (collecting their exit status)."""
    _children[:] = [child for child in _children if child.poll() is None]


def read(state_dir: str) -> dict | None:
    """The running watcher's latest totals, or None when none runs."""
    try:
        with open(layout.ledger_file(state_dir)) as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return None
    if not pid_alive(content.get("pid", 0)) or time.time() - content.get("time", 0) > 10 * TICK_SECONDS:
        return None
    return content


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


def run(state_dir: str, lifetime: float, source: str) -> dict:
    """The watcher itself: read closing sockets and the socket table every tick until LIFETIME;
    with SOURCE trace, retransmissions come from the bcc tracer instead of tcp_info."""
    stop_file = layout.ledger_file(state_dir) + ".stop"
    if os.path.exists(stop_file):
        os.unlink(stop_file)
    deadline = time.monotonic() + lifetime
    retransmits, note = _tracer_or_note(source)
    ledger, overflowed = Ledger(count_retransmits=retransmits is None), 0
    try:
        with sockdiag.destroyed_tcp_sockets_channel() as channel:
            while time.monotonic() < deadline and not os.path.exists(stop_file):
                destroyed, dropped = sockdiag.read_destroyed(channel)
                overflowed += dropped
                ledger.closed(destroyed)  # before the table: their last reads are still remembered
                ledger.read(sockdiag.tcp_sockets())
                if retransmits:
                    ledger.traced(retransmits.read_interval().by_congestion())
                # Rewritten every tick and worthless after a crash: atomic, but not fsynced.
                write_atomically(layout.ledger_file(state_dir), json.dumps({
                    "pid": os.getpid(), "time": time.time(), "totals": ledger.totals, "overflowed": overflowed,
                    "source": "trace" if retransmits else "sockets", "note": note}))
                select.select([channel], [], [], TICK_SECONDS)
    finally:
        if retransmits:
            retransmits.stop()  # the probe goes with the watcher, whatever ends it
    with_stop = os.path.exists(stop_file)
    for path in (layout.ledger_file(state_dir), stop_file):
        if os.path.exists(path):
            os.unlink(path)
    return {"changed": False, "stopped": with_stop}


def start(state_dir: str, lifetime: float, source: str) -> dict:
    """Start a watcher for LIFETIME seconds unless one runs; returns once it has written."""
    current = read(state_dir)
    if current:
        return {"changed": False, "started": False, "source": current.get("source"), "note": current.get("note")}
    os.makedirs(state_dir, exist_ok=True)
    request = {"state_dir": state_dir, "actions": [{"op": "watch_run", "lifetime": lifetime, "source": source}]}
    # sys.argv[0] is this very host side (the zip the bootstrap runs), started again detached.
    child = subprocess.Popen([sys.executable, sys.argv[0]], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    _children.append(child)
    child.stdin.write(json.dumps(request).encode())
    child.stdin.close()
    # bcc compiles its probe first (and, once per host, builds a header tree): give it time.
    deadline = time.monotonic() + (_TRACER_START_WAIT_SECONDS if source == "trace" else _START_WAIT_SECONDS)
    while time.monotonic() < deadline:
        current = read(state_dir)
        if current and current["pid"] == child.pid:
            return {"changed": False, "started": True, "pid": child.pid, "source": current["source"],
                    "note": current["note"]}
        if child.poll() is not None:
            break
        time.sleep(0.05)
    if child.poll() is None:
        child.kill()
    raise sockdiag.SockDiagError("the socket watcher did not start (it needs CAP_NET_ADMIN)")


def stop(state_dir: str) -> dict:
    current = read(state_dir)
    if current:
        open(layout.ledger_file(state_dir) + ".stop", "w").close()
        ours = [child for child in _children if child.pid == current.get("pid")]
        for child in ours:  # it sees the stop file within a tick
            try:
                child.wait(timeout=_STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
    reap()
    return {"changed": False, "stopped": bool(current)}
