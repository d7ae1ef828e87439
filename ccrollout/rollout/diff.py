"""What a rollout would change on a host, read from its gathered facts alone (pure).

The host side still decides for itself when asked to change; these only predict, for
`apply --check --diff` and for skipping the bake of a stage that has nothing to change.
"""

from ..build import BuiltObject


def diff(facts: dict, built: BuiltObject, rollout) -> list[str]:
    """The changes, one line each; empty when the host already is as the plan wants."""
    scope = rollout.scope
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


def already_in_place(facts: dict, built: BuiltObject, rollout) -> bool:
    """Whether the facts show the host running this version as the plan wants it."""
    scope = rollout.scope
    managed = facts.get("managed", {}).get(built.name, {})
    mine = facts.get("records", {}).get(built.name, {})
    return (managed.get("digest") == built.digest and facts.get("netns") in managed.get("users", [])
            and mine.get("digests", [])[-1:] == [built.digest]
            and (not scope.default or facts.get("default") == built.name) and not scope.routes
            and (not rollout.algorithm.ecn or facts.get("ecn") == 1))
