"""The command line's grammar: every command, its options and their help."""

import argparse


EXIT_CODES = """exit codes:
  0  success            1  a canary failed; changed hosts were rolled back
  2  bad command line   3  invalid plan or inventory
  4  build failed       5  a host refused or was unreachable; changed hosts were rolled back
  6  hosts need attention (rollback incomplete, the plan said hold, or status found drift)
  7  the lab could not be set up or torn down
  70 a bug in ccrollout (CCROLLOUT_DEBUG=1 shows its traceback)   130  interrupted"""


def build_parser() -> argparse.ArgumentParser:
    from ..fleet import Timeouts
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

    def event_options(sub):
        sub.add_argument("--events", metavar="FILE",
                         help="write every event as a line of JSON to FILE (- for stdout; the shape is "
                              "ccrollout/schema/events.schema.json)")
        sub.add_argument("--notify", action="append", metavar="URL",
                         help="POST verdicts, rollbacks, pauses and the end as JSON to URL (repeatable; "
                              "added to the plan's notify)")

    apply = commands.add_parser("apply", help="roll a plan out in canary stages")
    fleet_options(apply)
    event_options(apply)
    apply.add_argument("--check", action="store_true",
                       help="say which hosts would change, and change nothing")
    apply.add_argument("--diff", action="store_true", help="with --check: say what would change on each")
    apply.add_argument("--preflight", choices=("stage", "all"), default="stage",
                       help="read the hosts' facts as each stage begins (stage, the default), or every "
                            "host's before the first change (all)")
    apply.add_argument("plan", metavar="PLAN")

    rollback = commands.add_parser("rollback", help="undo a rollout (the last one by default)")
    fleet_options(rollback)
    event_options(rollback)
    rollback.add_argument("rollout", nargs="?", metavar="ROLLOUT")
    rollback.add_argument("--from-hosts", action="store_true",
                          help="undo what each host's own record says ccrollout changed there "
                               "(when the journal is lost); takes no ROLLOUT")

    resume = commands.add_parser("resume", help="carry on a rollout whose controller died")
    fleet_options(resume)
    event_options(resume)
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
