"""One rollout from plan to fleet: claims, preparing, the stages in order, finishing,
resuming; and the manual rollback.

Every change is journaled before it is made. Hosts of later stages are never touched
when an earlier stage fails. Only the hosts in play are connected: a stage's hosts and
its controls are reached when the stage begins, and sessions no stage needs any more
are closed.
"""

import os
import signal
import socket
import time

from .. import build, fleet
from ..errors import (EXIT_HOST_FAILED, EXIT_NEEDS_ATTENTION, EXIT_OK, HostFailed,
                      InvalidInput)
from ..host import protocol
from ..journal import HostsLocked, Journal
from ..plan import stage_batches
from ..status import PENDING, ChangeState, HostStatus, RolloutStatus, StageOutcome
from . import canary, controls, judge
from .reports import HostReport, Result
from .stage import RolloutProgress, StageContext, StageRun

_OPERATOR_POLL_SECONDS = 0.5
# How long a host stays claimed without hearing from the controller again, beyond the time
# the rest of the rollout is planned to take: a dead controller's claims run out by themselves.
HOST_LEASE_SECONDS = 600.0
SENT, RETRANSMITTED = "OutSegs", "RetransSegs"


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


class Runner:
    """Carries the fleet, the journal and the operator's options through one command.
    A context manager: leaving it closes every session."""

    crash_point = staticmethod(crash_point)

    def __init__(self, inventory_hosts, journal: Journal, forks: int = 5, progress=print,
                 timeouts: fleet.Timeouts = fleet.Timeouts(), preflight_all: bool = False, connect=None):
        inventory_hosts = list(inventory_hosts)
        self.targets = {host.name: fleet.Target.from_vars(host.name, host.vars) for host in inventory_hosts}
        self.group_of = {host.name: controls.group_key(host.groups) for host in inventory_hosts}
        self.journal, self.forks, self.progress = journal, forks, progress
        self.timeouts, self.preflight_all = timeouts, preflight_all
        # How a session is made: over SSH, or in-process for tests and simulations.
        self._connect = connect or (lambda target: fleet.Session(target, timeouts))
        self.sessions: dict[str, object] = {}
        self.reports = {name: HostReport(name) for name in self.targets}
        self.facts: dict[str, dict] = {}

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.close_sessions(list(self.sessions))

    def close_sessions(self, names) -> None:
        for name in names:
            session = self.sessions.pop(name, None)
            if session is not None:
                session.close()

    def session(self, name: str):
        if name not in self.sessions:
            self.sessions[name] = self._connect(self.targets[name])
        return self.sessions[name]

    # -- reaching hosts -------------------------------------------------------

    def call_all(self, hosts, actions: list[dict]) -> dict[str, fleet.Outcome]:
        """One message of ACTIONS to every one of HOSTS (bookkeeping outside the timed phases)."""
        return fleet.fan_out({n: self.session(n) for n in hosts}, lambda s: s.call(actions), self.forks)

    def phase(self, phase: str, hosts, work) -> dict[str, fleet.Outcome]:
        outcomes = fleet.fan_out({name: self.session(name) for name in hosts}, work, self.forks)
        for name, outcome in outcomes.items():
            self.reports[name].phases[phase] = round(self.reports[name].phases.get(phase, 0) + outcome.seconds, 3)
        return outcomes

    def sampler(self, hosts: list[str]) -> tuple[dict[str, canary.Sample], dict[str, str]]:
        """One reading of HOSTS' counters, for the canary."""
        samples, errors = {}, {}
        for host, outcome in self.call_all(hosts, [protocol.action("counters")]).items():
            if error := outcome.failure():
                errors[host] = error
                continue
            answer = outcome.answer
            by_control = answer.by_control and {control: judge.Window(figures["sent"], figures["retransmitted"])
                                                for control, figures in answer.by_control.items()}
            samples[host] = canary.Sample(host, answer.time, judge.Window(answer.counters.get(SENT, 0),
                                                                          answer.counters.get(RETRANSMITTED, 0)),
                                          by_control)
        return samples, errors

    def gather(self, hosts: list[str], claim: dict | None = None) -> dict[str, str]:
        """Read HOSTS' facts (those not read yet) into self.facts, taking CLAIM (a lock
        action) in the same message; the errors of the hosts that did not answer or refused."""
        wanted = [name for name in hosts if name not in self.facts or claim]
        actions = ([claim] if claim else []) + [protocol.action("facts")]
        outcomes = self.phase("gather", wanted, lambda s: s.call(actions))
        failures = {name: error for name, o in outcomes.items() if (error := o.failure())}
        self.facts.update({name: o.answer.facts for name, o in outcomes.items() if name not in failures})
        return failures

    def refusals(self, hosts: list[str]) -> dict[str, str]:
        """Hosts that cannot take a BPF control, with the reasons their facts give."""
        return {name: f"{name}: " + "; ".join(self.facts[name]["problems"])
                for name in hosts if self.facts.get(name, {}).get("problems")}

    # -- claims ---------------------------------------------------------------

    def claim_action(self, rollout_id: str, lease: float) -> dict:
        return protocol.action("lock", rollout=rollout_id, lease=lease,
                               controller=f"{socket.gethostname()}:{os.getpid()}")

    def claim(self, rollout_id: str, hosts: list[str], lease: float = HOST_LEASE_SECONDS) -> dict[str, str]:
        """Claim (or renew the claim on) HOSTS for this rollout; the hosts another holds."""
        outcomes = self.call_all(hosts, [self.claim_action(rollout_id, lease)])
        return {name: error for name, outcome in outcomes.items() if (error := outcome.failure())}

    def release(self, rollout_id: str, hosts: list[str]) -> None:
        self.call_all(hosts, [protocol.action("unlock", rollout=rollout_id)])

    # -- apply ---------------------------------------------------------------

    def apply(self, plan_path: str, rollout) -> Result:
        built = self.build_control(rollout)
        hosts = list(self.targets)
        plan = self.stage_plan(rollout, hosts, seed=f"{rollout.name}/{built.digest}")
        self.prepare(hosts if self.preflight_all else plan[0][0])
        rollout_id = self.journal.start_rollout(plan_path, rollout.name, built.name, built.digest, hosts)
        refused = self.claim(rollout_id, plan[0][0], self.lease(rollout, len(plan)))
        if refused:
            self.journal.finish_rollout(rollout_id, RolloutStatus.REFUSED)
            self.release(rollout_id, plan[0][0])
            raise HostsLocked("another controller holds these hosts; nothing was changed:\n  "
                              + "\n  ".join(refused.values()))
        self.journal.event(rollout_id, None, "plan", {"stages": [{"hosts": b, "controls": c} for b, c in plan]})
        self.progress(f"rollout {rollout_id}: {built.name} to {len(hosts)} hosts ({rollout.hosts})")
        return self.finish(rollout_id, self.stages(rollout_id, rollout, built, plan, claimed_first=True))

    def build_control(self, rollout) -> build.BuiltObject:
        algorithm = rollout.algorithm
        built = build.build(algorithm.name, algorithm.source, tuple(algorithm.cflags))
        self.progress(f"built {built.name} {built.digest[:12]}{' (cached)' if built.cached else ''}")
        return built

    def stage_plan(self, rollout, hosts: list[str], seed: str) -> list[tuple[list[str], list[str]]]:
        """Each stage's hosts and its controls, drawn from the hosts later stages change."""
        batches = stage_batches(rollout.stages, hosts)
        planned = []
        for index, batch in enumerate(batches):
            later = [name for later_batch in batches[index + 1:] for name in later_batch]
            count = controls.control_count(rollout.control, len(batch), len(hosts))
            planned.append((batch, controls.choose_controls(later, count, f"{seed}/{index + 1}", self.group_of)))
        return planned

    def lease(self, rollout, stages_left: int) -> float:
        """A claim lasts for the rest of the rollout as planned, plus HOST_LEASE_SECONDS."""
        return min(HOST_LEASE_SECONDS + stages_left * (rollout.schedule.longest_stage + 60), protocol.WEEK)

    def prepare(self, hosts: list[str]) -> None:
        """Read HOSTS; refuse before any change if one cannot be reached or cannot take it."""
        failures = self.gather(hosts)
        if failures:
            for name, error in failures.items():
                self.reports[name].fail(HostStatus.UNREACHABLE, error)
            raise HostFailed("nothing was changed; these hosts cannot be reached:\n  "
                             + "\n  ".join(failures.values()))
        refusals = self.refusals(hosts)
        if refusals:
            for name, reason in refusals.items():
                self.reports[name].fail(HostStatus.REFUSED, reason)
            raise HostFailed("nothing was changed; these hosts cannot take a BPF congestion control:\n  "
                             + "\n  ".join(refusals.values()))

    def finish(self, rollout_id: str, result: Result) -> Result:
        self.journal.finish_rollout(rollout_id, result.status)
        if result.status in (RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK, RolloutStatus.ABORTED):
            # held or failed rollouts keep their hosts until rolled back
            self.release(rollout_id, [name for name in self.targets if self.reports[name].stage is not None])
        return result

    def resume(self, rollout_id: str, rollout) -> Result:
        """Carry on a rollout whose controller died: stages that passed stay passed; the stage
        it died in is changed (again, idempotently) and baked in full; then the rest."""
        recorded = self.journal.rollout(rollout_id)
        built = self.build_control(rollout)
        if built.digest != recorded["digest"]:
            raise InvalidInput(f"rollout {rollout_id} put {recorded['algorithm']} {recorded['digest'][:12]} on "
                               f"its hosts, but the plan now builds {built.digest[:12]}: roll it back instead")
        hosts = list(self.targets)
        events = self.journal.events(rollout_id)
        planned = next((e["data"]["stages"] for e in events if e["kind"] == "plan"), None)
        plan = ([(stage["hosts"], stage["controls"]) for stage in planned] if planned
                else self.stage_plan(rollout, hosts, seed=f"{rollout.name}/{built.digest}"))
        passed = {e["stage"] for e in events
                  if e["kind"] == "verdict" and e["data"]["outcome"] in (StageOutcome.PASS, StageOutcome.UNCHANGED)}
        done = 0
        while done + 1 in passed:
            done += 1
        self.prepare([name for batch, _ in plan[done:done + 1] for name in batch])
        self.journal.take_over(rollout_id, hosts)
        touched = [name for batch, _ in plan[:done + 1] for name in batch]
        refused = self.claim(rollout_id, touched, self.lease(rollout, len(plan) - done))
        if refused:  # the dead controller's claims carry this rollout's id
            raise HostsLocked("another controller holds these hosts:\n  " + "\n  ".join(refused.values()))
        self.journal.set_status(rollout_id, RolloutStatus.RUNNING)
        self.progress(f"resuming rollout {rollout_id} after stage {done}")
        return self.finish(rollout_id, self.stages(rollout_id, rollout, built, plan, resume_after=done))

    def stages(self, rollout_id: str, rollout, built: build.BuiltObject, plan, resume_after: int | None = None,
               claimed_first: bool = False) -> Result:
        """The stages in order; when resuming, the first RESUME_AFTER passed before."""
        done = RolloutProgress()
        for number, (batch, stage_controls) in enumerate(plan, start=1):
            if resume_after is not None and number <= resume_after:  # passed before the controller died
                done.changed.extend(batch)
                for name in batch:
                    self.reports[name].stage = number
                continue
            self.close_sessions([n for n in self.sessions if n not in batch and n not in stage_controls])
            self.progress(f"stage {number}/{len(plan)}: {', '.join(batch)}"
                          + (f" (control: {', '.join(stage_controls)})" if stage_controls else ""))
            claim = None if (claimed_first and number == 1) else self.claim_action(
                rollout_id, self.lease(rollout, len(plan) - number + 1))
            context = StageContext(rollout_id, rollout, built, number, len(plan), batch, stage_controls, done,
                                   resumed=resume_after is not None and number == resume_after + 1)
            result = self.enter_stage(context, claim) or self.run_stage(context)
            if result is not None:
                return result
        return self.result(rollout_id, RolloutStatus.COMPLETED, EXIT_OK,
                           f"{built.name} is on {len(self.targets)} hosts", done)

    def enter_stage(self, context: StageContext, claim: dict | None) -> Result | None:
        """Reach the stage's hosts (claiming them) and its controls; end the rollout if one
        of its hosts cannot be reached or cannot take the control. A control that does not
        answer is only left out."""
        failures = self.gather(context.hosts, claim)
        failures.update(self.refusals(context.hosts))
        if failures:
            for name, error in failures.items():
                self.reports[name].fail(HostStatus.FAILED, error)
            message = "stage {} cannot begin: {}".format(context.number, next(iter(failures.values())))
            self.progress(f"  {message}")
            return self.end_in_rollback(context, message.splitlines()[0], EXIT_HOST_FAILED)
        lost = self.gather(context.controls)
        if lost:
            self.progress(f"  left out of the controls (unreachable): {', '.join(sorted(lost))}")
            context.controls = [name for name in context.controls if name not in lost]
        return None

    def run_stage(self, context: StageContext) -> Result | None:
        in_place = all(self.already_in_place(name, context.built, context.rollout) for name in context.hosts)
        watching = context.resumed or not in_place  # a stage with nothing to change has nothing to bake
        if watching:
            self.start_watchers(context)
        try:
            return StageRun(self, context).run()
        finally:
            if watching:
                self.call_all(context.hosts, [protocol.action("watch_stop")])

    def start_watchers(self, context: StageContext) -> None:
        """Per-control figures for the stage's hosts (host/watch.py), for as long as the stage
        can last; a host that cannot run the watcher is judged on host-wide counters."""
        lifetime = context.schedule.longest_stage + 60
        outcomes = self.call_all(context.hosts, [protocol.action(
            "watch_start", lifetime=lifetime, source=context.rollout.health_source)])
        for name, outcome in outcomes.items():
            if error := outcome.failure():
                self.progress(f"  {name}: host-wide counters only ({error})")
            elif outcome.answer.note:
                self.progress(f"  {name}: {outcome.answer.note}")
            elif outcome.answer.source == "trace":
                self.progress(f"  {name}: retransmissions from the tracer")

    def result(self, rollout_id, status, exit_code: int, message: str,
               done: RolloutProgress | None = None) -> Result:
        return Result(rollout_id, status, exit_code, message, self.reports, list(done.verdicts) if done else [])

    def end_in_rollback(self, context: StageContext, message: str, exit_code: int,
                        status: RolloutStatus = RolloutStatus.ROLLED_BACK) -> Result:
        """Roll back every host the rollout touched; the result says whether that worked."""
        undone = self.roll_back_hosts(context.rollout_id, context.done.changed)
        if undone:
            return self.result(context.rollout_id, status, exit_code, message + "; rolled back", context.done)
        return self.result(context.rollout_id, RolloutStatus.FAILED, EXIT_NEEDS_ATTENTION,
                           message + "; rollback incomplete", context.done)

    def wait_for_operator(self, rollout_id: str, stage: int) -> str:
        """The plan's manual gate: 'promote' or 'abort', as `ccrollout promote|abort` records it."""
        seen = len(self.journal.events(rollout_id))
        self.journal.set_status(rollout_id, RolloutStatus.PAUSED)
        self.journal.event(rollout_id, stage, "paused", {})
        self.progress(f"  paused after stage {stage}: `ccrollout promote {rollout_id}` goes on, "
                      f"`ccrollout abort {rollout_id}` rolls back")
        touched = [name for name, report in self.reports.items() if report.stage is not None]
        renewed = time.monotonic()
        while True:
            if time.monotonic() - renewed > HOST_LEASE_SECONDS / 10:
                for name, error in self.claim(rollout_id, touched).items():
                    self.progress(f"  {name}: claim not renewed ({error})")
                renewed = time.monotonic()
            for event in self.journal.events(rollout_id)[seen:]:
                if event["kind"] in ("promote", "abort"):
                    self.journal.set_status(rollout_id, RolloutStatus.RUNNING)
                    self.progress(f"  {event['kind']}d by {event['data'].get('by', 'an operator')}")
                    return event["kind"]
            time.sleep(_OPERATOR_POLL_SECONDS)

    # -- check mode ----------------------------------------------------------

    def check(self, rollout, show_diff: bool = False) -> Result:
        """What apply would change on each host, changing nothing (Ansible's check mode);
        with the stages' hosts and controls."""
        built = self.build_control(rollout)
        hosts = list(self.targets)
        for number, (batch, stage_controls) in enumerate(
                self.stage_plan(rollout, hosts, seed=f"{rollout.name}/{built.digest}"), start=1):
            self.progress(f"stage {number}: {', '.join(batch)}"
                          + (f" (control: {', '.join(stage_controls)})" if stage_controls else " (no control hosts)"))
        unreachable = self.gather(hosts)
        would_change = 0
        for name in hosts:
            report = self.reports[name]
            if name in unreachable:
                report.fail(HostStatus.UNREACHABLE, unreachable[name])
                continue
            diff = self.diff(name, built, rollout)
            report.status = (HostStatus.WOULD_REFUSE if self.facts[name].get("problems")
                             else HostStatus.WOULD_CHANGE if diff else HostStatus.OK)
            would_change += bool(diff)
            self.progress(f"{name}: {report.status}")
            for line in diff if show_diff else ():
                self.progress(f"  {line}")
        message = f"{would_change} of {len(hosts)} hosts would change; nothing was changed"
        if unreachable or self.refusals(hosts):
            return Result(None, "unreachable" if unreachable else "refused", EXIT_HOST_FAILED, message, self.reports)
        return Result(None, "checked", EXIT_OK, message, self.reports)

    def diff(self, name: str, built: build.BuiltObject, rollout) -> list[str]:
        facts, scope = self.facts[name], rollout.scope
        if facts.get("problems"):
            return ["refuse: " + "; ".join(facts["problems"])]
        managed = facts.get("managed", {}).get(built.name)
        mine = facts.get("records", {}).get(built.name, {})
        lines = []
        if managed is None:
            lines.append(f"load {built.name} {built.digest[:12]} on kernel {facts.get('boot_id', '?')[:8]}")
        elif managed.get("digest") != built.digest:
            sharing = len(managed.get("users", []))
            lines.append(f"upgrade {built.name} in place: {(managed.get('digest') or '?')[:12]} -> "
                         f"{built.digest[:12]} (kernel-wide: {sharing} namespaces use it)")
        elif facts.get("netns") not in managed.get("users", []):
            lines.append(f"use the {built.name} already loaded on this kernel")
        elif mine.get("digests", [])[-1:] != [built.digest]:
            lines.append(f"record version {built.digest[:12]} (the kernel already runs it)")
        if scope.default and facts.get("default") != built.name:
            lines.append(f"default: {facts.get('default')} -> {built.name}")
        for prefix in scope.routes:
            lines.append(f"route {prefix}: congctl {built.name} (unless already so)")
        if rollout.algorithm.ecn and facts.get("ecn") != 1:
            lines.append(f"net.ipv4.tcp_ecn: {facts.get('ecn')} -> 1")
        return lines

    def already_in_place(self, name: str, built: build.BuiltObject, rollout) -> bool:
        """What the gathered facts say; the host side still decides (and reports) for itself."""
        facts, scope = self.facts.get(name, {}), rollout.scope
        managed = facts.get("managed", {}).get(built.name, {})
        mine = facts.get("records", {}).get(built.name, {})
        return (managed.get("digest") == built.digest and facts.get("netns") in managed.get("users", [])
                and mine.get("digests", [])[-1:] == [built.digest]
                and (not scope.default or facts.get("default") == built.name) and not scope.routes
                and (not rollout.algorithm.ecn or facts.get("ecn") == 1))

    # -- rollback ------------------------------------------------------------

    def roll_back_hosts(self, rollout_id: str, hosts: list[str]) -> bool:
        """Undo ROLLOUT_ID's changes on HOSTS; True when every one of them is undone."""
        wanted = set(hosts)
        return self.undo([c for c in self.journal.changes(rollout_id, PENDING) if c.host in wanted])

    def undo(self, changes) -> bool:
        by_host = {change.host: change for change in changes}
        missing = [host for host in by_host if host not in self.targets]
        if missing:
            self.progress(f"  not in the inventory, cannot roll back: {', '.join(missing)}")

        def deactivate(session):
            change = by_host[session.target.name]
            return session.call([protocol.action("deactivate", name=change.algorithm, digest=change.digest,
                                                 restore=change.previous_default)])

        outcomes = self.phase("rollback", [h for h in by_host if h in self.targets], deactivate)
        crash_point("mid-rollback")  # the hosts are undone, the journal does not know yet
        undone, all_answered = self.rolled_back(outcomes)
        for name, answer in undone.items():
            self.journal.mark(by_host[name].id, ChangeState.UNDONE)
            self.progress(f"  {name}: rolled back ({undo_summary(answer.fields)})")
        return all_answered and not missing

    def rolled_back(self, outcomes: dict[str, fleet.Outcome]) -> tuple[dict[str, protocol.Answer], bool]:
        """The hosts whose rollback succeeded, with their answers; whether every one did."""
        undone = {}
        for name, outcome in outcomes.items():
            if error := outcome.failure():
                self.reports[name].fail(HostStatus.FAILED, error)
                self.progress(f"  rollback failed: {error}")
                continue
            self.reports[name].status = HostStatus.ROLLED_BACK
            undone[name] = outcome.answer
        return undone, len(undone) == len(outcomes)

    def rollback(self, rollout_id: str, only: set[str] | None = None) -> Result:
        """Undo ROLLOUT_ID's changes (on the hosts in ONLY, for --limit; the rest wait)."""
        changes = [c for c in self.journal.changes(rollout_id, PENDING) if only is None or c.host in only]
        if not changes:
            return Result(rollout_id, "nothing to do", EXIT_OK,
                          f"rollout {rollout_id} has no change left to undo"
                          + (" on these hosts" if only is not None else ""), self.reports)
        started = time.monotonic()
        undone = self.undo(changes)
        left = len(self.journal.changes(rollout_id, PENDING))
        status = (RolloutStatus.FAILED if not undone else RolloutStatus.PARTLY_ROLLED_BACK if left
                  else RolloutStatus.ROLLED_BACK)
        self.journal.finish_rollout(rollout_id, status)
        if status == RolloutStatus.ROLLED_BACK:
            # a dead controller's claims too: on every host the rollout ever changed
            self.release(rollout_id, sorted({c.host for c in self.journal.changes(rollout_id)} & set(self.targets)))
        message = (f"rolled back {len(changes)} hosts in {time.monotonic() - started:.1f}s"
                   + (f"; {left} other hosts still carry this rollout" if left else "") if undone
                   else "some hosts could not be rolled back; run rollback again")
        return Result(rollout_id, status, EXIT_OK if undone else EXIT_NEEDS_ATTENTION, message, self.reports)

    def rollback_from_hosts(self) -> Result:
        """Undo whatever each host's own record says ccrollout changed there, newest first:
        the way back when the controller's journal is lost."""
        hosts = list(self.targets)
        unreachable = self.gather(hosts)
        for name, error in unreachable.items():
            self.reports[name].fail(HostStatus.UNREACHABLE, error)
        recorded = [name for name in hosts if self.facts.get(name, {}).get("records")]
        outcomes = self.phase("rollback", recorded, lambda s: s.call([protocol.action("withdraw_all")]))
        undone, all_answered = self.rolled_back(outcomes)
        failed = bool(unreachable) or not all_answered
        for name, answer in undone.items():
            for item in answer.undone:
                self.progress(f"  {name}: {item['name']} rolled back ({undo_summary(item)})")
        for name in hosts:
            if name not in unreachable and name not in recorded:
                self.reports[name].status = HostStatus.OK
        message = (f"rolled back what {len(recorded)} hosts recorded; {len(hosts) - len(recorded)} had nothing"
                   if not failed else "some hosts could not be rolled back; run rollback --from-hosts again")
        return Result(None, RolloutStatus.FAILED if failed else RolloutStatus.ROLLED_BACK,
                      EXIT_NEEDS_ATTENTION if failed else EXIT_OK, message, self.reports)
