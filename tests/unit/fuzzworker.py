"""Runs ccrollout's command line in-process, one command per JSON line on stdin, under the
limits its parent set (tests/unit/fuzzkit.py): starting Python and importing ccrollout
for every generated example would cost more than the example.

Each line is {"argv": [...], "cwd": DIR}; each answer one JSON line with the exit code,
what the command printed, its wall time and the process's peak memory so far.
"""

import contextlib
import io
import json
import os
import resource
import sys
import time
import traceback

STDOUT_KEPT = 4 << 20  # characters sent back: enough for any --list the fuzz makes
STDERR_KEPT = 20_000


def main() -> None:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    from ccrollout import cli
    for line in sys.stdin:
        request = json.loads(line)
        os.chdir(request["cwd"])
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(request["argv"])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # what cli.main let through: the test reports it
                traceback.print_exc()
                code = "uncaught"
        answers.write(json.dumps({
            "code": code, "stdout": out.getvalue()[:STDOUT_KEPT], "stdout_size": len(out.getvalue()),
            "stderr": err.getvalue()[-STDERR_KEPT:], "stderr_size": len(err.getvalue()), "seconds": time.monotonic() - started,
            "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
