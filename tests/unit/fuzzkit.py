"""The fuzz suite's tools: a command-line worker under resource limits, the checks every
outcome must pass, and a tally of what a run saw (for the README's figures).

FUZZ_EXAMPLES sets the examples per target (CI keeps a few dozen); FUZZ_REPORT names a
JSON file that receives the tally at the end of the session.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fuzzworker.py")
MEMORY_LIMIT = 1 << 30      # RLIMIT_AS of the worker: 1 GiB
SECONDS_LIMIT = 20.0        # wall time of one command, generous for a loaded CI machine
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
DOCUMENTED_EXITS = {0, 1, 2, 3, 4, 5, 6, 7, 130}  # README's table; 70 is a bug, so never expected


@dataclasses.dataclass
class Outcome:
    argv: list
    code: object = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    peak_kib: int = 0
    stdout_size: int = 0
    stderr_size: int = 0
    failure: str = ""  # the worker timed out or died


TALLY: dict[str, dict] = collections.defaultdict(lambda: {"commands": 0, "exits": collections.Counter(),
                                                          "max_seconds": 0.0, "max_peak_kib": 0})


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Worker:
    """One fuzzworker process, restarted when a command outlives SECONDS_LIMIT or kills it."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="ccrollout-fuzz-home-"))
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(self.home), "CCROLLOUT_HOME": str(self.home / "state"),
               "CCROLLOUT_CACHE": str(self.home / "cache")}
        env.pop("CCROLLOUT_DEBUG", None)
        self.errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, cwd=REPO, env=env, preexec_fn=_limits, text=True)

    def run(self, target: str, argv: list, cwd: Path | str = REPO) -> Outcome:
        if self.process is None or self.process.poll() is not None:
            self._start()
        argv = [str(arg) for arg in argv]
        self.process.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
        self.process.stdin.flush()
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=SECONDS_LIMIT)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            return self._died(argv, "timed out" if not ready else "died")
        outcome = Outcome(argv, **json.loads(line))
        tally = TALLY[target]
        tally["commands"] += 1
        tally["exits"][str(outcome.code)] += 1
        tally["max_seconds"] = max(tally["max_seconds"], outcome.seconds)
        tally["max_peak_kib"] = max(tally["max_peak_kib"], outcome.peak_kib)
        return outcome

    def _died(self, argv: list, how: str) -> Outcome:
        self.process.kill()
        self.process.wait()
        self.errors.seek(0)
        said = self.errors.read().decode(errors="replace")[-2000:]
        self.process = None
        return Outcome(argv, failure=f"the command {how} (limit {SECONDS_LIMIT:g}s, {MEMORY_LIMIT >> 20} MiB): {said}")

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        for path in sorted(self.home.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
        self.home.rmdir()


def check(outcome: Outcome, allowed: set[int] = DOCUMENTED_EXITS) -> None:
    """What every command must do, whatever it was given: finish within the limits, exit with a
    documented code, and say what was wrong in lines of its own, never a traceback."""
    context = f"{outcome.argv}\nstdout: {outcome.stdout[-1000:]}\nstderr: {outcome.stderr[-3000:]}"
    assert not outcome.failure, f"{outcome.failure}\n{context}"
    assert outcome.code in allowed, f"exit {outcome.code}, expected one of {sorted(allowed)}\n{context}"
    assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr, context
    if outcome.code == 0:  # a success may warn (check: a judge that cannot reach significance), no more
        assert all(line.startswith("ccrollout: warning: ") for line in outcome.stderr.splitlines()), context
    elif outcome.code == 3 or (outcome.stderr and outcome.code != 2):  # 2 is argparse's usage
        assert outcome.stderr.startswith("ccrollout: error: "), context
        assert outcome.stderr_size < 20_000, f"a message of {outcome.stderr_size} characters\n{context[:2000]}"


def strict_json(text: str):
    """TEXT parsed as JSON that any reader takes: no NaN or Infinity."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def write_tally(path: str) -> None:
    with open(path, "w") as handle:
        json.dump({target: {**figures, "exits": dict(figures["exits"])} for target, figures in TALLY.items()},
                  handle, indent=2, sort_keys=True)


def fifo(directory: Path, name: str) -> Path:
    path = directory / name
    os.mkfifo(path)
    return path


def wall_clock() -> float:
    return time.monotonic()
