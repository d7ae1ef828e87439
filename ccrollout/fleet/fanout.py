"""Many hosts at once: one call per host, at most `forks` at a time, each host's outcome."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..host import protocol
from .agent import HostError


@dataclass
class Outcome:
    """What one host did in one call, and how long it took."""

    host: str
    answers: list = None  # protocol.Answer, one per action run
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answer(self) -> protocol.Answer:
        """The last action's answer: the one a single-action call is about."""
        return self.answers[-1]

    def failure(self) -> str | None:
        """Why this host's call failed (unreachable, or the first action the host side
        refused, with its log), or None when every action succeeded."""
        if not self.ok:
            return self.error
        for answer in self.answers:
            if not answer.ok:
                log = answer.log.strip()
                return f"{self.host}: {answer.error}" + ("\n    " + log.replace("\n", "\n    ") if log else "")
        return None


def fan_out(sessions: dict, work, forks: int) -> dict[str, Outcome]:
    """Run WORK(session) on every host, at most FORKS at a time; never raises for one host."""
    def one(name: str) -> Outcome:
        started = time.monotonic()
        try:
            answers = work(sessions[name])
            return Outcome(name, answers=answers, seconds=time.monotonic() - started)
        except HostError as exc:
            return Outcome(name, error=str(exc), seconds=time.monotonic() - started)
        except Exception as exc:  # one host's surprise must not abandon the others mid-change
            return Outcome(name, error=f"{name}: internal error: {exc!r}", seconds=time.monotonic() - started)
    if not sessions:
        return {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(forks, len(sessions))))
    try:
        return dict(zip(sessions, pool.map(one, sessions)))
    finally:
        # Not waiting: on Ctrl-C the caller closes the sessions, which is what ends the calls.
        pool.shutdown(wait=False, cancel_futures=True)
