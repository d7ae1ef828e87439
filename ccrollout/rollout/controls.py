"""The control group: a bounded sample of the hosts not changed yet, never all of them.

At fleet scale a bake cannot read every unchanged host every interval. The sample is
reproducible (seeded by the rollout and the stage), spread across the inventory's
groups (round robin over them, so one large group does not crowd out the others), and
recorded in the journal with the stage.
"""

import random
from collections.abc import Sequence

from ..plan import Stage, stage_batches

# Without a size in the plan: as many controls as the stage has hosts, within these bounds
# (the judge pools the controls, so a few dozen tell as much as thousands would).
MIN_DEFAULT_CONTROLS = 2
MAX_DEFAULT_CONTROLS = 50


def control_count(size: Stage | None, stage_hosts: int, all_hosts: int) -> int:
    """How many control hosts a stage wants: the plan's size (a number, or a percentage of
    all the rollout's hosts), else about the stage's own size."""
    if size is None:
        return min(max(stage_hosts, MIN_DEFAULT_CONTROLS), MAX_DEFAULT_CONTROLS)
    return size.batch_size(all_hosts) if size.size > 0 else 0


def plan_stages(rollout, hosts: list[str], seed: str,
                group_of: dict[str, str] | None = None) -> list[tuple[list[str], list[str]]]:
    """Each stage's hosts and its controls, drawn from the hosts later stages change."""
    batches = stage_batches(rollout.stages, hosts)
    planned = []
    for index, batch in enumerate(batches):
        later = [name for later_batch in batches[index + 1:] for name in later_batch]
        count = control_count(rollout.control, len(batch), len(hosts))
        planned.append((batch, choose_controls(later, count, f"{seed}/{index + 1}", group_of)))
    return planned


def choose_controls(candidates: Sequence[str], count: int, seed: str,
                    group_of: dict[str, str] | None = None) -> list[str]:
    """COUNT of CANDIDATES (in their order), drawn reproducibly by SEED, taking turns over
    the groups in GROUP_OF (host -> its group); all of them when there are no more."""
    if count >= len(candidates):
        return list(candidates)
    group_of = group_of or {}
    buckets: dict[str, list[str]] = {}
    for host in candidates:
        buckets.setdefault(group_of.get(host, ""), []).append(host)
    for group, hosts in buckets.items():
        random.Random(f"{seed}/{group}").shuffle(hosts)
    order = [random.Random(seed).sample(sorted(buckets), len(buckets))]
    chosen: set[str] = set()
    while len(chosen) < count:
        for group in order[0]:
            if buckets[group] and len(chosen) < count:
                chosen.add(buckets[group].pop())
    return [host for host in candidates if host in chosen]


def group_key(groups: Sequence[str]) -> str:
    """The group a host is spread by: its most specific named group (the last one the
    inventory lists it in), or '' for hosts in no group but all/ungrouped."""
    named = [group for group in groups if group not in ("all", "ungrouped")]
    return named[-1] if named else ""
