"""Errors a user can cause, each with the exit code the CLI documents.

Anything raised as a UserError ends in one line on stderr and its exit code.
Anything else is a bug: the CLI names it in one line and exits EXIT_SOFTWARE,
so that a crash is never mistaken for a failed canary (exit 1).
"""

EXIT_OK = 0
EXIT_ROLLED_BACK = 1      # a canary failed its health check; changed hosts were rolled back
EXIT_USAGE = 2            # bad command line (argparse's own code)
EXIT_INVALID_INPUT = 3    # plan or inventory is invalid
EXIT_BUILD_FAILED = 4     # compiling or inspecting a BPF object failed
EXIT_HOST_FAILED = 5      # a host refused a change or was unreachable; changed hosts rolled back
EXIT_NEEDS_ATTENTION = 6  # a rollback or hold left hosts changed; see the summary
EXIT_LAB_FAILED = 7       # the local lab could not be set up or torn down
EXIT_SOFTWARE = 70        # a bug in ccrollout (sysexits.h EX_SOFTWARE); CCROLLOUT_DEBUG=1 shows the traceback
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error with a message meant for the operator and a documented exit code."""

    exit_code = EXIT_INVALID_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InvalidInput(UserError):
    exit_code = EXIT_INVALID_INPUT


class BuildFailed(UserError):
    exit_code = EXIT_BUILD_FAILED


class HostFailed(UserError):
    exit_code = EXIT_HOST_FAILED


class LabFailed(UserError):
    exit_code = EXIT_LAB_FAILED
