"""Commands that read hosts: facts, trace, vmlinux, inventory and status."""

import json
import shlex
import sys
import threading

from .. import errors
from ..errors import InvalidInput, UserError
from ..host import protocol
from .common import call_each, reachable, select_hosts


def cmd_facts(args) -> int:
    outcomes = call_each(args, [protocol.action("facts", tracer=True), protocol.action("counters")])
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
    from .. import units
    try:
        seconds, interval = units.parse_duration(args.duration), units.parse_duration(args.interval)
    except ValueError as exc:
        raise UserError(f"trace: {exc}", errors.EXIT_USAGE) from None
    if not 0 < seconds <= 3600 or not 0 < interval <= min(seconds, 60) or not 0 <= args.top <= 100:
        raise UserError("trace: --duration must be up to 1h, --interval up to 60s and no longer than "
                        "--duration, --top from 0 to 100", errors.EXIT_USAGE)
    action = protocol.action("trace", seconds=seconds, interval=interval, top=args.top)
    live = None if args.json else _show_trace_progress(threading.Lock())
    outcomes = call_each(args, [action], on_progress=live)
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
    from ..host.osutil import write_atomically
    from ..inventory import load_inventory
    hosts = select_hosts(load_inventory(args.inventory), args.host, args.limit)
    if len(hosts) != 1:
        raise InvalidInput(f"{args.host!r} selects {len(hosts)} hosts; vmlinux needs exactly one "
                           "(vmlinux.h describes one kernel)")
    (outcome,) = call_each(args, [protocol.action("vmlinux")], hosts=hosts).values()
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
    from ..inventory import load_inventory
    inventory = load_inventory(args.inventory)
    reachable(inventory.hosts.values())
    if args.list:
        if args.limit:
            raise InvalidInput("--limit goes with --hosts, not --list")
        from .. import jsontext
        print(jsontext.dumps(inventory.to_ansible_list(export=args.export)))  # whole, or nothing
        return errors.EXIT_OK
    for host in select_hosts(inventory, args.hosts, args.limit):
        print(host.name)
    return errors.EXIT_OK


def cmd_status(args) -> int:
    outcomes = call_each(args, [protocol.action("drift")])
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
