"""The lab's network: the hub namespace with its bridge, one namespace per host joined to
the bridge by a veth, the controller's veth from the root namespace, and their addresses."""

from __future__ import annotations

import ipaddress
import json
import os
import re

from ccrollout.errors import LabFailed
from ccrollout.lab.base import file_identity, run

DEFAULT_SUBNET = "10.199.0.0/24"
HUB_NS = "ccrlab"
BRIDGE = "ccrbr0"
ROOT_VETH = "ccrlab0"          # root namespace side of the controller's veth
HUB_ROOT_VETH = "vroot"        # its peer on the bridge
HOST_IFACE = "eth0"
HUB_OFFSET = 1                 # .1  : the hub's bridge and the traffic sink
HOST_OFFSET = 10               # .10+i: host lab<i>
ROOT_OFFSET = 254              # .254: the controller in the root namespace
# A new namespace inherits the initial namespace's default (bbr on these machines), whose
# retransmissions on the lab's small bottleneck queue swing between 3 % and 25 % and make
# every baseline noise. reno is steady (~1 %) and, unlike cubic, any namespace may choose it.
HOST_DEFAULT_CONGESTION = "reno"
HOST_NAME = re.compile(r"^lab([1-9][0-9]*)$")


# --- addresses and names ------------------------------------------------------------------

def lab_subnet() -> ipaddress.IPv4Network:
    """The lab's /24: CCROLLOUT_LAB_SUBNET or the default."""
    text = os.environ.get("CCROLLOUT_LAB_SUBNET", "").strip() or DEFAULT_SUBNET
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise LabFailed(f"CCROLLOUT_LAB_SUBNET={text!r} is not an IPv4 network: {exc}") from None
    if net.prefixlen != 24 or not net.is_private:
        raise LabFailed(f"CCROLLOUT_LAB_SUBNET={text!r} must be a private /24")
    return net


def address(subnet: ipaddress.IPv4Network, offset: int) -> str:
    return str(subnet.network_address + offset)


def sink_address(subnet) -> str:
    return address(subnet, HUB_OFFSET)


def host_address(subnet, index: int) -> str:
    return address(subnet, HOST_OFFSET + index)


def host_index(name: str) -> int:
    return int(HOST_NAME.match(name).group(1))


def host_name(host, state: dict) -> str:
    """The name of a host of the lab given as 'lab2', 2 or its address."""
    hosts = state.get("hosts", 0)
    name = f"lab{host}" if isinstance(host, int) and not isinstance(host, bool) else str(host)
    subnet = state.get("subnet")
    if subnet and not HOST_NAME.match(name):
        for index in range(1, hosts + 1):     # an address works too
            if name == host_address(ipaddress.IPv4Network(subnet), index):
                name = f"lab{index}"
    match = HOST_NAME.match(name)
    if not match or int(match.group(1)) > hosts:
        have = f"lab1..lab{hosts}" if hosts else "no hosts: run `ccrollout lab up`"
        raise LabFailed(f"unknown lab host {host!r} (the lab has {have})")
    return name


# --- namespaces and links -----------------------------------------------------------------

def ip(*args, ns=None, check=True):
    return run(["ip", *(["-n", ns] if ns else []), *map(str, args)], check=check)


def netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def lab_host_namespaces() -> list[str]:
    return sorted((n for n in netns_names() if HOST_NAME.match(n)), key=host_index)


def links(ns=None) -> set[str]:
    proc = ip("-j", "link", "show", ns=ns, check=False)
    if proc.returncode != 0:
        return set()
    return {link["ifname"] for link in json.loads(proc.stdout or "[]")}


def pids_in_namespaces(identities: set) -> list[int]:
    """Every process whose network namespace is one of `identities` (like `ip netns pids`)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            if file_identity(f"/proc/{entry}/ns/net") in identities:
                pids.append(int(entry))
    return pids


def check_subnet_free(subnet) -> None:
    proc = ip("-j", "-4", "addr", "show")
    for link in json.loads(proc.stdout or "[]"):
        if link["ifname"] == ROOT_VETH:
            continue
        for addr in link.get("addr_info", []):
            network = ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
            if network.overlaps(subnet):
                raise LabFailed(f"{subnet} overlaps {addr['local']}/{addr['prefixlen']} on "
                                f"{link['ifname']}: set CCROLLOUT_LAB_SUBNET to a free /24")


def ensure_hub(subnet) -> None:
    if HUB_NS not in netns_names():
        ip("netns", "add", HUB_NS)
    hub_links = links(HUB_NS)
    ip("link", "set", "lo", "up", ns=HUB_NS)
    if BRIDGE not in hub_links:
        ip("link", "add", BRIDGE, "type", "bridge", ns=HUB_NS)
    ip("addr", "replace", f"{address(subnet, HUB_OFFSET)}/24", "dev", BRIDGE, ns=HUB_NS)
    ip("link", "set", BRIDGE, "up", ns=HUB_NS)
    if ROOT_VETH not in links() or HUB_ROOT_VETH not in hub_links:
        ip("link", "del", ROOT_VETH, check=False)
        ip("link", "add", ROOT_VETH, "type", "veth", "peer", "name", HUB_ROOT_VETH,
           "netns", HUB_NS)
    ip("link", "set", HUB_ROOT_VETH, "master", BRIDGE, "up", ns=HUB_NS)
    ip("addr", "replace", f"{address(subnet, ROOT_OFFSET)}/24", "dev", ROOT_VETH)
    ip("link", "set", ROOT_VETH, "up")


def ensure_host_network(subnet, name: str) -> None:
    """The host's namespace, its eth0 on the hub's bridge, and its address."""
    index = host_index(name)
    if name not in netns_names():
        ip("netns", "add", name)
        # Only when made: a rollout may have changed it since, and `up` must not undo that.
        run(["ip", "netns", "exec", name, "sysctl", "-qw",
             f"net.ipv4.tcp_congestion_control={HOST_DEFAULT_CONGESTION}"])
    ip("link", "set", "lo", "up", ns=name)
    hub_side = f"v{name}"
    if hub_side not in links(HUB_NS) or HOST_IFACE not in links(name):
        ip("link", "del", hub_side, ns=HUB_NS, check=False)
        ip("link", "del", HOST_IFACE, ns=name, check=False)
        ip("link", "add", hub_side, "type", "veth", "peer", "name", HOST_IFACE,
           "netns", name, ns=HUB_NS)
        # A host made again (after `up` with fewer hosts) has a new MAC address: forget the
        # old one, or the controller and the sink talk to it only after ARP gives up (~10 s).
        host = host_address(subnet, index)
        ip("neigh", "flush", "to", host, check=False)
        ip("neigh", "flush", "to", host, ns=HUB_NS, check=False)
    ip("link", "set", hub_side, "master", BRIDGE, "up", ns=HUB_NS)
    ip("addr", "replace", f"{host_address(subnet, index)}/24", "dev", HOST_IFACE, ns=name)
    ip("link", "set", HOST_IFACE, "up", ns=name)
