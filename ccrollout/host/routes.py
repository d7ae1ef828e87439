"""Per-route activation: `ip route ... congctl NAME` for chosen prefixes.

A prefix with a route of its own gets that route back with congctl added; a
prefix without one gets a route through the gateway and device its first
address is reached by now. What was there before is returned, so a rollback
can put it back (or delete the added route).
"""

from __future__ import annotations

import ipaddress
import subprocess


class RouteError(Exception):
    pass


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", "-4", "route", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RouteError(f"ip route {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _without_congctl(tokens: list[str]) -> list[str]:
    kept, skip = [], 0
    for token in tokens:
        if skip:
            skip -= 1
            if token == "lock":  # "congctl lock NAME"
                skip = 1
            continue
        if token == "congctl":
            skip = 1
            continue
        kept.append(token)
    return kept


def exact(prefix: str) -> str | None:
    """The main table's route for exactly PREFIX, as `ip route show` prints it."""
    lines = _ip("show", "exact", prefix).strip().splitlines()
    return lines[0].strip() if lines else None


def congctl_of(prefix: str) -> str | None:
    route = exact(prefix)
    tokens = route.split() if route else []
    if "congctl" in tokens:
        following = tokens[tokens.index("congctl") + 1:]
        return following[1] if following and following[0] == "lock" else (following or [None])[0]
    return None


def _path_to(prefix: str) -> list[str]:
    """`via GATEWAY dev DEVICE` (or just `dev DEVICE`) by which PREFIX is reached now."""
    first = str(ipaddress.IPv4Network(prefix).network_address)
    tokens = _ip("get", first).split()
    path = []
    for keyword in ("via", "dev"):
        if keyword in tokens:
            path += [keyword, tokens[tokens.index(keyword) + 1]]
    if "dev" not in path:
        raise RouteError(f"no route reaches {prefix}")
    return path


def activate(prefix: str, name: str, previous: str | None) -> bool:
    """Route PREFIX with congctl NAME; True when something changed."""
    if congctl_of(prefix) == name:
        return False
    if previous:
        tokens = _without_congctl(previous.split())
    else:
        tokens = [prefix, *_path_to(prefix)]
    _ip("replace", *tokens, "congctl", name)
    if congctl_of(prefix) != name:
        raise RouteError(f"the route to {prefix} does not show congctl {name} after the change")
    return True


def restore(prefix: str, name: str, previous: str | None) -> bool:
    """Put back what was routed to PREFIX before NAME; True when something changed."""
    if congctl_of(prefix) != name:
        return False  # already restored, or changed by someone else since: leave it
    if previous:
        _ip("replace", *previous.split())
    else:
        _ip("del", prefix)
    return True
