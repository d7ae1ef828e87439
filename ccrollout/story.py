"""What happened to a rollout, told from its journal: when it began and ended, who ran it,
and how it ended, so "completed, then rolled back by hand" reads apart from "failed a
canary and was rolled back". Pure: a rollouts row and its events in, words out."""

import time
from dataclasses import dataclass

from .status import RolloutStatus, StageOutcome

# The event kinds a story is told from (a rollout's interval events are not needed).
STORY_KINDS = ("started", "plan", "verdict", "paused", "promote", "abort", "finished")
FAILED_OUTCOMES = (StageOutcome.FAIL, StageOutcome.INCONCLUSIVE)


@dataclass(frozen=True)
class Story:
    started: float
    ended: float | None       # when the rollout itself ended (a later rollback by hand is told apart)
    operator: str | None      # user@machine that started it; None in journals from before it was kept
    stages: int | None        # as planned
    text: str

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else max(0.0, self.ended - self.started)


def tell(rollout: dict, events: list[dict]) -> Story:
    """The story of ROLLOUT (a journal rollouts row) from its EVENTS (oldest first)."""
    started = next((e for e in events if e["kind"] == "started"), None)
    plan = next((e["data"] for e in events if e["kind"] == "plan"), None)
    endings = [e for e in events if e["kind"] == "finished"]
    failed = next((e["data"] for e in events if e["kind"] == "verdict"
                   and e["data"]["outcome"] in FAILED_OUTCOMES), None)
    stages = len(plan["stages"]) if plan else None
    if endings:
        parts = [_ending(ending["data"], ending["time"], failed, stages, first=index == 0)
                 for index, ending in enumerate(endings)]
        text = ", then ".join(parts)
        ended = endings[0]["time"]
    else:  # still going, its controller died, or a journal from before endings were kept
        text = _without_endings(rollout, events, failed)
        ended = rollout["finished"]
    return Story(rollout["started"], ended, started["data"]["by"] if started else None, stages, text)


def _ending(ended: dict, moment: float, failed: dict | None, stages: int | None, first: bool) -> str:
    status, by, note = ended["status"], ended["by"], ended.get("note", "")
    if ended["by_hand"]:
        what = "partly rolled back by hand" if status == RolloutStatus.PARTLY_ROLLED_BACK else (
            "rolled back by hand" if status == RolloutStatus.ROLLED_BACK else "a rollback by hand did not complete")
        return f"{what} by {by} at {clock(moment)}" + (f" ({note})" if note else "")
    if status == RolloutStatus.COMPLETED:
        return f"completed all {stages} stages" if stages else "completed"
    if status == RolloutStatus.ABORTED:
        return note or "aborted by the operator"
    if status == RolloutStatus.REFUSED:
        return "refused: another controller held its hosts"
    cause = (f"failed the canary of stage {failed['stage']} ({failed['outcome']})" if failed and first
             else note or "stopped")
    if status == RolloutStatus.ROLLED_BACK:
        return f"{cause} and was rolled back" if failed and first else f"{cause}"
    if status == RolloutStatus.HELD:
        return f"{cause}; held as the plan says"
    return f"{cause}; the rollback did not complete" if failed and first else f"{status}: {cause}"


def _without_endings(rollout: dict, events: list[dict], failed: dict | None) -> str:
    status = rollout["status"]
    if status in (RolloutStatus.RUNNING, RolloutStatus.PAUSED):
        verdicts = [e["data"]["stage"] for e in events if e["kind"] == "verdict"]
        reached = f" after stage {max(verdicts)}" if verdicts else ""
        return f"{status}{reached} (or its controller died: see `ccrollout resume` and `rollback`)"
    if failed:
        return f"failed the canary of stage {failed['stage']} ({failed['outcome']}); {status}"
    return str(status)


def clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment))


def when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def span(seconds: float | None) -> str:
    """A duration the way people say it: 46s, 3m05s, 1h02m, 2d03h."""
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


HEADER = f"{'ROLLOUT':<22}  {'STARTED':<19}  {'ENDED':<19}  {'DURATION':>8}  {'OPERATOR':<20}  " \
         f"{'STATUS':<18}  {'CONTROL':<15}  PLAN"


def row(rollout: dict, story: Story) -> str:
    """One line of `history`, under HEADER."""
    ended = "-" if story.ended is None else (
        clock(story.ended) if when(story.ended)[:10] == when(story.started)[:10] else when(story.ended))
    return (f"{rollout['id']:<22}  {when(story.started):<19}  {ended:<19}  {span(story.duration):>8}  "
            f"{story.operator or '?':<20}  {rollout['status']:<18}  {rollout['algorithm']:<15}  {rollout['plan']}")
