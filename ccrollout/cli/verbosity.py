"""-v, -vv, -vvv and --version.

What a command says at each level goes through the `ccrollout` logger hierarchy (the
modules log; the CLI only sets the level), so the renderers of a rollout's events print
the same whatever the verbosity. Records go to stderr, so --json output stays parseable.
"""

import logging
import sys

# Below DEBUG: what -vvv adds (SSH connection details, tracebacks of warnings).
DETAIL = 5
logging.addLevelName(DETAIL, "DETAIL")

LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}  # 3 and more: DETAIL

VERBOSITY_HELP = """verbosity (-v, before or after the command; to stderr):
  -v    each host's figures per interval, and the judge's comparisons (medians, p-values)
  -vv   also each message to and from hosts: operation names, sizes, timings
  -vvv  also SSH connection details (address, user, port, jump hosts, host keys)
        and the traceback of each warning"""

_handler: logging.Handler | None = None


def add_verbosity(parser, dest: str) -> None:
    parser.add_argument("-v", "--verbose", dest=dest, action="count", default=0,
                        help="say more: -v figures and the judge's comparisons, -vv messages to and "
                             "from hosts, -vvv SSH details and tracebacks of warnings")


def verbosity(args) -> int:
    """-v counted wherever it was given: before the command and after it."""
    return getattr(args, "verbose_before_command", 0) + getattr(args, "verbose", 0)


def level_for(count: int) -> int:
    return LEVELS.get(count, DETAIL) if count >= 0 else logging.WARNING


def set_up(count: int, stream=None) -> logging.Logger:
    """Point the `ccrollout` logger at STREAM (stderr) at the level COUNT asks for."""
    global _handler
    logger = logging.getLogger("ccrollout")
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = logging.StreamHandler(stream or sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(_handler)
    logger.setLevel(level_for(count))
    paramiko = logging.getLogger("paramiko")
    for handler in [h for h in paramiko.handlers if getattr(h, "ccrollout_verbosity", False)]:
        paramiko.removeHandler(handler)
    if count >= 3:  # paramiko's own account of the SSH handshake
        _handler.ccrollout_verbosity = True
        paramiko.setLevel(logging.DEBUG)
        paramiko.addHandler(_handler)
    return logger


def warning(text: str) -> None:
    """A warning for the operator: one line on stderr; at -vvv with where it was raised."""
    print(f"ccrollout: warning: {text}", file=sys.stderr)
    logger = logging.getLogger("ccrollout.warnings")
    if logger.isEnabledFor(DETAIL):
        logger.log(DETAIL, "where that warning came from:", stack_info=True, stacklevel=2)


def package_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("ccrollout")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        from .. import __version__
        return __version__
