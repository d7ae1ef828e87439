"""The tracer by hand: `python3 -m ccrollout.host.tracecli --seconds 10` on a host prints,
interval by interval, the retransmissions of this network namespace's connections with each
one's congestion control (`--json` for one object a line, `--status` to ask whether it can run).
Run it with the host's system python3, where bcc lives."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from .kernelheaders import DEFAULT_HEADER_CACHE
from .tracer import Interval, RetransTracer, TracerError, bcc_status


def _print_human(interval: Interval) -> None:
    print(f"{interval.seconds:6.2f} s  retransmits by control {interval.by_congestion()}  "
          f"unattributed {interval.unattributed}")
    for entry in interval.connections:
        connection = entry.connection
        print(f"    {connection.saddr}:{connection.sport} -> {connection.daddr}:{connection.dport}  "
              f"{entry.congestion or '?':<10} "
              f"{entry.retransmits:>7} retransmits  {entry.failed} failed  {'open' if entry.open else 'closed'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m ccrollout.host.tracecli",
                                     description="Count TCP retransmissions per connection of this network "
                                                 "namespace, with each connection's congestion control.")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to trace (default 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between reports (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--header-cache", type=Path, default=DEFAULT_HEADER_CACHE,
                        help=f"where a merged header tree is kept (default {DEFAULT_HEADER_CACHE})")
    parser.add_argument("--status", action="store_true", help="say whether the tracer can run here, and exit")
    args = parser.parse_args(argv)
    if args.status:
        status = bcc_status(args.header_cache)
        print(json.dumps(status) if args.json else status["reason"])
        return 0 if status["ready"] else 1
    if args.seconds <= 0 or args.interval <= 0:
        parser.error("--seconds and --interval must be positive")
    # A plain `kill` ends the run through the with-block, so the probe is detached on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    began = time.monotonic()
    try:
        with RetransTracer(args.header_cache) as tracer:
            started = {"event": "started", "startup_seconds": round(time.monotonic() - began, 3),
                       "kernel_source": str(tracer.kernel_source), "netns": os.stat("/proc/self/ns/net").st_ino}
            print(json.dumps(started) if args.json else f"tracing (ready in {started['startup_seconds']} s, "
                  f"headers from {tracer.kernel_source})", flush=True)
            deadline = time.monotonic() + args.seconds
            while (remaining := deadline - time.monotonic()) > 0:
                time.sleep(min(args.interval, remaining))
                interval = tracer.read_interval()
                if args.json:
                    print(json.dumps({"event": "interval", **interval.as_dict()}), flush=True)
                else:
                    _print_human(interval)
                    sys.stdout.flush()
    except TracerError as exc:
        print(f"ccrollout tracer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
