"""A rollout on a simulated fleet, rendered as `ccrollout apply` renders one: the CLI's
output (human view, --events, webhooks, the recap) over the runner, with no root.

    python tests/unit/simapply.py JOURNAL [--ratio R] [--bake S] [--stages N ...] [--events FILE]
        [--notify URL] [--on-inconclusive CHOICE] [--min-segments N] [--json]

Run as a child process by the tests, under a pseudo-terminal where the live view is wanted.
"""

import argparse
import hashlib
import sys
from pathlib import Path

from ccrollout import build
from ccrollout.cli.common import command_output, make_runner, report
from ccrollout.inventory import Host
from ccrollout.journal import Journal
from ccrollout.plan import Algorithm, Rollout, Scope, Stage
from ccrollout.rollout.judge import Limits
from ccrollout.rollout.runner import Runner
from ccrollout.schedule import Schedule
from ccrollout.simulation import SimulatedFleet


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("--ratio", type=float, default=0.012, help="the new control's retransmit ratio")
    parser.add_argument("--bake", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--min-segments", type=int, default=50)
    parser.add_argument("--on-inconclusive", default="fail")
    parser.add_argument("--events")
    parser.add_argument("--notify", action="append")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.forks, args.timeout, args.command_timeout = 4, 10.0, 60.0

    path = Path(args.journal).with_name("ccr_sim.bpf.o")
    path.write_bytes(b"not really an ELF object")
    built = build.BuiltObject("ccr_sim", path.with_suffix(".c"), path, hashlib.sha256(path.read_bytes()).hexdigest(),
                              1, (), True)
    Runner.build_control = lambda self, rollout: self.emit_built(built)
    schedule = Schedule(baseline=args.interval * 2, settle=0.1, bake=args.bake, interval=args.interval)
    limits = Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=args.min_segments,
                    on_inconclusive=args.on_inconclusive, min_intervals=2)
    rollout = Rollout(name="sim", algorithm=Algorithm("ccr_sim", Path("/dev/null")), hosts="all",
                      stages=tuple(Stage(count) for count in args.stages), schedule=schedule, limits=limits,
                      on_failure="rollback", scope=Scope(), control=Stage(1))
    names = [f"host-{index:02d}.a-rather-long-domain.example" for index in range(args.hosts)]
    fleet = SimulatedFleet(names, ratios={"reno": 0.01, "ccr_sim": args.ratio})
    hosts = [Host(name, {}, ("all",)) for name in names]
    with command_output(args) as bus:
        runner = make_runner(args, hosts, Journal(Path(args.journal)), bus=bus)
        runner._connect = fleet.connect
        with runner:
            result = runner.apply("plan.yaml", rollout)
        report(args, result)
    return result.exit_code


def _emit_built(self, built):
    from ccrollout import events
    self.emit(events.Built(algorithm=built.name, digest=built.digest, cached=built.cached))
    return built


Runner.emit_built = _emit_built

if __name__ == "__main__":
    sys.exit(main())
