"""One rollout from plan to fleet: claims, preparing, the stages in order, finishing,
resuming; and check mode.

Every change is journaled before it is made. Hosts of later stages are never touched
when an earlier stage fails. Only the hosts in play are connected: a stage's hosts and
its controls are reached when the stage begins, and sessions no stage needs any more
are closed.
"""

import os
import socket
import time

from .. import build, events
from ..errors import EXIT_HOST_FAILED, EXIT_NEEDS_ATTENTION, EXIT_OK, HostFailed, InvalidInput
from ..host import protocol
from ..journal import HostsLocked, Journal
from ..status import HostStatus, RolloutStatus, StageOutcome
from . import controls, diff
from .reports import Result
from .rollback import Rollbacks
from .stage import RolloutProgress, StageContext, StageRun

_OPERATOR_POLL_SECONDS = 0.5
# How long a host stays claimed without hearing from the controller again, beyond the time
# the rest of the rollout is planned to take: a dead controller's claims run out by themselves.
HOST_LEASE_SECONDS = 600.0


class Runner(Rollbacks):
    """Carries a rollout through its stages: claims, preparing, finishing and resuming (with
    the hosts in play and the journal of Rollbacks). A context manager."""

    def __init__(self, inventory_hosts, journal: Journal, preflight_all: bool = False, **options):
        super().__init__(inventory_hosts, journal, **options)
        self.preflight_all = preflight_all
        self.prometheus_samplers: dict = {}  # rollout name -> its metrics.prometheus.PrometheusSampler

    def sampler_for(self, rollout):
        """Where the rollout's figures come from: the hosts' agents, or its Prometheus."""
        if rollout.prometheus is None:
            return self.sampler
        if rollout.name not in self.prometheus_samplers:
            from ..metrics.prometheus import PrometheusSampler  # requests: only for plans that ask Prometheus
            addresses = {name: target.address for name, target in self.targets.items()}
            self.prometheus_samplers[rollout.name] = PrometheusSampler(rollout.prometheus, addresses)
        return self.prometheus_samplers[rollout.name]

    # -- claims ---------------------------------------------------------------

    def claim_action(self, rollout_id: str, lease: float) -> dict:
        return protocol.action("lock", rollout=rollout_id, lease=lease,
                               controller=f"{socket.gethostname()}:{os.getpid()}")

    def claim(self, rollout_id: str, hosts: list[str], lease: float = HOST_LEASE_SECONDS) -> dict[str, str]:
        """Claim (or renew the claim on) HOSTS for this rollout; the hosts another holds."""
        outcomes = self.call_all(hosts, [self.claim_action(rollout_id, lease)])
        return {name: error for name, outcome in outcomes.items() if (error := outcome.failure())}

    # -- apply ---------------------------------------------------------------

    def apply(self, plan_path: str, rollout) -> Result:
        built = self.build_control(rollout)
        hosts = list(self.targets)
        plan = self.stage_plan(rollout, hosts, seed=f"{rollout.name}/{built.digest}")
        self.prepare(hosts if self.preflight_all else plan[0][0])
        rollout_id = self.journal.start_rollout(plan_path, rollout.name, built.name, built.digest, hosts)
        refused = self.claim(rollout_id, plan[0][0], self.lease(rollout, len(plan)))
        if refused:
            self.journal.finish_rollout(rollout_id, RolloutStatus.REFUSED, "another controller holds its hosts")
            self.release(rollout_id, plan[0][0])
            raise HostsLocked("another controller holds these hosts; nothing was changed:\n  "
                              + "\n  ".join(refused.values()))
        self.journal.event(rollout_id, None, "plan", {"stages": [{"hosts": b, "controls": c} for b, c in plan]})
        self.bus.rollout = rollout_id
        self.emit(events.RolloutStarted(name=rollout.name, algorithm=built.name, digest=built.digest,
                                        hosts=hosts, stages=len(plan)))
        return self.finish(rollout_id, self.stages(rollout_id, rollout, built, plan, claimed_first=True))

    def build_control(self, rollout) -> build.BuiltObject:
        algorithm = rollout.algorithm
        built = build.build(algorithm.name, algorithm.source, tuple(algorithm.cflags), algorithm.root)
        self.emit(events.Built(algorithm=built.name, digest=built.digest, cached=built.cached))
        return built

    def stage_plan(self, rollout, hosts: list[str], seed: str) -> list[tuple[list[str], list[str]]]:
        """Each stage's hosts and its controls, drawn from the hosts later stages change."""
        return controls.plan_stages(rollout, hosts, seed, self.group_of)

    def lease(self, rollout, stages_left: int) -> float:
        """A claim lasts for the rest of the rollout as planned, plus HOST_LEASE_SECONDS."""
        return min(HOST_LEASE_SECONDS + stages_left * (rollout.schedule.longest_stage + 60), protocol.WEEK)

    def prepare(self, hosts: list[str]) -> None:
        """Read HOSTS; refuse before any change if one cannot be reached or cannot take it."""
        failures = self.gather(hosts)
        if failures:
            self.report_failures(failures)
            raise HostFailed("nothing was changed; these hosts cannot be reached:\n  "
                             + "\n  ".join(failures.values()))
        refusals = self.refusals(hosts)
        if refusals:
            self.report_failures(refusals, HostStatus.REFUSED)
            raise HostFailed("nothing was changed; these hosts cannot take a BPF congestion control:\n  "
                             + "\n  ".join(refusals.values()))

    def finish(self, rollout_id: str, result: Result) -> Result:
        self.journal.finish_rollout(rollout_id, result.status, result.message)
        if result.status in (RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK, RolloutStatus.ABORTED):
            # held or failed rollouts keep their hosts until rolled back
            self.release(rollout_id, [name for name in self.targets if self.reports[name].stage is not None])
        return self.finished(result)

    def resume(self, rollout_id: str, rollout) -> Result:
        """Carry on a rollout whose controller died: stages that passed stay passed; the stage
        it died in is changed (again, idempotently) and baked in full; then the rest."""
        recorded = self.journal.rollout(rollout_id)
        built = self.build_control(rollout)
        if built.digest != recorded["digest"]:
            raise InvalidInput(f"rollout {rollout_id} put {recorded['algorithm']} {recorded['digest'][:12]} on "
                               f"its hosts, but the plan now builds {built.digest[:12]}: roll it back instead")
        hosts = list(self.targets)
        journaled = self.journal.events(rollout_id, ("plan", "verdict"))
        planned = next((e["data"]["stages"] for e in journaled if e["kind"] == "plan"), None)
        plan = ([(stage["hosts"], stage["controls"]) for stage in planned] if planned
                else self.stage_plan(rollout, hosts, seed=f"{rollout.name}/{built.digest}"))
        unknown = sorted({name for batch, stage_controls in plan for name in batch + stage_controls} - set(hosts))
        if unknown:  # the inventory (or --limit) changed since, or the journal was edited
            raise InvalidInput(f"rollout {rollout_id} was planned over hosts this inventory does not select: "
                               f"{', '.join(unknown[:10])}; resume with the inventory it began with, or roll it back")
        passed = {e["stage"] for e in journaled
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
        self.bus.rollout = rollout_id
        self.emit(events.RolloutStarted(name=rollout.name, algorithm=built.name, digest=built.digest,
                                        hosts=hosts, stages=len(plan), resumed_after=done))
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
            self.bus.stage = number
            self.emit(events.StageStarted(stages=len(plan), hosts=list(batch), controls=list(stage_controls)))
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
            self.report_failures(failures, HostStatus.FAILED)
            message = "stage {} cannot begin: {}".format(context.number, next(iter(failures.values())))
            self.progress(message)
            return self.end_in_rollback(context, message.splitlines()[0], EXIT_HOST_FAILED)
        if context.rollout.prometheus is not None:
            return None  # controls are read from Prometheus: never reached
        lost = self.gather(context.controls)
        if lost:
            self.progress(f"left out of the controls (unreachable): {', '.join(sorted(lost))}")
            context.controls = [name for name in context.controls if name not in lost]
        return None

    def run_stage(self, context: StageContext) -> Result | None:
        in_place = all(self.already_in_place(name, context.built, context.rollout) for name in context.hosts)
        # A stage with nothing to change has nothing to bake; Prometheus needs no watcher.
        watching = (context.resumed or not in_place) and context.rollout.prometheus is None
        watched = context.hosts + context.controls  # the controls' bytes and RTT come from watchers too
        if watching:
            self.start_watchers(context)
        try:
            return StageRun(self, context).run()
        finally:
            if watching:
                self.call_all(watched, [protocol.action("watch_stop")])

    def start_watchers(self, context: StageContext) -> None:
        """Per-control figures for the stage's hosts (host/watch.py), for as long as the stage
        can last; a host that cannot run the watcher is judged on host-wide counters (segments
        only: bytes acked and RTT go unjudged). The controls' watchers give their bytes and RTT;
        their retransmissions come from host-wide counters, so they never need the tracer."""
        lifetime = context.schedule.longest_stage + 60
        outcomes = self.call_all(context.hosts, [protocol.action(
            "watch_start", lifetime=lifetime, source=context.rollout.health_source)])
        outcomes.update(self.call_all(context.controls, [protocol.action(
            "watch_start", lifetime=lifetime, source="sockets")]))
        for name, outcome in outcomes.items():
            if error := outcome.failure():
                self.progress(f"host-wide counters only ({error})", name)
            elif outcome.answer.note:
                self.progress(outcome.answer.note, name)
            elif outcome.answer.source == "trace":
                self.progress("retransmissions from the tracer", name)

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

    def wait_for_operator(self, rollout_id: str, stage: int, reason: str = "gate") -> str:
        """The plan's manual gate (REASON "gate"), or an inconclusive stage the plan says to
        pause on ("inconclusive"): 'promote' or 'abort', as `ccrollout promote|abort` records it."""
        gates = ("promote", "abort")
        seen = len(self.journal.events(rollout_id, gates))
        self.journal.set_status(rollout_id, RolloutStatus.PAUSED)
        self.journal.event(rollout_id, stage, "paused", {"reason": reason})
        self.emit(events.Paused(rollout=rollout_id, stage=stage, reason=reason))
        touched = [name for name, report in self.reports.items() if report.stage is not None]
        renewed = time.monotonic()
        while True:
            if time.monotonic() - renewed > HOST_LEASE_SECONDS / 10:
                for name, error in self.claim(rollout_id, touched).items():
                    self.progress(f"claim not renewed ({error})", name)
                renewed = time.monotonic()
            for event in self.journal.events(rollout_id, gates)[seen:]:
                if event["kind"] in ("promote", "abort"):
                    self.journal.set_status(rollout_id, RolloutStatus.RUNNING)
                    self.emit(events.Decided(rollout=rollout_id, stage=stage, decision=event["kind"],
                                             by=str(event["data"].get("by", "an operator"))))
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
        self.report_failures(unreachable)
        would_change = 0
        for name in hosts:
            if name in unreachable:
                continue
            changes = diff.diff(self.facts[name], built, rollout)
            report = self.reports[name]
            report.status = (HostStatus.WOULD_REFUSE if self.facts[name].get("problems")
                             else HostStatus.WOULD_CHANGE if changes else HostStatus.OK)
            would_change += bool(changes)
            self.progress(f"{name}: {report.status}")
            for line in changes if show_diff else ():
                self.progress(f"  {line}")
        message = f"{would_change} of {len(hosts)} hosts would change; nothing was changed"
        if unreachable or self.refusals(hosts):
            return self.finished(Result(None, "unreachable" if unreachable else "refused", EXIT_HOST_FAILED, message,
                                        self.reports))
        return self.finished(Result(None, "checked", EXIT_OK, message, self.reports))

    def already_in_place(self, name: str, built: build.BuiltObject, rollout) -> bool:
        return diff.already_in_place(self.facts.get(name, {}), built, rollout)
