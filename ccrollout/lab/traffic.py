"""Traffic for the local lab: a sink that reads and discards, and bulk senders.

The sink runs in the hub, a sender on each host: this very file, run as a program inside
the lab's namespaces, which the controller's side at the end of this file starts and stops
(traffic_start, traffic_stop, transfer). By hand it looks like this::

    ip netns exec ccrlab python3 -I ccrollout/lab/traffic.py sink --bind 10.199.0.1
    ip netns exec lab1 python3 -I ccrollout/lab/traffic.py send --to 10.199.0.1 --once --seconds 3

``send --once`` prints one JSON object: {"bytes": ..., "seconds": ..., "congestion": ...}.

Every process is bounded: it ends by itself after ``--lifetime`` seconds. Traffic only
goes to loopback or to the lab's subnet (``CCROLLOUT_LAB_SUBNET``, default 10.199.0.0/24).

Senders open a NEW connection for every burst: a congestion control becomes the default
only for sockets created after it was activated, so a long-lived connection would never
pick up a rollout.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

if not __package__:
    # Run by file path, and isolated (-I): import the package from the tree this file is
    # in, not whichever ccrollout the interpreter has installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ccrollout.errors import LabFailed  # noqa: E402
from ccrollout.host.osutil import pid_alive, write_atomically  # noqa: E402
from ccrollout.lab.base import (  # noqa: E402
    LabPaths, kill, lab_dir, load_state, locked, pids_with_marker, read_pid, require_root, run)
from ccrollout.lab.netns import (  # noqa: E402
    HUB_NS, host_name, lab_subnet, netns_names, sink_address)

TRAFFIC_PORT = 5300          # the sink's port; the lab's loss/CE rules match only this port
DEFAULT_LIFETIME = 900.0     # seconds a daemon lives at most
BURST_SECONDS = 2.0          # a background sender's connection sends this long ...
PAUSE_SECONDS = 0.3          # ... then closes and waits this long before the next one
MAX_LIFETIME = 24 * 3600.0
_CHUNK = 256 * 1024
_CONNECT_TIMEOUT = 3.0
_IO_TIMEOUT = 2.0
LABTRAFFIC = os.path.abspath(__file__)
# How a traffic process of the lab shows in /proc/PID/cmdline (see _traffic_cmd); precise
# enough that an editor or a grep naming the file is never taken for one.
_TRAFFIC_MARKER = f"\0-I\0{LABTRAFFIC}\0"


def check_destination(address: str) -> None:
    """Refuse any destination outside the lab: only loopback and the lab's /24."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IPv4 address") from None
    if not (ip.is_loopback or ip in lab_subnet()):
        raise ValueError(f"{address} is outside the lab ({lab_subnet()} or loopback)")


# --- the sink -----------------------------------------------------------------------

def _drain(conn: socket.socket, deadline: float) -> None:
    conn.settimeout(_IO_TIMEOUT * 5)
    try:
        while time.monotonic() < deadline:
            if not conn.recv(_CHUNK):
                break
    except OSError:
        pass
    finally:
        conn.close()


def open_sink(bind: str, port: int) -> socket.socket:
    check_destination(bind)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, port))
    listener.listen(128)
    return listener


def serve_sink(listener: socket.socket, lifetime: float) -> None:
    """Accept connections and discard what they send, one thread each, until lifetime ends."""
    deadline = time.monotonic() + lifetime
    listener.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            time.sleep(0.1)
            continue
        threading.Thread(target=_drain, args=(conn, deadline), daemon=True).start()
    listener.close()


# --- the sender ---------------------------------------------------------------------

def _set_congestion(sock: socket.socket, congestion: str) -> None:
    # Per socket, so it works in namespaces where the control is restricted as a default.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
    except OSError as exc:
        raise ValueError(f"congestion control {congestion!r} cannot be used: "
                         f"{exc.strerror}") from None


def check_congestion(congestion: str | None) -> None:
    """Fail early (before daemonizing) on a control this kernel does not have."""
    if congestion:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            _set_congestion(sock, congestion)


def _wait_delivered(sock: socket.socket) -> None:
    """Half-close and wait for the sink to close: the send buffer drains before the next
    connection starts, so bursts never overlap and fight each other at the bottleneck."""
    try:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(_CHUNK):
            pass
    except OSError:
        pass


def send_once(to: str, port: int, seconds: float, congestion: str | None = None) -> dict:
    """One connection that sends as fast as it can for `seconds`; returns what it did."""
    check_destination(to)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if congestion:
            _set_congestion(sock, congestion)
        sock.settimeout(_CONNECT_TIMEOUT)
        sock.connect((to, port))
        used = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        used = used.split(b"\0", 1)[0].decode()
        sock.settimeout(_IO_TIMEOUT)
        payload = b"\0" * _CHUNK
        sent = 0
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            try:
                sent += sock.send(payload)
            except socket.timeout:
                continue
        _wait_delivered(sock)
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    return {"bytes": sent, "seconds": round(elapsed, 3), "congestion": used}


def send_loop(to: str, port: int, lifetime: float, burst: float, pause: float,
              congestion: str | None = None) -> None:
    """New connection, `burst` seconds of bulk data, close, `pause`, repeat until lifetime ends."""
    check_destination(to)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        seconds = min(burst, deadline - time.monotonic())
        try:
            send_once(to, port, max(seconds, 0.0), congestion)
        except OSError:
            time.sleep(1.0)     # the sink is not there (yet): try again shortly
            continue
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))


# --- daemon plumbing ------------------------------------------------------------------

def _daemonize(pidfile: str, logfile: str | None, ready):
    """Classic double fork. The original process exits 0 once `ready()` succeeded in the
    daemon (or 1 with its error), so the caller learns about failures synchronously."""
    rfd, wfd = os.pipe()
    if os.fork() > 0:
        os.close(wfd)
        with os.fdopen(rfd, "rb") as pipe:
            message = pipe.read().decode()
        if message == "ok":
            os._exit(0)
        sys.stderr.write((message or "labtraffic: daemon died while starting") + "\n")
        os._exit(1)
    os.close(rfd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    try:
        state = ready()
        devnull = os.open(os.devnull, os.O_RDWR)
        out = devnull
        if logfile:
            out = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        write_atomically(pidfile, f"{os.getpid()}\n", mode=0o644)
    except Exception as exc:   # report any start-up failure to the waiting parent
        os.write(wfd, f"labtraffic: {exc}".encode())
        os._exit(1)
    os.write(wfd, b"ok")
    os.close(wfd)
    return state


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_LIFETIME:
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_LIFETIME:g}]")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="labtraffic", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sink = sub.add_parser("sink", help="read and discard on ADDRESS:PORT")
    sink.add_argument("--bind", required=True)
    send = sub.add_parser("send", help="bulk data to the sink, a new connection per burst")
    send.add_argument("--to", required=True)
    send.add_argument("--once", action="store_true", help="one connection, print JSON, exit")
    send.add_argument("--seconds", type=_positive, default=BURST_SECONDS,
                      help="with --once: how long to send")
    send.add_argument("--burst", type=_positive, default=BURST_SECONDS)
    send.add_argument("--pause", type=float, default=PAUSE_SECONDS)
    send.add_argument("--congestion", help="setsockopt(TCP_CONGESTION) on every socket")
    for p in (sink, send):
        p.add_argument("--port", type=int, default=TRAFFIC_PORT)
        p.add_argument("--lifetime", type=_positive, default=DEFAULT_LIFETIME)
        p.add_argument("--daemon", action="store_true")
        p.add_argument("--pidfile")
        p.add_argument("--logfile")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if args.daemon and not args.pidfile:
        parser.error("--daemon needs --pidfile")
    try:
        if args.command == "sink":
            if args.daemon:
                listener = _daemonize(args.pidfile, args.logfile,
                                      lambda: open_sink(args.bind, args.port))
            else:
                listener = open_sink(args.bind, args.port)
            serve_sink(listener, args.lifetime)
        elif args.once:
            result = send_once(args.to, args.port, args.seconds, args.congestion)
            print(json.dumps(result))
        else:
            def ready():
                check_destination(args.to)
                check_congestion(args.congestion)
            if args.daemon:
                _daemonize(args.pidfile, args.logfile, ready)
            else:
                ready()
            send_loop(args.to, args.port, args.lifetime, args.burst, args.pause,
                      args.congestion)
    except (OSError, ValueError, LabFailed) as exc:
        print(f"labtraffic: {exc}", file=sys.stderr)
        return 1
    if args.daemon:
        _remove_own_pidfile(args.pidfile)
    return 0


def _remove_own_pidfile(pidfile: str) -> None:
    try:
        with open(pidfile) as fh:
            if fh.read().strip() == str(os.getpid()):
                os.unlink(pidfile)
    except OSError:
        pass


# --- the controller's side: starting and stopping them ------------------------------------

def _traffic_cmd(ns: str, *args) -> list[str]:
    # -I: isolated, so the script's own directory (ccrollout/lab/) never shadows a module.
    return ["ip", "netns", "exec", ns, sys.executable, "-I", LABTRAFFIC, *map(str, args)]


def _start_traffic_daemon(ns: str, what: str, *args) -> None:
    proc = run(_traffic_cmd(ns, *args), check=False)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise LabFailed(f"{what} did not start: {detail.removeprefix('labtraffic: ')}")


def traffic_pids() -> list[int]:
    """Every traffic process of the lab: senders, the sink, foreground transfers."""
    return pids_with_marker(_TRAFFIC_MARKER)


def sink_pid(paths: LabPaths) -> int | None:
    pid = read_pid(paths.traffic / "sink.pid")
    return pid if pid and pid_alive(pid, _TRAFFIC_MARKER) else None


def sender_pid(paths: LabPaths, name: str) -> int | None:
    pid = read_pid(paths.traffic / f"{name}.pid")
    return pid if pid and pid_alive(pid, _TRAFFIC_MARKER) else None


def _ensure_sink(paths: LabPaths, subnet, lifetime: float) -> None:
    """Start the sink, or restart it if it would end before `lifetime` seconds from now."""
    expires_file = paths.traffic / "sink.expires"
    pid = sink_pid(paths)
    if pid:
        try:
            expires = float(expires_file.read_text())
        except (OSError, ValueError):
            expires = 0.0
        if expires >= time.time() + lifetime:
            return
        kill([pid])
    paths.traffic.mkdir(exist_ok=True)
    _start_traffic_daemon(HUB_NS, "the traffic sink", "sink",
                          "--bind", sink_address(subnet), "--port", TRAFFIC_PORT,
                          "--lifetime", lifetime, "--daemon",
                          "--pidfile", paths.traffic / "sink.pid",
                          "--logfile", paths.traffic / "sink.log")
    write_atomically(expires_file, f"{time.time() + lifetime:.0f}\n", mode=0o644)


def _lab_state_or_fail(paths: LabPaths) -> dict:
    state = load_state(paths)
    if not state.get("hosts") or HUB_NS not in netns_names():
        raise LabFailed("the lab is not up: run `ccrollout lab up`")
    return state


def traffic_start(hosts=None, lifetime: float = DEFAULT_LIFETIME,
                  congestion: str | None = None) -> dict:
    """Start background bulk senders on `hosts` (names or numbers; default: all), each
    opening a new connection to the sink every ~2 s, until traffic_stop() or `lifetime`
    seconds. A host that already has a sender keeps it. Returns {host: sender pid}."""
    require_root()
    if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or \
            not 0 < lifetime <= MAX_LIFETIME:
        raise LabFailed(f"lifetime must be in (0, {MAX_LIFETIME:g}] seconds")
    paths = LabPaths(lab_dir())
    with locked(paths, create=False):
        state = _lab_state_or_fail(paths)
        subnet = ipaddress.IPv4Network(state["subnet"])
        names = [f"lab{i}" for i in range(1, state["hosts"] + 1)] if hosts is None else \
            [host_name(h, state) for h in ([hosts] if isinstance(hosts, (str, int)) else hosts)]
        _ensure_sink(paths, subnet, lifetime)
        started = {}
        for name in names:
            pid = sender_pid(paths, name)
            if not pid:
                args = ["send", "--to", sink_address(subnet), "--port", TRAFFIC_PORT,
                        "--lifetime", lifetime, "--daemon",
                        "--pidfile", paths.traffic / f"{name}.pid",
                        "--logfile", paths.traffic / f"{name}.log"]
                if congestion:
                    args += ["--congestion", congestion]
                _start_traffic_daemon(name, f"traffic on {name}", *args)
                pid = sender_pid(paths, name)
            started[name] = pid
    return started


def traffic_stop() -> None:
    """Stop every traffic process of the lab: senders, the sink, foreground transfers."""
    require_root()
    paths = LabPaths(lab_dir())
    kill(traffic_pids())
    if paths.traffic.is_dir():
        for pidfile in paths.traffic.glob("*.pid"):
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()
        with contextlib.suppress(FileNotFoundError):
            (paths.traffic / "sink.expires").unlink()


def transfer(host, seconds: float = 3.0, congestion: str | None = None) -> dict:
    """One bounded foreground transfer from `host` to the sink on a new connection
    (setsockopt TCP_CONGESTION first if `congestion` is given). Starts the sink if needed.
    Returns {"bytes": sent, "seconds": took, "congestion": the control the socket used}."""
    require_root()
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
            not 0 < seconds <= 600:
        raise LabFailed(f"seconds must be in (0, 600], not {seconds!r}")
    paths = LabPaths(lab_dir())
    with locked(paths, create=False):
        state = _lab_state_or_fail(paths)
        name = host_name(host, state)
        subnet = ipaddress.IPv4Network(state["subnet"])
        if not sink_pid(paths):
            _ensure_sink(paths, subnet, seconds + 60)
    args = ["send", "--once", "--seconds", seconds, "--to", sink_address(subnet),
            "--port", TRAFFIC_PORT]
    if congestion:
        args += ["--congestion", congestion]
    proc = run(_traffic_cmd(name, *args), timeout=seconds + 30, check=False)
    try:
        if proc.returncode == 0:
            return json.loads(proc.stdout)
    except ValueError:
        pass
    detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    raise LabFailed(f"transfer from {name} failed: {detail.removeprefix('labtraffic: ')}")


def run_transfer(host, seconds: float = 3.0, congestion: str | None = None) -> int:
    """transfer(...)["bytes"]: bytes sent by one bounded transfer from `host`."""
    return transfer(host, seconds, congestion)["bytes"]


if __name__ == "__main__":
    sys.exit(main())
