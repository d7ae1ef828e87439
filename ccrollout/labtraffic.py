"""Traffic for the local lab: a sink that reads and discards, and bulk senders.

Standard library only, so it runs under any python3 and by file path
(``python3 .../labtraffic.py send ...``) as well as ``python3 -m ccrollout.labtraffic``.
``ccrollout.lab`` starts these processes inside the lab's namespaces with
``ip netns exec``; run by hand it looks like this::

    ip netns exec ccrlab python3 -m ccrollout.labtraffic sink --bind 10.199.0.1
    ip netns exec lab1 python3 -m ccrollout.labtraffic send --to 10.199.0.1 --once --seconds 3

``send --once`` prints one JSON object: {"bytes": ..., "seconds": ..., "congestion": ...}.

Every process is bounded: it ends by itself after ``--lifetime`` seconds. Traffic only
goes to loopback or to the lab's subnet (``CCROLLOUT_LAB_SUBNET``, default 10.199.0.0/24).

Senders open a NEW connection for every burst: a congestion control becomes the default
only for sockets created after it was activated, so a long-lived connection would never
pick up a rollout.
"""

import argparse
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time

DEFAULT_SUBNET = "10.199.0.0/24"
TRAFFIC_PORT = 5300          # the sink's port; the lab's loss/CE rules match only this port
DEFAULT_LIFETIME = 900.0     # seconds a daemon lives at most
BURST_SECONDS = 2.0          # a background sender's connection sends this long ...
PAUSE_SECONDS = 0.3          # ... then closes and waits this long before the next one
MAX_LIFETIME = 24 * 3600.0
_CHUNK = 256 * 1024
_CONNECT_TIMEOUT = 3.0
_IO_TIMEOUT = 2.0


def lab_subnet() -> ipaddress.IPv4Network:
    """The lab's /24: CCROLLOUT_LAB_SUBNET or the default."""
    text = os.environ.get("CCROLLOUT_LAB_SUBNET", "").strip() or DEFAULT_SUBNET
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"CCROLLOUT_LAB_SUBNET={text!r} is not an IPv4 network: {exc}") from None
    if net.prefixlen != 24 or not net.is_private:
        raise ValueError(f"CCROLLOUT_LAB_SUBNET={text!r} must be a private /24")
    return net


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
        tmp = f"{pidfile}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(tmp, pidfile)
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
    except (OSError, ValueError) as exc:
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


if __name__ == "__main__":
    sys.exit(main())
