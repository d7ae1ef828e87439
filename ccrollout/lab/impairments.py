"""Per-host network knobs: the bottleneck rate (tbf on the host's eth0, toward the sink) and
random loss and CE marks (nftables in the hub, on the way into the sink, bulk traffic only)."""

from __future__ import annotations

import ipaddress

from ccrollout import units
from ccrollout.errors import LabFailed
from ccrollout.lab.base import LabPaths, lab_dir, load_state, locked, require_root, run, save_state
from ccrollout.lab.netns import (
    HOST_IFACE, HUB_NS, host_address, host_index, host_name, netns_names, sink_address)
from ccrollout.lab.traffic import TRAFFIC_PORT

DEFAULT_RATE = "50mbit"
TBF_BURST = "32kbit"
TBF_LIMIT_BYTES = 30000
NFT_TABLE = "ccrlab"
PROBABILITY_SCALE = 1_000_000  # nft numgen modulus: loss and CE in parts per million


# --- parsing the knobs ------------------------------------------------------------------

def parse_fraction(value, what: str = "value") -> float:
    """0.02, "0.02" or "2%" -> 0.02. Anything outside [0, 1] is refused."""
    if isinstance(value, bool):
        raise LabFailed(f"{what}: {value!r} is not a fraction")
    text = str(value).strip()
    try:
        fraction = units.parse_percent(text, maximum=None) if text.endswith("%") else float(text)
    except ValueError:
        raise LabFailed(f"{what}: {value!r} is neither a fraction in [0, 1] "
                        "nor a percentage like '2%'") from None
    if not 0.0 <= fraction <= 1.0:
        raise LabFailed(f"{what}: {value!r} is outside [0, 1] (use '2%' for two percent)")
    return fraction


def parse_rate(value) -> str:
    """'50mbit', '1.5gbit', 50_000_000 (bit/s) -> a rate string tc accepts."""
    try:
        if units.parse_rate(value) <= 0:
            raise ValueError("not positive")
        return units.rate_for_tc(value)
    except ValueError:
        raise LabFailed(f"rate: {value!r} is not a rate like '50mbit' or '1gbit'") from None


# --- applying them ------------------------------------------------------------------------

def apply_rate(name: str, rate: str) -> None:
    run(["tc", "-n", name, "qdisc", "replace", "dev", HOST_IFACE, "root", "tbf",
         "rate", rate, "burst", TBF_BURST, "limit", str(TBF_LIMIT_BYTES)])


def apply_hub_rules(subnet, state: dict) -> None:
    """Rebuild the hub's nftables table from the state, in one atomic transaction."""
    sink = sink_address(subnet)
    jumps, chains = [], []
    for name in sorted(state.get("impairments", {}), key=host_index):
        settings = state["impairments"][name]
        rules = []
        loss = round(settings.get("loss", 0.0) * PROBABILITY_SCALE)
        ce = round(settings.get("ce", 0.0) * PROBABILITY_SCALE)
        if loss:
            rules.append(f"numgen random mod {PROBABILITY_SCALE} < {loss} counter drop")
        if ce:
            rules.append(f"ip ecn != not-ect numgen random mod {PROBABILITY_SCALE} < {ce} "
                         "counter ip ecn set ce")
        if rules:
            source = host_address(subnet, host_index(name))
            # Only bulk traffic from that host to the sink's port: never SSH.
            jumps.append(f"ip saddr {source} ip daddr {sink} tcp dport {TRAFFIC_PORT} "
                         f"jump {name}")
            chains.append(f"  chain {name} {{\n" + "".join(f"    {r}\n" for r in rules) + "  }")
    script = "\n".join([
        f"table inet {NFT_TABLE} {{}}",
        f"delete table inet {NFT_TABLE}",
        f"table inet {NFT_TABLE} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        *(f"    {j}" for j in jumps),
        "  }",
        *chains,
        "}",
        "",
    ])
    run(["ip", "netns", "exec", HUB_NS, "nft", "-f", "-"], input=script)


def impair(host, rate=None, loss=None, ce=None, clear: bool = False) -> dict:
    """Set a host's bottleneck rate, random loss and CE-mark share (fractions in [0, 1] or
    strings like "2%"; rates like "50mbit"). Arguments left at None keep their value;
    clear=True first resets to 50mbit, no loss, no CE. Returns the host's new settings."""
    require_root()
    paths = LabPaths(lab_dir())
    with locked(paths, create=False) as is_locked:
        state = load_state(paths) if is_locked else {}
        name = host_name(host, state)
        settings = {} if clear else dict(state["impairments"].get(name, {}))
        if rate is not None:
            settings["rate"] = parse_rate(rate)
        if loss is not None:
            settings["loss"] = parse_fraction(loss, "loss")
        if ce is not None:
            settings["ce"] = parse_fraction(ce, "ce")
        settings = {k: v for k, v in settings.items()
                    if not (k == "rate" and v == DEFAULT_RATE) and v != 0.0}
        if name not in netns_names():
            raise LabFailed(f"{name} is not up: run `ccrollout lab up`")
        apply_rate(name, settings.get("rate", DEFAULT_RATE))
        state["impairments"][name] = settings
        apply_hub_rules(ipaddress.IPv4Network(state["subnet"]), state)
        save_state(paths, state)
    return describe_impairment(settings)


def describe_impairment(settings: dict) -> dict:
    return {"rate": settings.get("rate", DEFAULT_RATE), "loss": settings.get("loss", 0.0),
            "ce": settings.get("ce", 0.0)}
