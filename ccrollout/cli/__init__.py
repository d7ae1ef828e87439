# PYTHON_ARGCOMPLETE_OK  (argcomplete's marker: this entry point answers shell completion)
"""The command line: parse, call, print. Logic lives in the modules it calls."""

import os
import sys
import traceback

from .. import config as configuration
from .. import errors
from ..errors import UserError
from . import completion, verbosity
from .configcmd import cmd_config
from .hostcmds import cmd_facts, cmd_inventory, cmd_status, cmd_trace, cmd_vmlinux
from .labcmd import cmd_lab
from .parser import EXIT_CODES, build_parser
from .reportcmd import cmd_report
from .rollouts import cmd_apply, cmd_check, cmd_gate, cmd_history, cmd_resume, cmd_rollback

__all__ = ["COMMANDS", "EXIT_CODES", "main"]


COMMANDS = {"apply": cmd_apply, "rollback": cmd_rollback, "check": cmd_check, "facts": cmd_facts,
            "status": cmd_status, "trace": cmd_trace, "resume": cmd_resume, "promote": cmd_gate,
            "abort": cmd_gate, "config": cmd_config,
            "inventory": cmd_inventory, "history": cmd_history, "lab": cmd_lab, "vmlinux": cmd_vmlinux,
            "report": cmd_report}


def main(argv=None) -> int:
    warnings, config_error = [], None
    try:
        config = configuration.load_for_this_process(warnings.append)
    except UserError as exc:  # said after parsing, so --help, --version and completion still work
        config, config_error = configuration.Config(), exc
    parser = build_parser(config)
    completion.autocomplete(parser)
    args = parser.parse_args(argv)
    for warning in warnings:
        verbosity.warning(warning)
    if config_error is not None:
        print(f"ccrollout: error: {config_error}", file=sys.stderr)
        return config_error.exit_code
    if getattr(args, "inventory", False) is None and getattr(args, "configured_inventory", None):
        args.inventory = list(args.configured_inventory)
    args.config = config
    verbosity.set_up(verbosity.verbosity(args))
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
        if os.environ.get("CCROLLOUT_DEBUG") or verbosity.verbosity(args) >= 3:
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
