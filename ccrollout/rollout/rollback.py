"""Undoing rollouts: what a failed stage rolls back, `ccrollout rollback` (by the journal,
all hosts or --limit), and `rollback --from-hosts` (by each host's own record)."""

import os
import signal
import time

from .. import events, fleet
from ..errors import EXIT_NEEDS_ATTENTION, EXIT_OK
from ..host import protocol
from ..journal import Journal
from ..status import PENDING, ChangeState, HostStatus, RolloutStatus
from .hosts import HostsInPlay
from .reports import Result


def crash_point(name: str) -> None:
    """A test hook: die here as a controller killed by the OOM killer or a power cut would
    (CCROLLOUT_TEST_CRASH_AT=NAME), so tests can show that the journal still names everything."""
    if os.environ.get("CCROLLOUT_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def undo_summary(answer: dict) -> str:
    if answer.get("reverted_to"):
        return f"back to version {answer['reverted_to'][:12]} in place"
    if answer.get("note"):
        return answer["note"]
    return f"default {answer.get('restored') or 'unchanged'}" + (", unloaded" if answer.get("unloaded") else "")


class Rollbacks(HostsInPlay):
    """Hosts in play, with the journal that says what to undo on them."""

    crash_point = staticmethod(crash_point)

    def __init__(self, inventory_hosts, journal: Journal, **options):
        super().__init__(inventory_hosts, **options)
        self.journal = journal

    def finished(self, result: Result) -> Result:
        """RESULT, told as the command's last event."""
        self.emit(events.Finished(rollout=result.rollout_id, status=str(result.status), exit_code=result.exit_code,
                                  message=result.message,
                                  hosts={name: str(report.status) for name, report in result.hosts.items()}))
        return result

    def release(self, rollout_id: str, hosts: list[str]) -> None:
        """Drop ROLLOUT_ID's claims on HOSTS."""
        self.call_all(hosts, [protocol.action("unlock", rollout=rollout_id)])

    def roll_back_hosts(self, rollout_id: str, hosts: list[str]) -> bool:
        """Undo ROLLOUT_ID's changes on HOSTS; True when every one of them is undone."""
        wanted = set(hosts)
        return self.undo([c for c in self.journal.changes(rollout_id, PENDING) if c.host in wanted])

    def undo(self, changes) -> bool:
        by_host = {change.host: change for change in changes}
        missing = [host for host in by_host if host not in self.targets]
        if missing:
            self.progress(f"not in the inventory, cannot roll back: {', '.join(missing)}")

        def deactivate(session):
            change = by_host[session.target.name]
            return session.call([protocol.action("deactivate", name=change.algorithm, digest=change.digest,
                                                 restore=change.previous_default)])

        outcomes = self.phase("rollback", [h for h in by_host if h in self.targets], deactivate)
        crash_point("mid-rollback")  # the hosts are undone, the journal does not know yet
        undone, all_answered = self.rolled_back(outcomes)
        for name, answer in undone.items():
            self.journal.mark(by_host[name].id, ChangeState.UNDONE)
            self.emit(events.HostRolledBack(host=name, ok=True, detail=undo_summary(answer.fields),
                                            control=by_host[name].algorithm))
        return all_answered and not missing

    def rolled_back(self, outcomes: dict[str, fleet.Outcome]) -> tuple[dict[str, protocol.Answer], bool]:
        """The hosts whose rollback succeeded, with their answers; whether every one did."""
        undone = {}
        for name, outcome in outcomes.items():
            if error := outcome.failure():
                self.reports[name].fail(HostStatus.FAILED, error)
                self.emit(events.HostRolledBack(host=name, ok=False, detail=error))
                continue
            self.reports[name].status = HostStatus.ROLLED_BACK
            undone[name] = outcome.answer
        return undone, len(undone) == len(outcomes)

    def rollback(self, rollout_id: str, only: set[str] | None = None) -> Result:
        """Undo ROLLOUT_ID's changes (on the hosts in ONLY, for --limit; the rest wait)."""
        changes = [c for c in self.journal.changes(rollout_id, PENDING) if only is None or c.host in only]
        self.bus.rollout = rollout_id
        if not changes:
            return self.finished(Result(rollout_id, "nothing to do", EXIT_OK,
                                        f"rollout {rollout_id} has no change left to undo"
                                        + (" on these hosts" if only is not None else ""), self.reports))
        started = time.monotonic()
        undone = self.undo(changes)
        left = len(self.journal.changes(rollout_id, PENDING))
        status = (RolloutStatus.FAILED if not undone else RolloutStatus.PARTLY_ROLLED_BACK if left
                  else RolloutStatus.ROLLED_BACK)
        self.journal.finish_rollout(rollout_id, status, by_hand=True,
                                    note=f"rollback of {len(changes)} hosts" + (f", {left} others keep it" if left else ""))
        if status == RolloutStatus.ROLLED_BACK:
            # a dead controller's claims too: on every host the rollout ever changed
            self.release(rollout_id, sorted({c.host for c in self.journal.changes(rollout_id)} & set(self.targets)))
        message = (f"rolled back {len(changes)} hosts in {time.monotonic() - started:.1f}s"
                   + (f"; {left} other hosts still carry this rollout" if left else "") if undone
                   else "some hosts could not be rolled back; run rollback again")
        return self.finished(Result(rollout_id, status, EXIT_OK if undone else EXIT_NEEDS_ATTENTION, message,
                                    self.reports))

    def rollback_from_hosts(self) -> Result:
        """Undo whatever each host's own record says ccrollout changed there, newest first:
        the way back when the controller's journal is lost."""
        hosts = list(self.targets)
        unreachable = self.gather(hosts)
        self.report_failures(unreachable)
        recorded = [name for name in hosts if self.facts.get(name, {}).get("records")]
        outcomes = self.phase("rollback", recorded, lambda s: s.call([protocol.action("withdraw_all")]))
        undone, all_answered = self.rolled_back(outcomes)
        failed = bool(unreachable) or not all_answered
        for name, answer in undone.items():
            for item in answer.undone:
                self.emit(events.HostRolledBack(host=name, ok=True, detail=undo_summary(item), control=item["name"]))
        for name in hosts:
            if name not in unreachable and name not in recorded:
                self.reports[name].status = HostStatus.OK
        message = (f"rolled back what {len(recorded)} hosts recorded; {len(hosts) - len(recorded)} had nothing"
                   if not failed else "some hosts could not be rolled back; run rollback --from-hosts again")
        return self.finished(Result(None, RolloutStatus.FAILED if failed else RolloutStatus.ROLLED_BACK,
                                    EXIT_NEEDS_ATTENTION if failed else EXIT_OK, message, self.reports))
