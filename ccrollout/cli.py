"""The command line: parse, call, print. Logic lives in the modules it calls."""

import argparse
import dataclasses
import json
import os
import shlex
import sys
import threading
import traceback

from . import errors
from .errors import InvalidInput, UserError
from .host import protocol
from .status import ACTIVE, RolloutStatus

EXIT_CODES = """exit codes:
  0  success            1  a canary failed; changed hosts were rolled back
  2  bad command line   3  invalid plan or inventory
  4  build failed       5  a host refused or was unreachable; changed hosts were rolled back
  6  hosts need attention (rollback incomplete, the plan said hold, or status found drift)
  7  the lab could not be set up or torn down
  70 a bug in ccrollout (CCROLLOUT_DEBUG=1 shows its traceback)   130  interrupted"""


def _parser() -> argparse.ArgumentParser:
    from .fleet import Timeouts
    fleet_timeouts = Timeouts()
    parser = argparse.ArgumentParser(
        prog="ccrollout", description="Roll BPF TCP congestion controls onto a fleet in canary stages.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def fleet_options(sub, inventory_required=True):
        sub.add_argument("-i", "--inventory", action="append", required=inventory_required, default=None,
                         metavar="INVENTORY", help="Ansible inventory file or directory (repeatable)")
        sub.add_argument("-l", "--limit", metavar="PATTERN", help="only hosts that also match PATTERN")
        sub.add_argument("-f", "--forks", type=int, default=5,
                         help="hosts reached at once, for every step of the command (default 5)")
        sub.add_argument("-T", "--timeout", type=float, default=fleet_timeouts.connect, metavar="SECONDS",
                         help=f"SSH connection timeout (default {fleet_timeouts.connect:g})")
        sub.add_argument("--command-timeout", type=float, default=fleet_timeouts.command, metavar="SECONDS",
                         help="how long a host may stay silent while it works on a request "
                              f"(default {fleet_timeouts.command:g})")
        sub.add_argument("--journal", metavar="PATH", help="the rollout journal (SQLite)")
        sub.add_argument("--json", action="store_true", help="print the result as JSON")

    apply = commands.add_parser("apply", help="roll a plan out in canary stages")
    fleet_options(apply)
    apply.add_argument("--check", action="store_true",
                       help="say which hosts would change, and change nothing")
    apply.add_argument("--diff", action="store_true", help="with --check: say what would change on each")
    apply.add_argument("--preflight", choices=("stage", "all"), default="stage",
                       help="read the hosts' facts as each stage begins (stage, the default), or every "
                            "host's before the first change (all)")
    apply.add_argument("plan", metavar="PLAN")

    rollback = commands.add_parser("rollback", help="undo a rollout (the last one by default)")
    fleet_options(rollback)
    rollback.add_argument("rollout", nargs="?", metavar="ROLLOUT")
    rollback.add_argument("--from-hosts", action="store_true",
                          help="undo what each host's own record says ccrollout changed there "
                               "(when the journal is lost); takes no ROLLOUT")

    resume = commands.add_parser("resume", help="carry on a rollout whose controller died")
    fleet_options(resume)
    resume.add_argument("rollout", nargs="?", metavar="ROLLOUT")

    for decision, text in (("promote", "let a paused rollout go on to its next stage"),
                           ("abort", "roll back a paused rollout")):
        gate = commands.add_parser(decision, help=text)
        gate.add_argument("--journal", metavar="PATH", help="the rollout journal (SQLite)")
        gate.add_argument("rollout", nargs="?", metavar="ROLLOUT")

    check = commands.add_parser("check", help="validate a plan without touching any host")
    check.add_argument("-i", "--inventory", action="append", metavar="INVENTORY")
    check.add_argument("plan", metavar="PLAN")

    facts = commands.add_parser("facts", help="what each host has: kernel, controls, default, counters")
    fleet_options(facts)
    facts.add_argument("pattern", nargs="?", default="all", metavar="PATTERN")

    trace = commands.add_parser("trace", help="live: which connections retransmit, on each host, "
                                "under which congestion control (bcc)")
    fleet_options(trace)
    trace.add_argument("pattern", nargs="?", default="all", metavar="PATTERN")
    trace.add_argument("--duration", default="10s", help="how long to trace (default 10s); it ends by itself")
    trace.add_argument("--interval", default="2s", help="how often to report (default 2s)")
    trace.add_argument("--top", type=int, default=5, help="connections listed per host (default 5)")

    vmlinux = commands.add_parser("vmlinux", help="write a vmlinux.h of a host's kernel (its BTF, dumped as C "
                                  "by bpftool on the host) for sources to include")
    fleet_options(vmlinux)
    vmlinux.add_argument("host", metavar="HOST", help="the host (a pattern that selects exactly one)")
    vmlinux.add_argument("-o", "--output", default="vmlinux.h", metavar="FILE",
                         help="where to write it (default ./vmlinux.h; - for stdout)")

    inventory = commands.add_parser("inventory", help="show an inventory as Ansible reads it")
    inventory.add_argument("-i", "--inventory", action="append", required=True, metavar="INVENTORY",
                           help="Ansible inventory file or directory (repeatable)")
    inventory.add_argument("-l", "--limit", metavar="PATTERN", help="only hosts that also match PATTERN")
    shown = inventory.add_mutually_exclusive_group(required=True)
    shown.add_argument("--list", action="store_true", help="JSON as `ansible-inventory --list` prints it")
    shown.add_argument("--hosts", metavar="PATTERN", help="the hosts PATTERN matches, one a line")
    inventory.add_argument("--export", action="store_true",
                           help="with --list: each group's and host's own variables, as --export")

    status = commands.add_parser("status", help="each host against what ccrollout set there: "
                                 "in step, drifted or unreachable")
    fleet_options(status)
    status.add_argument("pattern", nargs="?", default="all", metavar="PATTERN")

    history = commands.add_parser("history", help="list past rollouts")
    history.add_argument("--journal", metavar="PATH")
    history.add_argument("--json", action="store_true")

    lab = commands.add_parser("lab", help="the local lab fleet (network namespaces with sshd)")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")
    up = lab_commands.add_parser("up", help="create (or complete) the lab")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--behind-jump", action="append", default=[], metavar="HOST",
                    help="a host (lab2...) that refuses SSH from this machine: reached through lab1 only")
    lab_commands.add_parser("down", help="remove every trace of the lab")
    lab_commands.add_parser("status", help="what of the lab is up")
    lab_commands.add_parser("inventory", help="print the path of the lab's inventory")
    traffic = lab_commands.add_parser("traffic", help="background bulk traffic to the sink")
    traffic.add_argument("action", choices=("start", "stop"))
    traffic.add_argument("hosts", nargs="*", metavar="HOST")
    impair = lab_commands.add_parser("impair", help="set a host's bottleneck, loss and CE marking")
    impair.add_argument("host")
    impair.add_argument("--rate", help="bottleneck rate, e.g. 50mbit")
    impair.add_argument("--loss", help="share of bulk packets dropped, e.g. 2%%")
    impair.add_argument("--ce", help="share of ECN-capable bulk packets marked CE, e.g. 10%%")
    impair.add_argument("--clear", action="store_true", help="remove loss and CE marking")
    return parser


def _select_hosts(inventory, pattern: str, limit: str | None):
    hosts = inventory.select(pattern)
    if limit:
        allowed = {host.name for host in inventory.select(limit)}
        hosts = [host for host in hosts if host.name in allowed]
    return hosts


def _reachable(hosts) -> dict:
    """How each of HOSTS is reached (fleet.Target by name), checked before any host is: every
    problem is an InvalidInput; each connection variable not honoured is a warning, once."""
    from .fleet import check_targets
    return check_targets(hosts, warn=lambda warning: print(f"ccrollout: warning: {warning}", file=sys.stderr))


def _timeouts(args):
    from .fleet import Timeouts
    if not 0 < args.timeout <= 3600 or not 0 < args.command_timeout <= 86400:
        raise UserError("--timeout must be from 0 to 3600 seconds and --command-timeout up to a day",
                        errors.EXIT_USAGE)
    return Timeouts(connect=args.timeout, command=args.command_timeout)


def _runner(args, hosts, journal, preflight_all: bool = False):
    from .rollout.runner import Runner
    if args.forks < 1:
        raise UserError("--forks must be 1 or more", errors.EXIT_USAGE)
    return Runner(hosts, journal, forks=args.forks, progress=_progress(args), timeouts=_timeouts(args),
                  preflight_all=preflight_all)


def _journal(path, access_name: str):
    """The journal, opened for reading ("read"), for writing one that exists ("write"), or
    made when missing ("create"); writable ones are proven so before any host is reached."""
    from .journal import Access, Journal
    return Journal(path, Access(access_name))


def _print_summary(result) -> None:
    print(f"\n{result.status}: {result.message}")
    phases = [phase for phase in ("gather", "change", "rollback")
              if any(phase in report.phases for report in result.hosts.values())]
    print(f"{'host':<12} {'status':<12} " + " ".join(f"{phase:>10}" for phase in phases))
    for name, report in result.hosts.items():
        times = " ".join(f"{report.phases[p]:>9.3f}s" if p in report.phases else f"{'-':>10}" for p in phases)
        print(f"{name:<12} {report.status:<12} {times}")


def cmd_apply(args) -> int:
    from .inventory import load_inventory
    from .plan import check_plan_against_inventory, load_plan
    plan = load_plan(args.plan)
    inventory = load_inventory(args.inventory)
    check_plan_against_inventory(plan, inventory)
    selected = {}
    for rollout in plan.rollouts:
        selected[rollout.name] = _select_hosts(inventory, rollout.hosts, args.limit)
        if not selected[rollout.name]:
            raise InvalidInput(f"rollout {rollout.name}: no host matches {rollout.hosts!r}"
                               + (f" within --limit {args.limit!r}" if args.limit else ""))
    _reachable({host.name: host for hosts in selected.values() for host in hosts}.values())
    journal = None if args.check else _journal(args.journal, "create")  # check mode records nothing
    exit_code = errors.EXIT_OK
    for rollout in plan.rollouts:
        hosts = selected[rollout.name]
        with _runner(args, hosts, journal, preflight_all=args.preflight == "all") as runner:
            result = runner.check(rollout, args.diff) if args.check else runner.apply(str(plan.path), rollout)
        _report(args, result)
        exit_code = result.exit_code
        if exit_code != errors.EXIT_OK:
            break
    return exit_code


def cmd_rollback(args) -> int:
    from .inventory import load_inventory
    inventory = load_inventory(args.inventory)
    _reachable(_select_hosts(inventory, "all", args.limit))
    if args.from_hosts:  # the way back when the journal is lost or damaged: it is not opened
        if args.rollout:
            raise UserError("rollback --from-hosts undoes every host's own record; it takes no ROLLOUT",
                            errors.EXIT_USAGE)
        return _rollback_from_hosts(args, inventory, None)
    journal = _journal(args.journal, "write")
    rollout_id = _named_rollout(journal, args.rollout)["id"]
    controller = journal.controller(rollout_id)
    if controller and controller[2] and controller[1] != os.getpid() and \
            journal.rollout(rollout_id)["status"] in ACTIVE:
        raise UserError(f"rollout {rollout_id} is still carried out by its controller (pid {controller[1]} on "
                        f"{controller[0]}): stop it, or `ccrollout abort {rollout_id}` when it is paused",
                        errors.EXIT_NEEDS_ATTENTION)
    hosts = _select_hosts(inventory, "all", args.limit)
    with _runner(args, hosts, journal) as runner:
        result = runner.rollback(rollout_id, {host.name for host in hosts} if args.limit else None)
    _report(args, result)
    return result.exit_code


def _named_rollout(journal, rollout_id: str | None) -> dict:
    rollout_id = rollout_id or journal.last_rollout()
    recorded = journal.rollout(rollout_id) if rollout_id else None
    if recorded is None:
        raise InvalidInput(f"no rollout {rollout_id!r} in the journal {journal.path}" if rollout_id
                           else f"the journal {journal.path} holds no rollout")
    return recorded


def cmd_gate(args) -> int:
    import getpass
    journal = _journal(args.journal, "read")  # nothing is written unless the gate can be passed
    recorded = _named_rollout(journal, args.rollout)
    if recorded["status"] != RolloutStatus.PAUSED:
        raise InvalidInput(f"rollout {recorded['id']} is {recorded['status']}, not paused")
    controller = journal.controller(recorded["id"])
    if controller and not controller[2]:
        raise UserError(f"rollout {recorded['id']} is paused but its controller (pid {controller[1]}) is gone: "
                        f"`ccrollout resume {recorded['id']}` or `ccrollout rollback {recorded['id']}`",
                        errors.EXIT_NEEDS_ATTENTION)
    journal.close()
    _journal(args.journal, "write").event(recorded["id"], None, args.command, {"by": getpass.getuser()})
    print(f"rollout {recorded['id']}: {args.command} sent; its controller "
          + ("goes on to the next stage" if args.command == "promote" else "rolls it back"))
    return errors.EXIT_OK


def cmd_resume(args) -> int:
    from .inventory import load_inventory
    from .journal import HostsLocked
    from .plan import load_plan
    journal = _journal(args.journal, "write")
    recorded = _named_rollout(journal, args.rollout)
    if recorded["status"] in (RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK):
        raise InvalidInput(f"rollout {recorded['id']} is {recorded['status']}: nothing to resume")
    controller = journal.controller(recorded["id"])
    if controller and controller[2]:
        raise HostsLocked(f"rollout {recorded['id']} still has its controller (pid {controller[1]} on "
                          f"{controller[0]})")
    plan = load_plan(recorded["plan"])
    rollout = next((r for r in plan.rollouts if r.name == recorded["rollout"]), None)
    if rollout is None:
        raise InvalidInput(f"{recorded['plan']} no longer has a rollout named {recorded['rollout']!r}")
    hosts = _select_hosts(load_inventory(args.inventory), rollout.hosts, args.limit)
    _reachable(hosts)
    with _runner(args, hosts, journal) as runner:
        result = runner.resume(recorded["id"], rollout)
    _report(args, result)
    return result.exit_code


def _rollback_from_hosts(args, inventory, journal) -> int:
    with _runner(args, _select_hosts(inventory, "all", args.limit), journal) as runner:
        result = runner.rollback_from_hosts()
    _report(args, result)
    return result.exit_code


def cmd_check(args) -> int:
    from .inventory import load_inventory
    from .plan import check_plan_against_inventory, load_plan
    plan = load_plan(args.plan)
    if args.inventory:
        inventory = load_inventory(args.inventory)
        _reachable(inventory.hosts.values())
        check_plan_against_inventory(plan, inventory)
    print(f"{args.plan}: ok ({len(plan.rollouts)} rollouts, {len(plan.algorithms)} algorithms)")
    return errors.EXIT_OK


def _call_each(args, actions: list[dict], on_progress=None, hosts=None) -> dict:
    """One batch of read-only ACTIONS on HOSTS, by default every host of args.pattern (and
    --limit); ON_PROGRESS(host, report) gets what long operations report as they go."""
    from . import fleet
    from .inventory import load_inventory
    if hosts is None:
        hosts = _select_hosts(load_inventory(args.inventory), args.pattern, args.limit)
    if args.forks < 1:
        raise UserError("--forks must be 1 or more", errors.EXIT_USAGE)
    timeouts = _timeouts(args)
    sessions = {name: fleet.connect(target, timeouts) for name, target in _reachable(hosts).items()}
    try:
        def call(session):
            report = on_progress and (lambda progress: on_progress(session.target.name, progress))
            return session.call(actions, on_progress=report)
        return fleet.fan_out(sessions, call, args.forks)
    finally:
        for session in sessions.values():
            session.close()


def cmd_facts(args) -> int:
    outcomes = _call_each(args, [protocol.action("facts", tracer=True), protocol.action("counters")])
    answer = {}
    for name, outcome in outcomes.items():
        if not outcome.ok:
            answer[name] = {"unreachable": outcome.error}
            continue
        facts = outcome.answers[0].facts or {}
        counters = (outcome.answers[1].counters or {}) if len(outcome.answers) > 1 else {}
        answer[name] = {**facts, "counters": {k: counters.get(k) for k in ("OutSegs", "RetransSegs")}}
    if args.json:
        json.dump(answer, sys.stdout, indent=2, sort_keys=True)
        print()
        return errors.EXIT_OK
    for name, facts in answer.items():
        if "unreachable" in facts:
            print(f"UNREACHABLE {facts['unreachable']}")
            continue
        print(f"{name}: kernel {facts['kernel']}, libbpf {facts.get('libbpf') or 'missing'}, "
              f"default {facts['default']}, ecn {facts.get('ecn')}, "
              f"available {' '.join(facts['available'])}")
        for control, managed in facts["managed"].items():
            print(f"  manages {control} {(managed['digest'] or '?')[:12]}: link {managed['link_id']}, "
                  f"{len(managed['users'])} namespaces on this kernel use it")
        for route in facts.get("routes", []):
            print(f"  route {route['prefix']} dev {route['dev']} table {route['table']}: congctl {route['congctl']}")
        for problem in facts.get("problems", []):
            print(f"  cannot take a BPF control: {problem}")
        boot = facts.get("boot") or {}
        if boot.get("units"):
            print(f"  at boot: {' and '.join(boot['units'])} restore {', '.join(boot['kept'])}")
        elif boot.get("commands"):
            print(f"  at boot: no unit; to restore {', '.join(boot['kept'])}, run "
                  + " then ".join(map(shlex.join, boot["commands"])))
        if "tracer" in facts:
            print(f"  tracer: {facts['tracer'].get('reason')}")
    return errors.EXIT_OK if all("unreachable" not in f for f in answer.values()) else errors.EXIT_HOST_FAILED


def _connection(entry: dict) -> str:
    return (f"{entry['saddr']}:{entry['sport']} > {entry['daddr']}:{entry['dport']} "
            f"{entry.get('congestion') or '?'} {entry['retransmits']}")


def _show_trace_progress(lock: threading.Lock):
    def show(host: str, progress: dict) -> None:
        if progress.get("event") == "started":
            line = f"{host}: tracing (ready in {progress['startup_seconds']}s)"
        else:
            controls = ", ".join(f"{name} {count}" for name, count in sorted(progress["by_congestion"].items()))
            line = (f"{host} +{progress['elapsed']:.1f}s: {progress['retransmits']} retransmits"
                    + (f" ({controls})" if controls else "")
                    + "".join(f"\n  {_connection(entry)}" for entry in progress["top"]))
        with lock:
            print(line, flush=True)
    return show


def cmd_trace(args) -> int:
    from . import units
    try:
        seconds, interval = units.parse_duration(args.duration), units.parse_duration(args.interval)
    except ValueError as exc:
        raise UserError(f"trace: {exc}", errors.EXIT_USAGE) from None
    if not 0 < seconds <= 3600 or not 0 < interval <= min(seconds, 60) or not 0 <= args.top <= 100:
        raise UserError("trace: --duration must be up to 1h, --interval up to 60s and no longer than "
                        "--duration, --top from 0 to 100", errors.EXIT_USAGE)
    action = protocol.action("trace", seconds=seconds, interval=interval, top=args.top)
    live = None if args.json else _show_trace_progress(threading.Lock())
    outcomes = _call_each(args, [action], on_progress=live)
    answer = {}
    for name, outcome in outcomes.items():
        if error := outcome.failure():
            answer[name] = {"error": error}
        else:
            answer[name] = dict(outcome.answer.fields)
    if args.json:
        json.dump(answer, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print()
        for name, host in answer.items():
            if "error" in host:
                print(f"{name}: FAILED {host['error']}")
                continue
            controls = ", ".join(f"{c} {n}" for c, n in sorted(host["by_congestion"].items())) or "none"
            print(f"{name}: {host['retransmits']} retransmits in {host['seconds']:.1f}s ({controls}); "
                  f"{host['unattributed']} elsewhere on this kernel")
            for entry in host["top"]:
                print(f"  {_connection(entry)}")
    return errors.EXIT_HOST_FAILED if any("error" in host for host in answer.values()) else errors.EXIT_OK


def cmd_vmlinux(args) -> int:
    from .host.osutil import write_atomically
    from .inventory import load_inventory
    hosts = _select_hosts(load_inventory(args.inventory), args.host, args.limit)
    if len(hosts) != 1:
        raise InvalidInput(f"{args.host!r} selects {len(hosts)} hosts; vmlinux needs exactly one "
                           "(vmlinux.h describes one kernel)")
    (outcome,) = _call_each(args, [protocol.action("vmlinux")], hosts=hosts).values()
    if error := outcome.failure():
        print(f"ccrollout: error: {error}", file=sys.stderr)
        return errors.EXIT_HOST_FAILED
    text = outcome.answer.text
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text, mode=0o644)
    print(f"{hosts[0].name}: {'wrote ' + args.output if args.output != '-' else 'printed'} vmlinux.h "
          f"({len(text)} bytes) of kernel {outcome.answer.kernel}", file=sys.stderr)
    return errors.EXIT_OK


def cmd_inventory(args) -> int:
    from .inventory import load_inventory
    inventory = load_inventory(args.inventory)
    _reachable(inventory.hosts.values())
    if args.list:
        if args.limit:
            raise InvalidInput("--limit goes with --hosts, not --list")
        from . import jsontext
        print(jsontext.dumps(inventory.to_ansible_list(export=args.export)))  # whole, or nothing
        return errors.EXIT_OK
    for host in _select_hosts(inventory, args.hosts, args.limit):
        print(host.name)
    return errors.EXIT_OK


def cmd_status(args) -> int:
    outcomes = _call_each(args, [protocol.action("drift")])
    answer = {}
    for name, outcome in outcomes.items():
        if error := outcome.failure():
            answer[name] = {"state": "unreachable", "reasons": [error]}
        else:
            drift = outcome.answer.drift
            answer[name] = {"state": "drifted" if drift else "in step", "reasons": drift,
                            "managed": outcome.answer.managed, "restored": outcome.answer.restored}
    if args.json:
        json.dump(answer, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        for name, host in answer.items():
            managed = ", ".join(host.get("managed", [])) or "nothing"
            print(f"{name}: {host['state']}" + (f" (manages {managed})" if "managed" in host else ""))
            for reason in host["reasons"]:
                print(f"  {reason}")
            if host.get("restored"):
                print("  " + _restored_line(host["restored"]))
    states = {host["state"] for host in answer.values()}
    if "unreachable" in states:
        return errors.EXIT_HOST_FAILED
    return errors.EXIT_NEEDS_ATTENTION if "drifted" in states else errors.EXIT_OK


def _restored_line(restored: dict) -> str:
    import time
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(restored["at"]))
    line = (f"restored at boot {when} ({'this boot' if restored.get('this_boot') else 'an earlier boot'}): "
            f"{', '.join(restored['controls']) or 'nothing'}")
    return line + "".join(f"; {problem}" for problem in restored.get("problems", []))


def cmd_history(args) -> int:
    from .journal import default_path
    if not args.journal and not os.path.lexists(default_path()):  # nothing recorded here yet
        if args.json:
            print("[]")
        return errors.EXIT_OK
    journal = _journal(args.journal, "read")
    rollouts = journal.rollouts()
    if args.json:
        for rollout in rollouts:
            rollout["changes"] = [dataclasses.asdict(change) for change in journal.changes(rollout["id"])]
            rollout["verdicts"] = [e["data"] for e in journal.events(rollout["id"]) if e["kind"] == "verdict"]
        from . import jsontext
        print(jsontext.dumps(rollouts, indent=2))  # strict JSON (a p-value may be NaN), whole
        return errors.EXIT_OK
    lines = []  # all read (and checked) before the first is printed
    for rollout in rollouts:
        lines.append(f"{rollout['id']}  {rollout['status']:<12} {rollout['algorithm']:<16} {rollout['plan']}")
        for event in journal.events(rollout["id"]):
            if event["kind"] != "verdict":
                continue
            verdict = event["data"]
            figures = ", ".join(f"{host} {f['retransmit_ratio'] * 100:.2f}% of {f['sent']}"
                                for host, f in verdict.get("figures", {}).items())
            lines.append(f"    stage {verdict['stage']}: {verdict['outcome']:<12} "
                         f"{figures or ', '.join(verdict['hosts'])}")
    if lines:
        print("\n".join(lines))
    return errors.EXIT_OK


def cmd_lab(args) -> int:
    from . import lab
    if args.lab_command == "up":
        print(lab.up(hosts=args.hosts, behind_jump=args.behind_jump))
    elif args.lab_command == "down":
        lab.down()
    elif args.lab_command == "status":
        json.dump(lab.status(), sys.stdout, indent=2, sort_keys=True, default=str)
        print()
    elif args.lab_command == "inventory":
        print(lab.inventory_path())
    elif args.lab_command == "traffic":
        if args.action == "start":
            lab.traffic_start(args.hosts or None)
        else:
            lab.traffic_stop()
    elif args.lab_command == "impair":
        lab.impair(args.host, rate=args.rate, loss=args.loss, ce=args.ce, clear=args.clear)
    return errors.EXIT_OK


def _progress(args):
    if getattr(args, "json", False):
        return lambda text: print(text, file=sys.stderr, flush=True)
    return lambda text: print(text, flush=True)


def _report(args, result) -> None:
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        _print_summary(result)


COMMANDS = {"apply": cmd_apply, "rollback": cmd_rollback, "check": cmd_check, "facts": cmd_facts,
            "status": cmd_status, "trace": cmd_trace, "resume": cmd_resume, "promote": cmd_gate,
            "abort": cmd_gate,
            "inventory": cmd_inventory, "history": cmd_history, "lab": cmd_lab, "vmlinux": cmd_vmlinux}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"ccrollout: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # the reader went away (e.g. `| head`): nothing left to say
        sys.stderr.close()
        return errors.EXIT_OK
    except KeyboardInterrupt:
        print("ccrollout: interrupted", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, and an exit code no canary verdict uses
        print(f"ccrollout: internal error, a bug in ccrollout: {_describe_bug(exc)}", file=sys.stderr)
        if os.environ.get("CCROLLOUT_DEBUG"):
            traceback.print_exc()
        return errors.EXIT_SOFTWARE


def _describe_bug(exc: BaseException) -> str:
    """``ValueError: text (at plan.py:12 in build)``: what, and where it was raised."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:300] + "..."
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {text}{where}"


if __name__ == "__main__":
    sys.exit(main())
