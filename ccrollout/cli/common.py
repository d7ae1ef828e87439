"""What the commands share: choosing hosts, reaching them, the journal, the runner, printing results."""

import contextlib
import json
import os
import re
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


def make_runner(args, hosts, journal, preflight_all: bool = False, bus=None):
    from ..rollout.runner import Runner
    if args.forks < 1:
        raise UserError("--forks must be 1 or more", errors.EXIT_USAGE)
    if bus is None:
        from ..events import Bus
        bus = Bus([human_view(args)])
    return Runner(hosts, journal, forks=args.forks, bus=bus, timeouts=command_timeouts(args),
                  preflight_all=preflight_all)


def human_stream(args):
    """Where people read: standard error when standard output carries JSON (--json, --events -)."""
    return sys.stderr if getattr(args, "json", False) or getattr(args, "events", None) == "-" else sys.stdout


def human_view(args):
    """The live view on a terminal; plain, paced lines anywhere else."""
    stream = human_stream(args)
    if stream.isatty() and os.environ.get("TERM", "dumb") != "dumb":
        from .render_live import LiveView
        return LiveView(stream)
    from .render_plain import PlainView
    return PlainView(stream)


@contextlib.contextmanager
def command_output(args, notify=()):
    """The bus a command's runner emits on, with its renderers: the human view, --events and
    the webhooks (NOTIFY from the plan, the configured ones, and --notify). Each is closed at the end, the webhooks flushed."""
    from ..events import Bus
    from ..notify import Notifier
    from .render_events import EventLines
    if getattr(args, "json", False) and getattr(args, "events", None) == "-":
        raise UserError("--json and --events - would both write to standard output: give --events a file",
                        errors.EXIT_USAGE)
    configured = getattr(getattr(args, "config", None), "notify", ()) or ()  # ccrollout.cfg, CCROLLOUT_NOTIFY
    urls = list(dict.fromkeys([*notify, *configured, *(getattr(args, "notify", None) or [])]))
    for url in getattr(args, "notify", None) or []:  # the plan's were checked by its schema
        if not re.fullmatch(r"https?://\S{1,2000}", url):
            raise UserError(f"--notify {url!r}: not an http or https URL", errors.EXIT_USAGE)
    subscribers = [human_view(args)]
    if getattr(args, "events", None):
        subscribers.append(EventLines(args.events))
    if urls:
        subscribers.append(Notifier(urls))
    try:
        yield Bus(subscribers)
    finally:
        for subscriber in subscribers:
            subscriber.close()


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


def report(args, result) -> None:
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print_summary(result, human_stream(args))


def print_summary(result, stream=None) -> None:
    from .recap import recap_lines
    print("\n" + "\n".join(recap_lines(result)), file=stream or sys.stdout, flush=True)
