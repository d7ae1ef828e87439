"""Events in words: what the live view and the plain lines say about each, in one place so
both say the same."""

from .. import events


def seconds_text(seconds: float) -> str:
    """0.5s, 12s, 4m05s, 1h02m: short enough for a status line."""
    if 0 < seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def ratio_text(figures: dict) -> str:
    sent = figures.get("sent", 0)
    return f"{figures.get('retransmitted', 0) / sent * 100:.2f}%" if sent else "no traffic"


def stage_title(event: events.StageStarted) -> str:
    return (f"stage {event.stage}/{event.stages}: {', '.join(event.hosts)}"
            + (f" (control: {', '.join(event.controls)})" if event.controls else ""))


def phase_title(event: events.PhaseStarted) -> str:
    text = f"{event.phase}: {seconds_text(event.seconds)}"
    return text + (f", {event.intervals} intervals" if event.intervals else "")


def judge_words(event: events.IntervalSampled) -> str:
    """What the judge has so far: still collecting, or how the stage looks."""
    if event.phase != "bake":
        return f"collecting {event.index} of {event.intervals} intervals"
    if event.index < event.needed:
        return f"collecting {event.index} of {event.needed} intervals"
    first = f": {event.reasons[0]}" if event.reasons else ""
    if event.outcome == "pass":
        return "passing so far"
    if event.outcome == "fail":
        return "failing" + first
    return "not decided yet" + first


def figures_words(event: events.IntervalSampled, hosts_shown: int = 4) -> str:
    """Each host's retransmitted share in the interval, the first few hosts."""
    shown = [f"{host} {ratio_text(figures)}" for host, figures in list(event.figures.items())[:hosts_shown]]
    more = len(event.figures) - hosts_shown
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def interval_summary(event: events.IntervalSampled) -> str:
    """One line for an interval: where the phase is, the judge so far, the figures."""
    left = max(0.0, event.seconds - event.elapsed)
    return (f"{event.phase}: {seconds_text(event.elapsed)} of {seconds_text(event.seconds)}, "
            f"{seconds_text(left)} left; {judge_words(event)}"
            + (f"; {figures_words(event)}" if event.figures else ""))


def line(event: events.Event) -> list[str]:
    """The lines an event prints as it comes (none for intervals: views pace those)."""
    indent = "  " if event.stage is not None else ""
    if isinstance(event, events.Built):
        return [f"built {event.algorithm} {event.digest[:12]}{' (cached)' if event.cached else ''}"]
    if isinstance(event, events.RolloutStarted):
        if event.resumed_after is not None:
            return [f"resuming rollout {event.rollout} after stage {event.resumed_after}"]
        return [f"rollout {event.rollout}: {event.algorithm} to {len(event.hosts)} hosts in {event.stages} stages"]
    if isinstance(event, events.StageStarted):
        return [stage_title(event)]
    if isinstance(event, events.PhaseStarted):
        return [f"  {phase_title(event)}"]
    if isinstance(event, events.HostChanged):
        return [f"  {event.host}: {event.status}" + (f" ({event.note})" if event.note else "")]
    if isinstance(event, events.BakeExtended):
        return [f"  bake: extended to {seconds_text(event.seconds)} while more data can decide"]
    if isinstance(event, events.StageVerdict):
        return [f"  verdict: {event.outcome}"] + [f"    {reason}" for reason in event.reasons]
    if isinstance(event, events.HostRolledBack):
        if not event.ok:
            return [f"{indent}{event.host}: rollback failed: {event.detail}"]
        return [f"{indent}{event.host}: {event.control + ' ' if event.control else ''}rolled back ({event.detail})"]
    if isinstance(event, events.Paused):
        why = " (the verdict is inconclusive)" if event.reason == "inconclusive" else ""
        return [f"  paused after stage {event.stage}{why}: `ccrollout promote {event.rollout}` goes on, "
                f"`ccrollout abort {event.rollout}` rolls back"]
    if isinstance(event, events.Decided):
        return [f"  {event.decision}d by {event.by}"]
    if isinstance(event, events.Note):
        return [indent + (f"{event.host}: " if event.host else "") + event.text]
    return []
