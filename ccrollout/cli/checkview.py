"""What `check` says beyond "ok": comparisons the judge can never make significant, and,
with an inventory, each stage's hosts and control hosts. Nothing here reaches a host.

The controls are those `apply` would draw: the hosts of later stages, as many as the plan
asks for. When the stage wants fewer than there are, which ones depends on the built
object's digest (the draw's seed), so they are named by `apply --check`, which builds it.
"""

from ..rollout import controls, sensitivity


def stage_lines(rollout, hosts: list) -> list[str]:
    """One line per stage: its hosts, and its controls (or how many, from which hosts)."""
    names = [host.name for host in hosts]
    stages = list(_batches_and_later(rollout, names))
    lines = [f"rollout {rollout.name}: {len(names)} hosts ({rollout.hosts}) in {len(stages)} stages"]
    for number, (batch, later) in enumerate(stages, start=1):
        wanted = controls.control_count(rollout.control, len(batch), len(names))
        if not later or wanted == 0:
            chosen = "no control hosts: " + ("no later stage" if not later else "control: 0")
        elif wanted >= len(later):
            chosen = f"control: {', '.join(later)}"
        else:
            chosen = (f"control: {wanted} of {_shortened(later)}, drawn by the built object's digest "
                      f"(`apply --check` names them)")
        lines.append(f"  stage {number}: {', '.join(batch)} ({chosen})")
    return lines


def _batches_and_later(rollout, names: list[str]):
    from ..plan import stage_batches
    batches = stage_batches(rollout.stages, names)
    for index, batch in enumerate(batches):
        yield batch, [name for later in batches[index + 1:] for name in later]


def _shortened(names: list[str], shown: int = 6) -> str:
    return ", ".join(names) if len(names) <= shown else f"{', '.join(names[:shown])} and {len(names) - shown} more"


def warnings(rollout, hosts: list | None) -> list[str]:
    """A warning for each comparison that can never reach the plan's significance: the
    baseline's (the same in every stage), and with HOSTS each stage's controls'."""
    found = []
    baseline = sensitivity.baseline_shortfall(rollout)
    if baseline:
        found.append(f"rollout {rollout.name}, every stage: {baseline.describe(rollout)}")
    if hosts is None:
        return found
    names = [host.name for host in hosts]
    untested = []
    for number, (batch, later) in enumerate(_batches_and_later(rollout, names), start=1):
        count = min(controls.control_count(rollout.control, len(batch), len(names)), len(later))
        shortfall = sensitivity.control_shortfall(rollout, count, len(later))
        if shortfall:
            found.append(f"rollout {rollout.name}, stage {number}: {shortfall.describe(rollout)}")
        if baseline and (count == 0 or shortfall):
            untested.append(number)
    if untested:
        found.append(f"rollout {rollout.name}, stage{'s' if len(untested) > 1 else ''} "
                     f"{', '.join(map(str, untested))}: no comparison can reach significance "
                     f"{rollout.limits.significance:g} (too short a baseline, and too few control hosts or "
                     "none), so a rise fails a host only when every bake interval is above every "
                     "reference interval")
    return found
