"""The human view without a terminal: plain lines that never flood a log.

A line per step (stage, phase, change, verdict); intervals only as a summary at most
every SUMMARY_SECONDS of a phase, so a 30-minute bake at 1 s intervals prints a few
dozen lines, not 1,800.
"""

from .. import events
from . import eventtext

SUMMARY_SECONDS = 30.0


class PlainView:
    def __init__(self, stream, summary_seconds: float = SUMMARY_SECONDS):
        self.stream, self.summary_seconds = stream, summary_seconds
        self._last_summary: float | None = None  # event time of the phase's start or last summary
        self._extended = False

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.PhaseStarted):
            self._last_summary, self._extended = event.time, False
        if isinstance(event, events.IntervalSampled):
            self._interval(event)
            return
        if isinstance(event, events.BakeExtended):
            if self._extended:  # once a bake: later extensions show in the summaries
                return
            self._extended = True
        self._write(eventtext.line(event))

    def _interval(self, event: events.IntervalSampled) -> None:
        if self._last_summary is None or event.time - self._last_summary >= self.summary_seconds:
            self._last_summary = event.time
            self._write([f"  {eventtext.interval_summary(event)}"])

    def _write(self, lines: list[str]) -> None:
        for text in lines:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass
