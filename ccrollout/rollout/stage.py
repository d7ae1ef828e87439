"""One stage of a rollout: baseline, change, settle, bake, judge; and what follows a verdict.

Everything a stage works on is in one StageContext; what it needs from the rest of the
controller (hosts, journal, reports, rollback) it asks the runner for.
"""

import base64
import dataclasses
import math
import time
from dataclasses import dataclass, field

from .. import build, events, plan
from ..errors import EXIT_HOST_FAILED, EXIT_NEEDS_ATTENTION, EXIT_ROLLED_BACK
from ..host import protocol
from ..status import ChangeState, HostStatus, RolloutStatus, StageOutcome
from . import canary, judge
from .reports import Result

PHASE_CHANGE = "change"


@dataclass
class RolloutProgress:
    """What a rollout has done so far, across its stages: the hosts it touched (a rollback
    must visit each) and the verdicts."""

    changed: list[str] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)


@dataclass
class StageContext:
    rollout_id: str
    rollout: plan.Rollout
    built: build.BuiltObject
    number: int            # 1-based
    count: int             # stages in all
    hosts: list[str]       # changed in this stage
    controls: list[str]    # compared with, not changed
    done: RolloutProgress
    resumed: bool = False  # the stage a dead controller was in: bake it whatever the facts say
    upgraded: dict[str, list[str]] = field(default_factory=dict)  # host -> namespaces sharing its upgrade

    @property
    def last(self) -> bool:
        return self.number == self.count

    @property
    def schedule(self):
        return self.rollout.schedule


def _references(comparisons) -> dict:
    """Each comparison's reference figures, under "baseline" or "control"."""
    return {"baseline" if comparison.reference == judge.BASELINE else "control": {
        "median": round(comparison.reference_median, 6), "intervals": comparison.reference_intervals,
        "p_value": None if comparison.p_value is None else round(comparison.p_value, 4)}
        for comparison in comparisons}


def figures(verdict: judge.Verdict) -> dict:
    """Each judged host's figures, as history shows them: the retransmit ratio's at the top (as
    before metrics), and every metric's under "metrics"."""
    shown = {}
    for host in verdict.hosts:
        shown[host.host] = {"outcome": host.outcome, "retransmit_ratio": round(host.retransmit_ratio, 6),
                            "sent": host.sent, "intervals": host.intervals, **_references(host.comparisons),
                            "metrics": {metric.metric: {
                                "canary_median": None if metric.canary_median is None
                                else round(metric.canary_median, 6),
                                **_references(metric.comparisons), "limit": metric.limit, "outcome": metric.outcome}
                                for metric in host.metrics}}
    return shown


class StageRun:
    """Carries one StageContext through its phases with the runner's services."""

    def __init__(self, runner, context: StageContext):
        self.runner, self.context = runner, context

    def run(self) -> Result | None:
        """The stage; a Result when the rollout ends here, None to go on."""
        runner, context = self.runner, self.context
        in_place = all(runner.already_in_place(name, context.built, context.rollout) for name in context.hosts)
        sampler = runner.sampler_for(context.rollout)
        baselines = {} if in_place else canary.measure_baseline(
            sampler, context.hosts + context.controls, context.schedule, runner.emit,
            on_interval=self.record_interval, controls=context.controls)
        error = self.change()
        if error:
            runner.progress(error)
            return runner.end_in_rollback(context, error.splitlines()[0], EXIT_HOST_FAILED)
        unchanged = all(runner.reports[name].status == HostStatus.OK for name in context.hosts)
        if unchanged and not context.resumed:
            self.record_verdict({"stage": context.number, "hosts": context.hosts,
                                 "outcome": StageOutcome.UNCHANGED, "reasons": []})
            return None
        controls = self.controls_still_apart()
        if context.schedule.settle > 0:
            runner.emit(events.PhaseStarted(phase="settle", seconds=context.schedule.settle, hosts=context.hosts))
            time.sleep(context.schedule.settle)  # let connections opened before the change finish
        watched = canary.Bake(context.hosts, controls, baselines, new_control=context.built.name)
        verdict = canary.bake(sampler, watched, context.rollout.limits, context.schedule, runner.emit,
                              on_interval=self.record_interval)
        self.record_verdict({"stage": context.number, "hosts": context.hosts, "controls": controls,
                             "outcome": verdict.outcome, "reasons": list(verdict.reasons),
                             "source": context.rollout.health_source, "figures": figures(verdict)})
        runner.crash_point("after-verdict")
        return self.after(verdict)

    def after(self, verdict: judge.Verdict) -> Result | None:
        runner, context = self.runner, self.context
        gate = verdict.passed and context.rollout.pause and not context.last
        # As Argo pauses on an inconclusive analysis: a person decides, even after the last stage.
        undecided = (verdict.outcome == StageOutcome.INCONCLUSIVE
                     and context.rollout.limits.on_inconclusive == judge.PAUSE)
        if gate or undecided:
            reason = "gate" if gate else "inconclusive"
            if runner.wait_for_operator(context.rollout_id, context.number, reason) == "abort":
                return runner.end_in_rollback(context, f"aborted by the operator after stage {context.number}",
                                              EXIT_ROLLED_BACK, RolloutStatus.ABORTED)
            return None
        if verdict.passed:
            return None
        message = f"stage {context.number} did not pass ({verdict.outcome})"
        if context.rollout.on_failure == "hold":
            return runner.result(context.rollout_id, RolloutStatus.HELD, EXIT_NEEDS_ATTENTION,
                                 message + "; holding as the plan says")
        return runner.end_in_rollback(context, message, EXIT_ROLLED_BACK)

    def record_interval(self, phase: str, index: int, elapsed: float, figures: dict) -> None:
        """Every interval's figures go to the journal, for the report to draw."""
        hosts = {host: {"role": role, **{key: None if isinstance(value, float) and not math.isfinite(value) else value
                                         for key, value in dataclasses.asdict(window).items()}}
                 for host, (role, window) in figures.items()}  # no NaN: the journal is strict JSON when read
        self.runner.journal.event(self.context.rollout_id, self.context.number, "interval",
                                  {"phase": phase, "index": index, "elapsed": round(elapsed, 3), "hosts": hosts})

    def record_verdict(self, record: dict) -> None:
        self.context.done.verdicts.append(record)
        self.runner.journal.event(self.context.rollout_id, self.context.number, "verdict", record)
        self.runner.emit(events.StageVerdict(
            rollout=self.context.rollout_id, stage=self.context.number, outcome=record["outcome"],
            hosts=list(record["hosts"]), controls=list(record.get("controls", [])),
            reasons=list(record["reasons"]), figures=record.get("figures", {})))

    def controls_still_apart(self) -> list[str]:
        """The controls, less those whose namespaces were using a control this stage upgraded
        on their kernel: one kernel holds one version of a name, so they run the new one too."""
        runner, context = self.runner, self.context
        facts = runner.facts
        touched = {(facts[name]["boot_id"], user) for name in context.hosts
                   for user in context.upgraded.get(name, ())}
        sharing = [name for name in context.controls if name in facts
                   and (facts[name]["boot_id"], facts[name]["netns"]) in touched]
        if sharing:
            runner.progress(f"{', '.join(sharing)} share a kernel with this stage and run the new "
                            "version too: they no longer count as control hosts")
        return [name for name in context.controls if name not in sharing]

    # -- the change ----------------------------------------------------------

    def change(self) -> str | None:
        """Load and activate on the stage's hosts, in one message per host; the first error.
        Every host is journaled before it is asked, and counts as touched from then on."""
        runner, context = self.runner, self.context
        built, rollout = context.built, context.rollout
        change_ids = runner.journal.intend(context.rollout_id, context.hosts, context.number, built.name, built.digest)
        for name in context.hosts:
            runner.reports[name].stage = context.number
        context.done.changed.extend(context.hosts)
        encoded = base64.b64encode(built.path.read_bytes()).decode()

        def actions_for(name: str) -> list[dict]:
            has_object = built.digest in runner.facts.get(name, {}).get("objects", [])
            return [protocol.action("install", name=built.name, digest=built.digest,
                                    object=None if has_object else encoded, map=built.map_name),
                    protocol.action("activate", name=built.name, digest=built.digest,
                                    default=rollout.scope.default, routes=list(rollout.scope.routes),
                                    ecn=rollout.algorithm.ecn, persist=rollout.persist),
                    protocol.action("persist", boot_unit=runner.boot_unit[name])]

        def change_one(session):
            answers = session.call(actions_for(session.target.name))
            runner.crash_point("mid-change")  # this host changed, others may be changing now
            return answers

        outcomes = runner.phase(PHASE_CHANGE, context.hosts, change_one)
        first_error = None
        for name, outcome in outcomes.items():
            error = outcome.failure()
            if error:
                runner.reports[name].fail(HostStatus.FAILED, error)
                runner.emit(events.HostChanged(host=name, status=HostStatus.FAILED, note=error))
                runner.journal.mark(change_ids[name], ChangeState.FAILED)
                first_error = first_error or error
                continue
            installed, activated, persisted = outcome.answers
            if persisted.changed and (persisted.unit or persisted.note):
                runner.progress(f"restored at boot by {', '.join(persisted.unit)}" if persisted.unit
                                else persisted.note, name)
            if installed.replaced:
                runner.progress(f"{built.name} upgraded in place from {installed.replaced[:12]}"
                                f" (link {installed.link['link_id']} kept)", name)
                context.upgraded[name] = installed.other_users or []
            if installed.changed or activated.changed:
                runner.journal.mark(change_ids[name], ChangeState.DONE, activated.previous)
                runner.reports[name].status = HostStatus.CHANGED
            else:  # already as the plan wants: a rollback of this rollout must not touch it
                runner.journal.mark(change_ids[name], ChangeState.UNCHANGED)
                runner.reports[name].status = HostStatus.OK
        if first_error:
            return first_error
        runner.crash_point("after-change")
        for name in context.hosts:
            runner.emit(events.HostChanged(host=name, status=runner.reports[name].status))
        return None
