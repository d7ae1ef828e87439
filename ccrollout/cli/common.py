"""What the commands share: choosing hosts, reaching them, the journal, the runner, printing results."""

import json
import sys

from .. import errors
from ..errors import UserError


def select_hosts(inventory, pattern: str, limit: str | None):
    hosts = inventory.select(pattern)
    if limit:
        allowed = {host.name for host in inventory.select(limit)}
        hosts = [host for host in hosts if host.name in allowed]
    return hosts


def reachable(hosts) -> dict:
    """How each of HOSTS is reached (fleet.Target by name), checked before any host is: every
    problem is an InvalidInput; each connection variable not honoured is a warning, once."""
    from ..fleet import check_targets
    from .verbosity import warning
    return check_targets(hosts, warn=warning)


def command_timeouts(args):
    from ..fleet import Timeouts
    if not 0 < args.timeout <= 3600 or not 0 < args.command_timeout <= 86400:
        raise UserError("--timeout must be from 0 to 3600 seconds and --command-timeout up to a day",
                        errors.EXIT_USAGE)
    return Timeouts(connect=args.timeout, command=args.command_timeout)


def make_runner(args, hosts, journal, preflight_all: bool = False):
    from ..rollout.runner import Runner
    if args.forks < 1:
        raise UserError("--forks must be 1 or more", errors.EXIT_USAGE)
    return Runner(hosts, journal, forks=args.forks, progress=progress(args), timeouts=command_timeouts(args),
                  preflight_all=preflight_all)


def open_journal(path, access_name: str):
    """The journal, opened for reading ("read"), for writing one that exists ("write"), or
    made when missing ("create"); writable ones are proven so before any host is reached."""
    from ..journal import Access, Journal
    return Journal(path, Access(access_name))


def call_each(args, actions: list[dict], on_progress=None, hosts=None) -> dict:
    """One batch of read-only ACTIONS on HOSTS, by default every host of args.pattern (and
    --limit); ON_PROGRESS(host, report) gets what long operations report as they go."""
    from .. import fleet
    from ..inventory import load_inventory
    if hosts is None:
        hosts = select_hosts(load_inventory(args.inventory), args.pattern, args.limit)
    if args.forks < 1:
        raise UserError("--forks must be 1 or more", errors.EXIT_USAGE)
    timeouts = command_timeouts(args)
    sessions = {name: fleet.connect(target, timeouts) for name, target in reachable(hosts).items()}
    try:
        def call(session):
            report = on_progress and (lambda progress: on_progress(session.target.name, progress))
            return session.call(actions, on_progress=report)
        return fleet.fan_out(sessions, call, args.forks)
    finally:
        for session in sessions.values():
            session.close()


def progress(args):
    if getattr(args, "json", False):
        return lambda text: print(text, file=sys.stderr, flush=True)
    return lambda text: print(text, flush=True)


def report(args, result) -> None:
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print_summary(result)


def print_summary(result) -> None:
    print(f"\n{result.status}: {result.message}")
    phases = [phase for phase in ("gather", "change", "rollback")
              if any(phase in report.phases for report in result.hosts.values())]
    print(f"{'host':<12} {'status':<12} " + " ".join(f"{phase:>10}" for phase in phases))
    for name, report in result.hosts.items():
        times = " ".join(f"{report.phases[p]:>9.3f}s" if p in report.phases else f"{'-':>10}" for p in phases)
        print(f"{name:<12} {report.status:<12} {times}")
