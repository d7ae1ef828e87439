"""The human view on a terminal: the steps as lines, and below them one live status line
that counts each timed phase down (elapsed, remaining) and says what the judge has so far.

rich redraws the status line a few times a second from the last events, so the clock moves
between samples too; the lines above it are the plain view's, printed once each.
"""

import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .. import events
from . import eventtext

REFRESHES_PER_SECOND = 4


class LiveView:
    def __init__(self, stream):
        self._stage: events.StageStarted | None = None
        self._phase: events.PhaseStarted | None = None
        self._phase_began = 0.0     # monotonic: the clock is this machine's, not the event's
        self._planned = 0.0
        self._interval: events.IntervalSampled | None = None
        self._paused: events.Paused | None = None
        self._started = False
        self.console = Console(file=stream, highlight=False, soft_wrap=False)
        self.live = Live(console=self.console, get_renderable=self._status, transient=True,
                         refresh_per_second=REFRESHES_PER_SECOND, redirect_stdout=False, redirect_stderr=False)

    def __call__(self, event: events.Event) -> None:
        if not self._started:
            self.live.start()
            self._started = True
        self._follow(event)
        self.live.refresh()  # the status line as this event leaves it, before the lines print above it
        for text in eventtext.line(event):
            self.live.console.print(Text(text))
        if isinstance(event, events.Finished):
            self.close()

    def _follow(self, event: events.Event) -> None:
        if isinstance(event, events.StageStarted):
            self._stage, self._phase, self._interval, self._paused = event, None, None, None
        elif isinstance(event, events.PhaseStarted):
            self._phase, self._interval = event, None
            self._phase_began, self._planned = time.monotonic(), event.seconds
        elif isinstance(event, events.IntervalSampled):
            self._interval, self._planned = event, event.seconds
        elif isinstance(event, events.BakeExtended):
            self._planned = event.seconds
        elif isinstance(event, (events.StageVerdict, events.HostChanged)):
            self._phase = None
        elif isinstance(event, events.Paused):
            self._paused = event
        elif isinstance(event, events.Decided):
            self._paused = None

    def _status(self) -> Text:
        where = f"stage {self._stage.stage}/{self._stage.stages}" if self._stage else "preparing"
        if self._paused is not None:
            return Text(f"{where}: paused, waiting for `ccrollout promote` or `ccrollout abort`", style="bold yellow",
                        no_wrap=True, overflow="ellipsis")
        if self._phase is None:
            return Text(f"{where}: working", style="dim", no_wrap=True, overflow="ellipsis")
        elapsed = min(time.monotonic() - self._phase_began, self._planned)
        text = (f"{where} {self._phase.phase}: {eventtext.seconds_text(elapsed)} of "
                f"{eventtext.seconds_text(self._planned)}, {eventtext.seconds_text(self._planned - elapsed)} left")
        if self._interval is not None:
            text += f"; {eventtext.judge_words(self._interval)}"
        elif self._phase.intervals:
            text += "; waiting for the first interval"
        return Text(text, style="bold", no_wrap=True, overflow="ellipsis")

    def close(self) -> None:
        if self._started:
            self.live.stop()
            self._started = False
