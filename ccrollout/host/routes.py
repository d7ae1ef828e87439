"""Per-route activation: `ip route ... congctl NAME` for chosen prefixes, IPv4 and IPv6.

A prefix with a route of its own gets that route back with congctl added; a
prefix without one gets a route through the gateway and device its first
address is reached by now. What was there before is returned, so a rollback
can put it back (or delete the added route).

Routes are read as iproute2's JSON (`ip -j`). The one text kept is a route as
`ip route show` prints it, because that is the form `ip route replace` takes
back: the host's record holds it, to restore the route as it was.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess


class RouteError(Exception):
    pass


def _family(prefix: str) -> str:
    return "-6" if ipaddress.ip_network(prefix, strict=False).version == 6 else "-4"


def _ip(family: str, *args: str, as_json: bool = False):
    command = ["ip", *(["-j"] if as_json else []), family, "route", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RouteError(f"ip {family} route {' '.join(args)}: {result.stderr.strip()}")
    if not as_json:
        return result.stdout
    try:
        return json.loads(result.stdout or "[]")
    except ValueError as exc:
        raise RouteError(f"ip -j {family} route {' '.join(args)} printed no JSON: {exc}") from None


def congestion_of(route: dict) -> str | None:
    """The congctl of one route as `ip -j route` gives it (under "metrics")."""
    for metric in route.get("metrics") or []:
        if isinstance(metric, dict) and metric.get("congestion"):
            return metric["congestion"]
    return None


def prefix_of(route: dict, family: str) -> str:
    """A route's destination as a normalised prefix: "default" and bare addresses made whole."""
    destination = route.get("dst", "")
    if destination == "default":
        destination = "::/0" if family == "-6" else "0.0.0.0/0"
    try:
        return str(ipaddress.ip_network(destination, strict=False))
    except ValueError:
        return destination  # e.g. a multicast or unusual entry: shown as the kernel gives it


def exact(prefix: str) -> str | None:
    """The main table's route for exactly PREFIX, as `ip route show` prints it (to hand back
    to `ip route replace` on a rollback)."""
    lines = _ip(_family(prefix), "show", "exact", prefix).strip().splitlines()
    return lines[0].strip() if lines else None


def congctl_of(prefix: str) -> str | None:
    routes = _ip(_family(prefix), "show", "exact", prefix, as_json=True)
    return congestion_of(routes[0]) if routes else None


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


def _path_to(prefix: str) -> list[str]:
    """`via GATEWAY dev DEVICE` (or just `dev DEVICE`) by which PREFIX is reached now."""
    first = str(ipaddress.ip_network(prefix).network_address)
    routes = _ip(_family(prefix), "get", first, as_json=True)
    route = routes[0] if routes else {}
    if not route.get("dev"):
        raise RouteError(f"no route reaches {prefix}")
    return (["via", route["gateway"]] if route.get("gateway") else []) + ["dev", route["dev"]]


def activate(prefix: str, name: str, previous: str | None) -> bool:
    """Route PREFIX with congctl NAME; True when something changed."""
    if congctl_of(prefix) == name:
        return False
    if previous:
        tokens = _without_congctl(previous.split())
    else:
        tokens = [prefix, *_path_to(prefix)]
    _ip(_family(prefix), "replace", *tokens, "congctl", name)
    if congctl_of(prefix) != name:
        raise RouteError(f"the route to {prefix} does not show congctl {name} after the change")
    return True


def restore(prefix: str, name: str, previous: str | None) -> bool:
    """Put back what was routed to PREFIX before NAME; True when something changed."""
    if congctl_of(prefix) != name:
        return False  # already restored, or changed by someone else since: leave it
    if previous:
        _ip(_family(prefix), "replace", *previous.split())
    else:
        _ip(_family(prefix), "del", prefix)
    return True


def with_congctl() -> list[dict]:
    """Routes of this namespace (any table, IPv4 and IPv6) that name their own congestion
    control: prefix, congctl, device, table."""
    found = []
    for family in ("-4", "-6"):
        try:
            routes = _ip(family, "show", "table", "all", as_json=True)
        except RouteError:
            continue  # e.g. IPv6 disabled: no routes of that family
        for route in routes:
            congestion = congestion_of(route)
            if congestion:
                found.append({"prefix": prefix_of(route, family), "congctl": congestion,
                              "dev": route.get("dev"), "table": route.get("table", "main")})
    return found
