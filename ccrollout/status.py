"""Every status word ccrollout uses, once: of a rollout, a change on a host, a host in a
command's report, and a stage's verdict. The values are what the journal and --json carry."""

from enum import StrEnum


class RolloutStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    PARTLY_ROLLED_BACK = "partly_rolled_back"   # rollback --limit: the other hosts keep it
    ABORTED = "aborted"                         # the operator said abort at a pause
    HELD = "held"                               # a stage failed and the plan said hold
    FAILED = "failed"                           # a rollback did not complete
    REFUSED = "refused"                         # another controller held some of its hosts


# A finished rollout no longer holds its hosts; any other keeps them until rolled back.
FINISHED = frozenset({RolloutStatus.COMPLETED, RolloutStatus.ROLLED_BACK, RolloutStatus.ABORTED,
                      RolloutStatus.REFUSED})
# Still carried by a controller, when it lives.
ACTIVE = frozenset({RolloutStatus.RUNNING, RolloutStatus.PAUSED})


class ChangeState(StrEnum):
    INTENDED = "intended"     # journaled before the host was asked
    DONE = "done"
    UNCHANGED = "unchanged"   # the host already was as planned: a rollback leaves it alone
    FAILED = "failed"
    UNDONE = "undone"


# Changes a rollback still has to visit.
PENDING = (ChangeState.INTENDED, ChangeState.DONE, ChangeState.FAILED)


class HostStatus(StrEnum):
    UNTOUCHED = "untouched"
    OK = "ok"
    CHANGED = "changed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    WOULD_CHANGE = "would change"
    WOULD_REFUSE = "would refuse"


class StageOutcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    UNCHANGED = "unchanged"   # nothing to change in the stage, so nothing was baked


class HostRole(StrEnum):  # a host's part in a stage, as the journal's interval events record it
    CANARY = "canary"     # changed in the stage
    CONTROL = "control"   # compared with, not changed


class StagePhase(StrEnum):  # when a stage's interval was sampled
    BASELINE = "baseline"   # before the change
    BAKE = "bake"           # after the change and the settle


class MetricOutcome(StrEnum):
    """What the judge made of one metric of one host."""
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    UNJUDGED = "unjudged"     # the figures did not carry it, or too little traffic to judge it
