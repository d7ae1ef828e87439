"""The command line's grammar: every command, its options and their help."""

import argparse
import sys


EXIT_CODES = """exit codes:
  0  success            1  a canary failed; changed hosts were rolled back
  2  bad command line   3  invalid plan or inventory
  4  build failed       5  a host refused or was unreachable; changed hosts were rolled back
  6  hosts need attention (rollback incomplete, the plan said hold, or status found drift)
  7  the lab could not be set up or torn down
  70 a bug in ccrollout (CCROLLOUT_DEBUG=1 or -vvv shows its traceback)   130  interrupted"""


class _VersionAction(argparse.Action):
    """argparse's --version, but the version is looked up only when asked: reading the
    installed package's metadata costs every other command 12 ms."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, help="show the version and exit"):
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .verbosity import package_version
        sys.stdout.write(f"{parser.prog} {package_version()}\n")
        parser.exit()


def build_parser(config=None) -> argparse.ArgumentParser:
    """The grammar, with the defaults of CONFIG (a config.Config: ccrollout.cfg and CCROLLOUT_*)."""
    from ..config import Config
    from .completion import host_patterns, plan_files
    from .verbosity import VERBOSITY_HELP, add_verbosity
    config = config or Config()
    parser = argparse.ArgumentParser(
        prog="ccrollout", description="Roll BPF TCP congestion controls onto a fleet in canary stages.",
        epilog=VERBOSITY_HELP + "\n\n" + EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    add_verbosity(parser, "verbose_before_command")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def fleet_options(sub, inventory_required=True):
        inventory_option(sub, inventory_required)
        sub.add_argument("-l", "--limit", metavar="PATTERN",
                         help="only hosts that also match PATTERN").completer = host_patterns
        sub.add_argument("-f", "--forks", type=int, default=config.forks,
                         help="hosts reached at once, for every step of the command (default %(default)s)")
        sub.add_argument("-T", "--timeout", type=float, default=config.timeout, metavar="SECONDS",
                         help="SSH connection timeout (default %(default)g)")
        sub.add_argument("--command-timeout", type=float, default=config.command_timeout, metavar="SECONDS",
                         help="how long a host may stay silent while it works on a request (default %(default)g)")
        journal_option(sub)
        sub.add_argument("--json", action="store_true", help="print the result as JSON")

    def inventory_option(sub, required=True):
        # The configured inventory is a default: -i on the command line replaces it (as in Ansible).
        sub.add_argument("-i", "--inventory", action="append", required=required and not config.inventory,
                         default=None, metavar="INVENTORY",
                         help="Ansible inventory file or directory (repeatable)"
                              + (f"; default {','.join(config.inventory)}" if config.inventory else ""))
        sub.set_defaults(configured_inventory=config.inventory)

    def journal_option(sub):
        sub.add_argument("--journal", metavar="PATH", default=config.journal,
                         help="the rollout journal (SQLite)" + (" (default %(default)s)" if config.journal else ""))

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
    apply.add_argument("plan", metavar="PLAN").completer = plan_files

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
        journal_option(gate)
        gate.add_argument("rollout", nargs="?", metavar="ROLLOUT")

    check = commands.add_parser("check", help="validate a plan without touching any host, warn of comparisons "
                                "the judge can never make significant; with -i, each stage's hosts and controls")
    inventory_option(check, required=False)
    check.add_argument("plan", metavar="PLAN").completer = plan_files

    facts = commands.add_parser("facts", help="what each host has: kernel, controls, default, counters")
    fleet_options(facts)
    facts.add_argument("pattern", nargs="?", default="all", metavar="PATTERN").completer = host_patterns

    trace = commands.add_parser("trace", help="live: which connections retransmit, on each host, "
                                "under which congestion control (bcc)")
    fleet_options(trace)
    trace.add_argument("pattern", nargs="?", default="all", metavar="PATTERN").completer = host_patterns
    trace.add_argument("--duration", default="10s", help="how long to trace (default 10s); it ends by itself. "
                       "A host holds one of --forks all that time: more hosts than forks are traced in turn")
    trace.add_argument("--interval", default="2s", help="how often to report (default 2s)")
    trace.add_argument("--top", type=int, default=5, help="connections listed per host (default 5)")

    vmlinux = commands.add_parser("vmlinux", help="write a vmlinux.h of a host's kernel (its BTF, dumped as C "
                                  "by bpftool on the host) for sources to include")
    fleet_options(vmlinux)
    vmlinux.add_argument("host", metavar="HOST",
                         help="the host (a pattern that selects exactly one)").completer = host_patterns
    vmlinux.add_argument("-o", "--output", default="vmlinux.h", metavar="FILE",
                         help="where to write it (default ./vmlinux.h; - for stdout)")

    inventory = commands.add_parser("inventory", help="show an inventory as Ansible reads it")
    inventory_option(inventory)
    inventory.add_argument("-l", "--limit", metavar="PATTERN",
                           help="only hosts that also match PATTERN").completer = host_patterns
    shown = inventory.add_mutually_exclusive_group(required=True)
    shown.add_argument("--list", action="store_true", help="JSON as `ansible-inventory --list` prints it")
    shown.add_argument("--hosts", metavar="PATTERN",
                       help="the hosts PATTERN matches, one a line").completer = host_patterns
    inventory.add_argument("--export", action="store_true",
                           help="with --list: each group's and host's own variables, as --export")

    status = commands.add_parser("status", help="each host against what ccrollout set there: "
                                 "in step, drifted or unreachable")
    fleet_options(status)
    status.add_argument("pattern", nargs="?", default="all", metavar="PATTERN").completer = host_patterns

    history = commands.add_parser("history", help="list past rollouts")
    journal_option(history)
    history.add_argument("--json", action="store_true")

    settings = commands.add_parser("config", help="the settings of ccrollout.cfg and CCROLLOUT_* in effect, "
                                   "and where each came from")
    settings.add_argument("--only-changed", action="store_true", help="only the settings not at their default")

    report = commands.add_parser("report", help="draw a rollout's stages: the canaries against their "
                                 "baseline and the control hosts, per metric, with the verdict")
    journal_option(report)
    report.add_argument("-o", "--output", metavar="FILE",
                        help="FILE.png (every stage in one image) or FILE.html (one page, the verdicts' "
                             "reasons too); default ./report-ROLLOUT.html")
    report.add_argument("rollout", nargs="?", metavar="ROLLOUT", help="the rollout (the last one by default)")

    lab = commands.add_parser("lab", help="the local lab fleet (network namespaces with sshd)")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")
    up = lab_commands.add_parser("up", help="create (or complete) the lab")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--behind-jump", action="append", default=[], metavar="HOST",
                    help="a host (lab2...) that refuses SSH from this machine: reached through lab1 only")
    up.add_argument("--no-monitoring", dest="monitoring", action="store_false",
                    help="no node_exporter per host and no Prometheus (they take CPU a large lab may need)")
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
    for sub in (*commands.choices.values(), *lab_commands.choices.values()):
        add_verbosity(sub, "verbose")
    return parser
