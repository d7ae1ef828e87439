"""Commands about rollouts: apply, rollback, resume, promote/abort, check and history."""

import dataclasses
import os

from .. import errors
from ..errors import InvalidInput, UserError
from ..status import ACTIVE, RolloutStatus
from .common import command_output, make_runner, open_journal, reachable, report, select_hosts


def cmd_apply(args) -> int:
    from ..inventory import load_inventory
    from ..plan import check_plan_against_inventory, load_plan
    plan = load_plan(args.plan)
    inventory = load_inventory(args.inventory)
    check_plan_against_inventory(plan, inventory)
    selected = {}
    for rollout in plan.rollouts:
        selected[rollout.name] = select_hosts(inventory, rollout.hosts, args.limit)
        if not selected[rollout.name]:
            raise InvalidInput(f"rollout {rollout.name}: no host matches {rollout.hosts!r}"
                               + (f" within --limit {args.limit!r}" if args.limit else ""))
    reachable({host.name: host for hosts in selected.values() for host in hosts}.values())
    journal = None if args.check else open_journal(args.journal, "create")  # check mode records nothing
    exit_code = errors.EXIT_OK
    with command_output(args, () if args.check else plan.notify) as bus:
        for rollout in plan.rollouts:
            hosts = selected[rollout.name]
            with make_runner(args, hosts, journal, preflight_all=args.preflight == "all", bus=bus) as runner:
                result = runner.check(rollout, args.diff) if args.check else runner.apply(str(plan.path), rollout)
            report(args, result)
            exit_code = result.exit_code
            if exit_code != errors.EXIT_OK:
                break
    return exit_code


def cmd_rollback(args) -> int:
    from ..inventory import load_inventory
    inventory = load_inventory(args.inventory)
    reachable(select_hosts(inventory, "all", args.limit))
    if args.from_hosts:  # the way back when the journal is lost or damaged: it is not opened
        if args.rollout:
            raise UserError("rollback --from-hosts undoes every host's own record; it takes no ROLLOUT",
                            errors.EXIT_USAGE)
        return _rollback_from_hosts(args, inventory, None)
    journal = open_journal(args.journal, "write")
    rollout_id = named_rollout(journal, args.rollout)["id"]
    controller = journal.controller(rollout_id)
    if controller and controller[2] and controller[1] != os.getpid() and \
            journal.rollout(rollout_id)["status"] in ACTIVE:
        raise UserError(f"rollout {rollout_id} is still carried out by its controller (pid {controller[1]} on "
                        f"{controller[0]}): stop it, or `ccrollout abort {rollout_id}` when it is paused",
                        errors.EXIT_NEEDS_ATTENTION)
    hosts = select_hosts(inventory, "all", args.limit)
    with command_output(args) as bus, make_runner(args, hosts, journal, bus=bus) as runner:
        result = runner.rollback(rollout_id, {host.name for host in hosts} if args.limit else None)
    report(args, result)
    return result.exit_code


def named_rollout(journal, rollout_id: str | None) -> dict:
    rollout_id = rollout_id or journal.last_rollout()
    recorded = journal.rollout(rollout_id) if rollout_id else None
    if recorded is None:
        raise InvalidInput(f"no rollout {rollout_id!r} in the journal {journal.path}" if rollout_id
                           else f"the journal {journal.path} holds no rollout")
    return recorded


def cmd_gate(args) -> int:
    import getpass
    journal = open_journal(args.journal, "read")  # nothing is written unless the gate can be passed
    recorded = named_rollout(journal, args.rollout)
    if recorded["status"] != RolloutStatus.PAUSED:
        raise InvalidInput(f"rollout {recorded['id']} is {recorded['status']}, not paused")
    controller = journal.controller(recorded["id"])
    if controller and not controller[2]:
        raise UserError(f"rollout {recorded['id']} is paused but its controller (pid {controller[1]}) is gone: "
                        f"`ccrollout resume {recorded['id']}` or `ccrollout rollback {recorded['id']}`",
                        errors.EXIT_NEEDS_ATTENTION)
    journal.close()
    open_journal(args.journal, "write").event(recorded["id"], None, args.command, {"by": getpass.getuser()})
    print(f"rollout {recorded['id']}: {args.command} sent; its controller "
          + ("goes on to the next stage" if args.command == "promote" else "rolls it back"))
    return errors.EXIT_OK


def cmd_resume(args) -> int:
    from ..inventory import load_inventory
    from ..journal import HostsLocked
    from ..plan import load_plan
    journal = open_journal(args.journal, "write")
    recorded = named_rollout(journal, args.rollout)
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
    hosts = select_hosts(load_inventory(args.inventory), rollout.hosts, args.limit)
    reachable(hosts)
    with command_output(args, plan.notify) as bus, make_runner(args, hosts, journal, bus=bus) as runner:
        result = runner.resume(recorded["id"], rollout)
    report(args, result)
    return result.exit_code


def _rollback_from_hosts(args, inventory, journal) -> int:
    with command_output(args) as bus, \
            make_runner(args, select_hosts(inventory, "all", args.limit), journal, bus=bus) as runner:
        result = runner.rollback_from_hosts()
    report(args, result)
    return result.exit_code


def cmd_check(args) -> int:
    from ..inventory import load_inventory
    from ..plan import check_plan_against_inventory, load_plan
    from . import checkview
    from .verbosity import warning
    plan = load_plan(args.plan)
    selected = None
    if args.inventory:
        inventory = load_inventory(args.inventory)
        reachable(inventory.hosts.values())
        check_plan_against_inventory(plan, inventory)
        selected = {rollout.name: select_hosts(inventory, rollout.hosts, None) for rollout in plan.rollouts}
    print(f"{args.plan}: ok ({len(plan.rollouts)} rollouts, {len(plan.algorithms)} algorithms)")
    for rollout in plan.rollouts:  # a preview, and what would keep the judge from significance
        hosts = selected[rollout.name] if selected is not None else None
        for line in checkview.stage_lines(rollout, hosts) if hosts is not None else ():
            print(line)
        for text in checkview.warnings(rollout, hosts):
            warning(text)
    return errors.EXIT_OK


def cmd_history(args) -> int:
    from ..journal import default_path
    configured = getattr(getattr(args, "config", None), "journal", None)
    if (not args.journal or args.journal == configured) and not os.path.lexists(args.journal or default_path()):
        # nothing recorded here yet (a --journal typed on the command line must exist)
        if args.json:
            print("[]")
        return errors.EXIT_OK
    from .. import story
    journal = open_journal(args.journal, "read")
    rollouts = journal.rollouts()
    told = {}  # rollout id -> (its events, its story)
    for rollout in rollouts:
        events = journal.events(rollout["id"], story.STORY_KINDS)
        told[rollout["id"]] = events, story.tell(rollout, events)
    if args.json:
        for rollout in rollouts:
            events, tale = told[rollout["id"]]
            rollout.update(operator=tale.operator, ended=tale.ended, duration=tale.duration, story=tale.text)
            rollout["changes"] = [dataclasses.asdict(change) for change in journal.changes(rollout["id"])]
            rollout["verdicts"] = [e["data"] for e in events if e["kind"] == "verdict"]
        from .. import jsontext
        print(jsontext.dumps(rollouts, indent=2))  # strict JSON (a p-value may be NaN), whole
        return errors.EXIT_OK
    lines = [story.HEADER] if rollouts else []  # all read (and checked) before the first is printed
    for rollout in rollouts:
        events, tale = told[rollout["id"]]
        lines += [story.row(rollout, tale), f"    {tale.text}"]
        for event in events:
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
