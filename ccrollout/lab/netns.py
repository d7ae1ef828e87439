"""The lab's network: the hub namespace with its bridge, one namespace per host joined to
the bridge by a veth, the controller's veth from the root namespace, and their addresses:
each has one in the lab's IPv4 /24 and one in its IPv6 /64 (a private ULA prefix), at the
same offsets; and the rule that keeps a host "behind the jump host" from the controller."""

from __future__ import annotations

import ipaddress
import json
import os
import re

from ccrollout.errors import LabFailed
from ccrollout.lab.base import file_identity, run

DEFAULT_SUBNET = "10.199.0.0/24"
DEFAULT_SUBNET6 = "fd63:6372:6c61::/64"  # a ULA prefix (fc00::/7): never routed beyond this machine
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
SSH_PORT = 22
JUMP_HOST = "lab1"             # the one lab host that may forward SSH to hosts behind it
BEHIND_JUMP_TABLE = "ccrlab_behind_jump"


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


def lab_subnet6() -> ipaddress.IPv6Network:
    """The lab's IPv6 /64: CCROLLOUT_LAB_SUBNET6 or the default, a unique local prefix."""
    text = os.environ.get("CCROLLOUT_LAB_SUBNET6", "").strip() or DEFAULT_SUBNET6
    try:
        net = ipaddress.IPv6Network(text, strict=True)
    except ValueError as exc:
        raise LabFailed(f"CCROLLOUT_LAB_SUBNET6={text!r} is not an IPv6 network: {exc}") from None
    if net.prefixlen != 64 or not net.subnet_of(ipaddress.IPv6Network("fc00::/7")):
        raise LabFailed(f"CCROLLOUT_LAB_SUBNET6={text!r} must be a unique local /64 (within fc00::/7)")
    return net


def address(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, offset: int) -> str:
    """The lab's address at OFFSET in SUBNET (the same offsets in both families)."""
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


def check_subnet_free(subnet, subnet6) -> None:
    """Neither of the lab's networks may overlap an address of this machine's (but the lab's own)."""
    for family, network, variable in (("-4", subnet, "CCROLLOUT_LAB_SUBNET"),
                                      ("-6", subnet6, "CCROLLOUT_LAB_SUBNET6")):
        proc = ip("-j", family, "addr", "show")
        for link in json.loads(proc.stdout or "[]"):
            if link["ifname"] == ROOT_VETH:
                continue
            for addr in link.get("addr_info", []):
                taken = ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
                if taken.overlaps(network):
                    raise LabFailed(f"{network} overlaps {addr['local']}/{addr['prefixlen']} on "
                                    f"{link['ifname']}: set {variable} to a free one")


def lab_addresses6_in_root(subnet6) -> list[str]:
    """Addresses of the lab's /64 still on a link of the root namespace (none once it is down)."""
    proc = ip("-j", "-6", "addr", "show", check=False)
    found = []
    for link in json.loads(proc.stdout or "[]") if proc.returncode == 0 else []:
        for addr in link.get("addr_info", []):
            if ipaddress.ip_address(addr["local"]) in subnet6:
                found.append(f"{addr['local']} on {link['ifname']}")
    return found


def _add_address6(address6: str, device: str, ns=None) -> None:
    # nodad: usable at once, not "tentative" for the second duplicate detection takes.
    ip("-6", "addr", "replace", f"{address6}/64", "dev", device, "nodad", ns=ns)


def ensure_hub(subnet, subnet6) -> None:
    if HUB_NS not in netns_names():
        ip("netns", "add", HUB_NS)
    hub_links = links(HUB_NS)
    ip("link", "set", "lo", "up", ns=HUB_NS)
    if BRIDGE not in hub_links:
        ip("link", "add", BRIDGE, "type", "bridge", ns=HUB_NS)
    ip("addr", "replace", f"{address(subnet, HUB_OFFSET)}/24", "dev", BRIDGE, ns=HUB_NS)
    _add_address6(address(subnet6, HUB_OFFSET), BRIDGE, ns=HUB_NS)
    ip("link", "set", BRIDGE, "up", ns=HUB_NS)
    if ROOT_VETH not in links() or HUB_ROOT_VETH not in hub_links:
        ip("link", "del", ROOT_VETH, check=False)
        ip("link", "add", ROOT_VETH, "type", "veth", "peer", "name", HUB_ROOT_VETH,
           "netns", HUB_NS)
    ip("link", "set", HUB_ROOT_VETH, "master", BRIDGE, "up", ns=HUB_NS)
    ip("addr", "replace", f"{address(subnet, ROOT_OFFSET)}/24", "dev", ROOT_VETH)
    _add_address6(address(subnet6, ROOT_OFFSET), ROOT_VETH)
    ip("link", "set", ROOT_VETH, "up")


def ensure_host_network(subnet, subnet6, name: str) -> None:
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
    _add_address6(host_address(subnet6, index), HOST_IFACE, ns=name)
    ip("link", "set", HOST_IFACE, "up", ns=name)


def set_behind_jump(subnet, subnet6, name: str, behind: bool) -> None:
    """Whether host NAME refuses SSH from the controller's addresses (an nftables table in its
    own namespace, gone with it), so that only another lab host can reach its sshd."""
    if behind:
        controller, controller6 = address(subnet, ROOT_OFFSET), address(subnet6, ROOT_OFFSET)
        script = "\n".join([
            f"table inet {BEHIND_JUMP_TABLE} {{}}", f"delete table inet {BEHIND_JUMP_TABLE}",
            f"table inet {BEHIND_JUMP_TABLE} {{", "  chain input {",
            "    type filter hook input priority filter; policy accept;",
            f"    ip saddr {controller} tcp dport {SSH_PORT} drop",
            f"    ip6 saddr {controller6} tcp dport {SSH_PORT} drop", "  }", "}", ""])
        run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=script)
    else:
        run(["ip", "netns", "exec", name, "nft", "delete", "table", "inet", BEHIND_JUMP_TABLE], check=False)
