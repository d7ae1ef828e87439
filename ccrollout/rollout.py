"""One rollout from plan to fleet: build, gather, stage by stage change-bake-judge,
and roll back by itself when a stage fails. Also the manual rollback.

Every change is journaled before it is made. Hosts of later stages are never
touched when an earlier stage fails.
"""

import base64
import os
import signal
import socket
import time
from dataclasses import dataclass, field

from . import build, canary, fleet, judge
from .errors import (EXIT_HOST_FAILED, EXIT_NEEDS_ATTENTION, EXIT_OK, EXIT_ROLLED_BACK, HostFailed,
                     InvalidInput)
from .journal import HostsLocked, Journal
from .plan import stage_batches

PHASES = ("gather", "push+load", "activate", "rollback")
_OPERATOR_POLL_SECONDS = 0.5
# How long a host stays claimed without hearing from the controller again: claims are renewed
# at every stage and while paused, and a dead controller's claims run out by themselves.
HOST_LEASE_SECONDS = 600.0


def crash_point(name: str) -> None:
    """A test hook: die here as a controller killed by the OOM killer or a power cut would
    (CCROLLOUT_TEST_CRASH_AT=NAME), so tests can show that the journal still names everything."""
    if os.environ.get("CCROLLOUT_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class HostReport:
    name: str
    status: str = "untouched"       # untouched | ok | changed | rolled back | failed
    stage: int | None = None
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class Result:
    rollout_id: str | None
    status: str
    exit_code: int
    message: str
    hosts: dict[str, HostReport]
    verdicts: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "rollout": self.rollout_id, "status": self.status, "exit_code": self.exit_code,
            "message": self.message, "verdicts": self.verdicts,
            "hosts": {name: vars(report) for name, report in self.hosts.items()},
        }


def _limits(rollout) -> judge.Limits:
    health = rollout.health
    return judge.Limits(max_retransmit_ratio=health.max_retransmit_ratio, max_increase=health.max_increase,
                        min_segments=health.min_segments, max_fail_fraction=rollout.max_fail_percentage,
                        on_inconclusive=health.on_inconclusive, significance=health.significance,
                        min_intervals=health.min_intervals,
                        max_extend_intervals=round(health.max_extend_seconds / rollout.interval_seconds))


def _figures(verdict: judge.Verdict) -> dict:
    """Each judged host's figures, as history shows them."""
    figures = {}
    for host in verdict.hosts:
        figures[host.host] = {"outcome": host.outcome, "retransmit_ratio": round(host.retransmit_ratio, 6),
                              "sent": host.sent, "intervals": host.intervals}
        for comparison in host.comparisons:
            key = "baseline" if comparison.reference == judge.BASELINE else "control"
            figures[host.host][key] = {
                "median": round(comparison.reference_median, 6), "intervals": comparison.reference_intervals,
                "p_value": None if comparison.p_value is None else round(comparison.p_value, 4)}
    return figures


def _undo_summary(result: dict) -> str:
    if result.get("reverted_to"):
        return f"back to version {result['reverted_to'][:12]} in place"
    if result.get("note"):
        return result["note"]
    return (f"default {result.get('restored') or 'unchanged'}"
            + (", unloaded" if result.get("unloaded") else ""))


class Runner:
    """Carries the fleet, the journal and the operator's options through one command."""

    def __init__(self, inventory_hosts, journal: Journal, forks: int = 5, progress=print):
        self.targets = {host.name: fleet.Target.from_vars(host.name, host.vars) for host in inventory_hosts}
        self.sessions: dict[str, fleet.Session] = {}
        self.journal = journal
        self.forks = forks
        self.progress = progress
        self.reports = {name: HostReport(name) for name in self.targets}
        self.facts: dict[str, dict] = {}
        self._upgraded: dict[str, list[str]] = {}  # host -> other namespaces on its kernel, per upgrade
        self._claimed_at = 0.0  # when this controller last claimed its hosts (see _claim)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()

    def session(self, name: str) -> fleet.Session:
        if name not in self.sessions:
            self.sessions[name] = fleet.Session(self.targets[name])
        return self.sessions[name]

    def _call_all(self, hosts, actions: list[dict]) -> dict[str, fleet.Outcome]:
        """One batch of ACTIONS on every one of HOSTS (bookkeeping outside the timed phases)."""
        return fleet.fan_out({n: self.session(n) for n in hosts}, lambda s: s.call(actions), self.forks)

    def _phase(self, phase: str, hosts, work) -> dict[str, fleet.Outcome]:
        outcomes = fleet.fan_out({name: self.session(name) for name in hosts}, work, self.forks)
        for name, outcome in outcomes.items():
            self.reports[name].phases[phase] = round(self.reports[name].phases.get(phase, 0) + outcome.seconds, 3)
        return outcomes

    def _gather(self, hosts: list[str]) -> dict[str, str]:
        """Read every host's facts into self.facts; the errors of those that did not answer."""
        outcomes = self._phase("gather", hosts, lambda s: s.call([{"op": "facts"}]))
        failures = {name: error for name, o in outcomes.items() if (error := o.failure())}
        self.facts = {name: o.value[-1]["facts"] for name, o in outcomes.items() if name not in failures}
        return failures

    def _preflight(self, hosts: list[str]) -> dict[str, str]:
        """Hosts that cannot take a BPF control, with the reasons their facts give."""
        return {name: f"{name}: " + "; ".join(self.facts[name]["problems"])
                for name in hosts if self.facts.get(name, {}).get("problems")}

    # -- apply ---------------------------------------------------------------

    def apply(self, plan_path: str, rollout) -> Result:
        built, hosts = self._prepare(rollout)
        rollout_id = self.journal.start_rollout(plan_path, rollout.name, built.name, built.digest, hosts)
        refused = self._claim(rollout_id, hosts)
        if refused:
            self.journal.finish_rollout(rollout_id, "refused")
            self._release(rollout_id, hosts)
            raise HostsLocked("another controller holds these hosts; nothing was changed:\n  "
                              + "\n  ".join(refused.values()))
        self.progress(f"rollout {rollout_id}: {built.name} to {len(hosts)} hosts ({rollout.hosts})")
        return self._finish(rollout_id, hosts, self._stages(rollout_id, rollout, built, hosts))

    def _finish(self, rollout_id: str, hosts: list[str], result: Result) -> Result:
        self.journal.finish_rollout(rollout_id, result.status)
        if result.status in ("completed", "rolled_back", "aborted"):
            self._release(rollout_id, hosts)  # held or failed rollouts keep them until rolled back
        return result

    def _claim(self, rollout_id: str, hosts: list[str]) -> dict[str, str]:
        """Claim (or renew the claim on) HOSTS for this rollout; the hosts another holds."""
        action = {"op": "lock", "rollout": rollout_id, "lease": HOST_LEASE_SECONDS,
                  "controller": f"{socket.gethostname()}:{os.getpid()}"}
        outcomes = self._call_all(hosts, [action])
        self._claimed_at = time.monotonic()
        return {name: error for name, outcome in outcomes.items() if (error := outcome.failure())}

    def _renew_claims(self, rollout_id: str, hosts: list[str]) -> None:
        if time.monotonic() - self._claimed_at > HOST_LEASE_SECONDS / 10:
            for name, error in self._claim(rollout_id, hosts).items():
                self.progress(f"  {name}: claim not renewed ({error})")

    def _release(self, rollout_id: str, hosts: list[str]) -> None:
        self._call_all(hosts, [{"op": "unlock", "rollout": rollout_id}])

    def _prepare(self, rollout) -> tuple[build.BuiltObject, list[str]]:
        """Build the control and read every host; refuse before any change if one cannot take it."""
        algorithm = rollout.algorithm
        built = build.build(algorithm.name, algorithm.source, tuple(algorithm.cflags))
        self.progress(f"built {built.name} {built.digest[:12]}{' (cached)' if built.cached else ''}")
        hosts = list(self.targets)
        failures = self._gather(hosts)
        if failures:
            for name, error in failures.items():
                self.reports[name].error = error
            raise HostFailed("nothing was changed; these hosts cannot be reached:\n  "
                             + "\n  ".join(failures.values()))
        refusals = self._preflight(hosts)
        if refusals:
            for name, reason in refusals.items():
                self.reports[name].status, self.reports[name].error = "refused", reason
            raise HostFailed("nothing was changed; these hosts cannot take a BPF congestion control:\n  "
                             + "\n  ".join(refusals.values()))
        return built, hosts

    def resume(self, rollout_id: str, rollout) -> Result:
        """Carry on a rollout whose controller died: stages that passed stay passed; the stage
        it died in is changed (again, idempotently) and baked in full; then the rest."""
        recorded = self.journal.rollout(rollout_id)
        built, hosts = self._prepare(rollout)
        if built.digest != recorded["digest"]:
            raise InvalidInput(f"rollout {rollout_id} put {recorded['algorithm']} {recorded['digest'][:12]} on "
                               f"its hosts, but the plan now builds {built.digest[:12]}: roll it back instead")
        passed = {event["stage"] for event in self.journal.events(rollout_id)
                  if event["kind"] == "verdict" and event["data"]["outcome"] in (judge.PASS, "unchanged")}
        done = 0
        while done + 1 in passed:
            done += 1
        self.journal.take_over(rollout_id, hosts)
        refused = self._claim(rollout_id, hosts)  # the dead controller's claims carry this rollout's id
        if refused:
            raise HostsLocked("another controller holds these hosts:\n  " + "\n  ".join(refused.values()))
        self.journal.set_status(rollout_id, "running")
        self.progress(f"resuming rollout {rollout_id} after stage {done}")
        return self._finish(rollout_id, hosts, self._stages(rollout_id, rollout, built, hosts, resume_after=done))

    def _stages(self, rollout_id: str, rollout, built: build.BuiltObject, hosts: list[str],
                resume_after: int | None = None) -> Result:
        """The stages in order; when resuming, the first RESUME_AFTER passed before."""
        limits, changed, verdicts = _limits(rollout), [], []
        batches = stage_batches(rollout.stages, hosts)
        for stage, batch in enumerate(batches, start=1):
            if resume_after is not None and stage <= resume_after:  # passed before the controller died
                changed.extend(batch)
                continue
            later = [name for name in hosts if name not in changed and name not in batch]
            self.progress(f"stage {stage}/{len(batches)}: {', '.join(batch)}"
                          + (f" (control: {', '.join(later)})" if later else ""))
            self._renew_claims(rollout_id, hosts)
            resumed = resume_after is not None and stage == resume_after + 1
            in_place = all(self._already_in_place(name, built, rollout) for name in batch)
            watching = resumed or not in_place  # a stage with nothing to change has nothing to bake
            if watching:
                self._start_watchers(batch, rollout)
            try:
                result = self._stage(rollout_id, rollout, built, stage, batch, later, changed, verdicts, limits,
                                     last=stage == len(batches), in_place=in_place, resumed=resumed)
            finally:
                if watching:
                    self._stop_watchers(batch)
            if result is not None:
                return result
        return Result(rollout_id, "completed", EXIT_OK, f"{built.name} is on {len(hosts)} hosts",
                      self.reports, verdicts)

    def _stage(self, rollout_id: str, rollout, built: build.BuiltObject, stage: int, batch: list[str],
               later: list[str], changed: list[str], verdicts: list[dict], limits: judge.Limits,
               last: bool, in_place: bool, resumed: bool) -> Result | None:
        """One stage: baseline, change, settle, bake, judge; a Result when the rollout ends here.
        IN_PLACE: the facts say the batch already runs the control (no baseline to measure)."""
        baselines = {}
        if not in_place:
            baselines = canary.measure_baseline({n: self.session(n) for n in batch + later},
                                                rollout.baseline_seconds, rollout.interval_seconds,
                                                self.forks)
        error = self._change(rollout_id, stage, built, rollout, batch, changed)
        if error:
            self.progress(f"  {error}")
            undone = self.roll_back_hosts(rollout_id, changed)
            status = "rolled_back" if undone else "failed"
            headline = error.splitlines()[0] + ("; rolled back" if undone else "; rollback incomplete")
            return Result(rollout_id, status, EXIT_HOST_FAILED if undone else EXIT_NEEDS_ATTENTION,
                          headline, self.reports, verdicts)
        unchanged = all(self.reports[name].status == "ok" for name in batch)
        # A resumed stage was changed by the dead controller and never judged: bake it anyway.
        if unchanged and not resumed:
            self.progress("  nothing changed: no bake needed")
            record = {"stage": stage, "hosts": batch, "outcome": "unchanged", "reasons": []}
            verdicts.append(record)
            self.journal.event(rollout_id, stage, "verdict", record)
            return None
        upgraded_too = self._sharing_an_upgrade(batch, later)
        if upgraded_too:
            self.progress(f"  {', '.join(upgraded_too)} share a kernel with this stage and run the new "
                          "version too: they no longer count as control hosts")
            later = [name for name in later if name not in upgraded_too]
        if rollout.settle_seconds > 0:
            time.sleep(rollout.settle_seconds)  # let connections opened before the change finish
        verdict = canary.bake({n: self.session(n) for n in batch}, {n: self.session(n) for n in later},
                              baselines, limits, rollout.bake_seconds, rollout.interval_seconds,
                              self.forks, self.progress, new_control=built.name)
        record = {"stage": stage, "hosts": batch, "outcome": verdict.outcome, "reasons": list(verdict.reasons),
                  "source": rollout.health.source, "figures": _figures(verdict)}
        verdicts.append(record)
        self.journal.event(rollout_id, stage, "verdict", record)
        for reason in verdict.reasons:
            self.progress(f"  {reason}")
        self.progress(f"  verdict: {verdict.outcome}")
        crash_point("after-verdict")
        if verdict.passed and rollout.pause and not last:
            if self._wait_for_operator(rollout_id, stage) == "abort":
                undone = self.roll_back_hosts(rollout_id, changed)
                return Result(rollout_id, "aborted" if undone else "failed",
                              EXIT_ROLLED_BACK if undone else EXIT_NEEDS_ATTENTION,
                              f"aborted by the operator after stage {stage}"
                              + ("; rolled back" if undone else "; rollback incomplete"), self.reports, verdicts)
        if not verdict.passed:
            message = f"stage {stage} did not pass ({verdict.outcome})"
            if rollout.on_failure == "hold":
                return Result(rollout_id, "held", EXIT_NEEDS_ATTENTION,
                              message + "; holding as the plan says", self.reports, verdicts)
            undone = self.roll_back_hosts(rollout_id, changed)
            return Result(rollout_id, "rolled_back" if undone else "failed",
                          EXIT_ROLLED_BACK if undone else EXIT_NEEDS_ATTENTION,
                          message + ("; rolled back" if undone else "; rollback incomplete"),
                          self.reports, verdicts)
        return None

    def _start_watchers(self, batch: list[str], rollout) -> None:
        """Per-control figures for the stage's hosts (host/watch.py), for as long as the stage
        can last; a host that cannot run the watcher is judged on host-wide counters."""
        health = rollout.health
        lifetime = (rollout.baseline_seconds + rollout.settle_seconds + rollout.bake_seconds
                    + health.max_extend_seconds + 60)
        outcomes = self._call_all(batch, [{"op": "watch_start", "lifetime": lifetime, "source": health.source}])
        for name, outcome in outcomes.items():
            error = outcome.failure()
            if error:
                self.progress(f"  {name}: host-wide counters only ({error})")
            elif outcome.value[-1].get("note"):
                self.progress(f"  {name}: {outcome.value[-1]['note']}")
            elif outcome.value[-1].get("source") == "trace":
                self.progress(f"  {name}: retransmissions from the tracer")

    def _stop_watchers(self, batch: list[str]) -> None:
        self._call_all(batch, [{"op": "watch_stop"}])

    def _wait_for_operator(self, rollout_id: str, stage: int) -> str:
        """The plan's manual gate: 'promote' or 'abort', as `ccrollout promote|abort` records it."""
        seen = len(self.journal.events(rollout_id))
        self.journal.set_status(rollout_id, "paused")
        self.journal.event(rollout_id, stage, "paused", {})
        self.progress(f"  paused after stage {stage}: `ccrollout promote {rollout_id}` goes on, "
                      f"`ccrollout abort {rollout_id}` rolls back")
        while True:
            self._renew_claims(rollout_id, list(self.targets))
            for event in self.journal.events(rollout_id)[seen:]:
                if event["kind"] in ("promote", "abort"):
                    self.journal.set_status(rollout_id, "running")
                    self.progress(f"  {event['kind']}d by {event['data'].get('by', 'an operator')}")
                    return event["kind"]
            time.sleep(_OPERATOR_POLL_SECONDS)

    def check(self, rollout, show_diff: bool = False) -> Result:
        """What apply would change on each host, changing nothing (Ansible's check mode)."""
        algorithm = rollout.algorithm
        built = build.build(algorithm.name, algorithm.source, tuple(algorithm.cflags))
        hosts = list(self.targets)
        unreachable = self._gather(hosts)
        would_change = 0
        for name in hosts:
            report = self.reports[name]
            if name in unreachable:
                report.status, report.error = "unreachable", unreachable[name]
                continue
            diff = self._diff(name, built, rollout)
            report.status = ("would refuse" if self.facts[name].get("problems")
                             else "would change" if diff else "ok")
            would_change += bool(diff)
            self.progress(f"{name}: {report.status}")
            for line in diff if show_diff else ():
                self.progress(f"  {line}")
        message = f"{would_change} of {len(hosts)} hosts would change; nothing was changed"
        if unreachable or self._preflight(hosts):
            return Result(None, "unreachable" if unreachable else "refused", EXIT_HOST_FAILED,
                          message, self.reports)
        return Result(None, "checked", EXIT_OK, message, self.reports)

    def _diff(self, name: str, built: build.BuiltObject, rollout) -> list[str]:
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

    def _already_in_place(self, name: str, built: build.BuiltObject, rollout) -> bool:
        """What the gathered facts say; the host side still decides (and reports) for itself."""
        facts, scope = self.facts.get(name, {}), rollout.scope
        managed = facts.get("managed", {}).get(built.name, {})
        mine = facts.get("records", {}).get(built.name, {})
        return (managed.get("digest") == built.digest and facts.get("netns") in managed.get("users", [])
                and mine.get("digests", [])[-1:] == [built.digest]
                and (not scope.default or facts.get("default") == built.name) and not scope.routes
                and (not rollout.algorithm.ecn or facts.get("ecn") == 1))

    def _sharing_an_upgrade(self, batch: list[str], others: list[str]) -> list[str]:
        """OTHERS whose namespaces were using a control this stage upgraded on their kernel:
        one kernel holds one version of a name, so they run the new one now as well."""
        touched = {(self.facts[name]["boot_id"], user) for name in batch
                   for user in self._upgraded.get(name, ())}
        return [name for name in others if name in self.facts
                and (self.facts[name]["boot_id"], self.facts[name]["netns"]) in touched]

    def _change(self, rollout_id: str, stage: int, built: build.BuiltObject, rollout, batch: list[str],
                changed: list[str]) -> str | None:
        """Load and activate on BATCH; returns the first error, with every touched host in CHANGED."""
        change_ids = {name: self.journal.intend(rollout_id, name, stage, built.name, built.digest)
                      for name in batch}
        for name in batch:
            self.reports[name].stage = stage
        changed.extend(batch)  # from here on a rollback must visit them, whatever happens
        encoded = base64.b64encode(built.path.read_bytes()).decode()

        def load(session: fleet.Session):
            action = {"op": "install", "name": built.name, "digest": built.digest}
            if built.digest not in self.facts.get(session.target.name, {}).get("objects", []):
                action["object"] = encoded  # travels with the request: one command per phase
            return session.call([action])

        def activate(session: fleet.Session):
            return session.call([{"op": "activate", "name": built.name, "digest": built.digest,
                                  "default": rollout.scope.default, "routes": list(rollout.scope.routes),
                                  "ecn": rollout.algorithm.ecn}])

        first_error = None
        ready, loaded = batch, {}
        for phase, work in (("push+load", load), ("activate", activate)):
            outcomes = self._phase(phase, ready, work)
            ready = []
            for name, outcome in outcomes.items():
                error = outcome.failure()
                if error:
                    self.reports[name].status, self.reports[name].error = "failed", error
                    self.journal.mark(change_ids[name], "failed")
                    first_error = first_error or error
                    continue
                ready.append(name)
                result = outcome.value[-1]
                if phase == "push+load":
                    loaded[name] = result["changed"]
                    if result.get("replaced"):
                        self.progress(f"  {name}: {built.name} upgraded in place from {result['replaced'][:12]}"
                                      f" (link {result['link']['link_id']} kept)")
                        self._upgraded[name] = result.get("other_users", [])
                elif loaded[name] or result["changed"]:
                    self.journal.mark(change_ids[name], "done", result.get("previous"))
                    self.reports[name].status = "changed"
                else:  # already as the plan wants: a rollback of this rollout must not touch it
                    self.journal.mark(change_ids[name], "unchanged")
                    self.reports[name].status = "ok"
            if first_error:
                return first_error
            crash_point(f"after-{phase}")
        for name in batch:
            self.progress(f"  {name}: {self.reports[name].status}")
        return None

    # -- rollback ------------------------------------------------------------

    def roll_back_hosts(self, rollout_id: str, hosts: list[str]) -> bool:
        """Undo ROLLOUT_ID's changes on HOSTS; True when every one of them is undone."""
        wanted = set(hosts)
        changes = [c for c in self.journal.changes(rollout_id, ("intended", "done", "failed"))
                   if c.host in wanted]
        return self.undo(changes)

    def undo(self, changes) -> bool:
        by_host = {change.host: change for change in changes}
        missing = [host for host in by_host if host not in self.targets]
        if missing:
            self.progress(f"  not in the inventory, cannot roll back: {', '.join(missing)}")

        def deactivate(session: fleet.Session):
            change = by_host[session.target.name]
            return session.call([{"op": "deactivate", "name": change.algorithm, "digest": change.digest,
                                  "restore": change.previous_default}])

        outcomes = self._phase("rollback", [h for h in by_host if h in self.targets], deactivate)
        crash_point("mid-rollback")  # the hosts are undone, the journal does not know yet
        undone, all_answered = self._rolled_back(outcomes)
        for name, result in undone.items():
            self.journal.mark(by_host[name].id, "undone")
            self.progress(f"  {name}: rolled back ({_undo_summary(result)})")
        all_undone = all_answered and not missing
        return all_undone

    def _rolled_back(self, outcomes: dict[str, fleet.Outcome]) -> tuple[dict[str, dict], bool]:
        """The hosts whose rollback succeeded, with their answers; whether every one did."""
        undone = {}
        for name, outcome in outcomes.items():
            error = outcome.failure()
            if error:
                self.reports[name].status, self.reports[name].error = "failed", error
                self.progress(f"  rollback failed: {error}")
                continue
            self.reports[name].status = "rolled back"
            undone[name] = outcome.value[-1]
        return undone, len(undone) == len(outcomes)

    def rollback(self, rollout_id: str, only: set[str] | None = None) -> Result:
        """Undo ROLLOUT_ID's changes (on the hosts in ONLY, for --limit; the rest wait)."""
        pending = ("intended", "done", "failed")
        changes = [c for c in self.journal.changes(rollout_id, pending) if only is None or c.host in only]
        if not changes:
            return Result(rollout_id, "nothing to do", EXIT_OK,
                          f"rollout {rollout_id} has no change left to undo"
                          + (" on these hosts" if only is not None else ""), self.reports)
        started = time.monotonic()
        undone = self.undo(changes)
        left = len(self.journal.changes(rollout_id, pending))
        status = "failed" if not undone else "partly_rolled_back" if left else "rolled_back"
        self.journal.finish_rollout(rollout_id, status)
        if status == "rolled_back":
            self._release(rollout_id, list(self.targets))  # a dead controller's claims too
        message = (f"rolled back {len(changes)} hosts in {time.monotonic() - started:.1f}s"
                   + (f"; {left} other hosts still carry this rollout" if left else "") if undone
                   else "some hosts could not be rolled back; run rollback again")
        return Result(rollout_id, status, EXIT_OK if undone else EXIT_NEEDS_ATTENTION, message, self.reports)

    def rollback_from_hosts(self) -> Result:
        """Undo whatever each host's own record says ccrollout changed there, newest first:
        the way back when the controller's journal is lost."""
        hosts = list(self.targets)
        unreachable = self._gather(hosts)
        for name, error in unreachable.items():
            self.reports[name].status, self.reports[name].error = "unreachable", error
        recorded = [name for name in hosts if self.facts.get(name, {}).get("records")]
        outcomes = self._phase("rollback", recorded, lambda s: s.call([{"op": "withdraw_all"}]))
        undone, all_answered = self._rolled_back(outcomes)
        failed = bool(unreachable) or not all_answered
        for name, result in undone.items():
            for item in result["undone"]:
                self.progress(f"  {name}: {item['name']} rolled back ({_undo_summary(item)})")
        for name in hosts:
            if name not in unreachable and name not in recorded:
                self.reports[name].status = "ok"
        message = (f"rolled back what {len(recorded)} hosts recorded; {len(hosts) - len(recorded)} had nothing"
                   if not failed else "some hosts could not be rolled back; run rollback --from-hosts again")
        return Result(None, "failed" if failed else "rolled_back",
                      EXIT_NEEDS_ATTENTION if failed else EXIT_OK, message, self.reports)
