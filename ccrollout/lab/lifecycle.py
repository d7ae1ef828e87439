"""Bringing the lab up, taking it down, and saying what is up.

up() makes or repairs each part in order (client key, bpffs, hub, hosts with their rate and
sshd, impairments, known_hosts and inventory), each step a no-op when already done; down()
ends every process of the lab before it removes the namespaces, the pins and the files.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
from pathlib import Path

from ccrollout.errors import LabFailed
from ccrollout.lab import impairments, inventory, monitoring, netns, sshd, traffic
from ccrollout.lab.base import (
    LabPaths, file_identity, is_lab_entry, kill, lab_dir, load_state, locked, require_root, run,
    save_state)
from ccrollout.lab.netns import (
    HOST_NAME, HUB_NS, JUMP_HOST, ROOT_VETH, host_address, host_index, ip, lab_addresses6_in_root,
    lab_host_namespaces, lab_subnet, lab_subnet6, netns_names, pids_in_namespaces, sink_address)

DEFAULT_HOSTS = 3
MAX_HOSTS = 200


# --- up -----------------------------------------------------------------------------------

def up(hosts: int = DEFAULT_HOSTS, behind_jump=(), with_monitoring: bool = True) -> str:
    """Create the lab, or bring it to exactly lab1..lab<hosts> (adds or removes hosts,
    restarts a dead sshd, re-applies impairments). Hosts named in BEHIND_JUMP refuse SSH from
    the controller: it reaches them only through JUMP_HOST (lab1). Without WITH_MONITORING, no
    node_exporter or Prometheus runs (one that does is stopped): on 2 cores, 200 hosts'
    scrapes every second take a quarter of the machine. Idempotent. Returns the inventory
    path."""
    if isinstance(hosts, bool) or not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
        raise LabFailed(f"hosts must be a whole number from 1 to {MAX_HOSTS}, not {hosts!r}")
    behind_jump = _check_behind_jump(hosts, behind_jump)
    require_root()
    sshd.check_root_account()
    paths = LabPaths(lab_dir())
    subnet, subnet6 = lab_subnet(), lab_subnet6()
    with locked(paths, create=True):
        state = load_state(paths)
        for key, network in (("subnet", subnet), ("subnet6", subnet6)):
            if state.get(key, str(network)) != str(network) and (HUB_NS in netns_names() or lab_host_namespaces()):
                raise LabFailed(f"the lab is up on {state[key]}, not {network}: run `ccrollout lab down` first")
        _check_lab_dir(paths)
        netns.check_subnet_free(subnet, subnet6)
        try:
            _build(paths, state, hosts, behind_jump, with_monitoring)
        except LabFailed as exc:
            raise LabFailed(f"{exc} (the lab may be half up: `ccrollout lab down` "
                            "removes it)") from None
    return str(paths.inventory)


def _check_behind_jump(hosts: int, names) -> list[str]:
    names = sorted(set(names), key=lambda name: (not HOST_NAME.match(str(name)), str(name)))
    for name in names:
        if not HOST_NAME.match(str(name)) or host_index(name) > hosts or name == JUMP_HOST:
            raise LabFailed(f"behind the jump host: {name!r} is not one of lab2..lab{hosts} "
                            f"({JUMP_HOST} is the jump host)")
    return names


def _build(paths: LabPaths, state: dict, hosts: int, behind_jump: list[str], with_monitoring: bool) -> None:
    """Make the lab match `hosts`, step by step; each step is a no-op when already done."""
    subnet, subnet6 = lab_subnet(), lab_subnet6()
    old_hosts = max([state.get("hosts", 0)] + [host_index(n) for n in lab_host_namespaces()])
    state.update(subnet=str(subnet), subnet6=str(subnet6), hosts=hosts, behind_jump=behind_jump)
    state.setdefault("impairments", {})
    save_state(paths, state)            # first, so `down` knows what to clean up

    os.makedirs(sshd.SSHD_PRIVSEP_DIR, mode=0o755, exist_ok=True)
    sshd.ensure_client_key(paths)
    _ensure_bpffs(paths)
    netns.ensure_hub(subnet, subnet6)
    paths.traffic.mkdir(exist_ok=True)
    for index in range(hosts + 1, old_hosts + 1):
        _remove_host(paths, f"lab{index}")
        state["impairments"].pop(f"lab{index}", None)
    names = [f"lab{i}" for i in range(1, hosts + 1)]
    for name in names:
        _ensure_host(paths, state, name)
    impairments.apply_hub_rules(subnet, state)
    save_state(paths, state)
    sshd.wait_for_sshd(paths, subnet, names, unreachable=behind_jump)
    if with_monitoring:
        monitoring.ensure(paths, subnet, names)
    else:
        monitoring.stop(paths)
    sshd.write_known_hosts(paths, (subnet, subnet6), names)
    inventory.write_client_files(paths, subnet, names, behind_jump)
    sshd.verify_shared_bpffs(paths, names)


def _check_lab_dir(paths: LabPaths) -> None:
    st = os.stat(paths.root)
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise LabFailed(f"{paths.root} must belong to root and be writable by root only "
                        "(it holds the lab's authorized_keys)")
    foreign = [e for e in os.listdir(paths.root) if not is_lab_entry(e)]
    if foreign:
        raise LabFailed(f"{paths.root} holds files the lab did not make ({', '.join(foreign)}):"
                        " set CCROLLOUT_LAB_DIR to a new or empty directory")


def _ensure_bpffs(paths: LabPaths) -> None:
    paths.bpffs.mkdir(mode=0o700, exist_ok=True)
    if not _is_bpffs_mount(paths.bpffs):
        run(["mount", "-t", "bpf", "bpf", str(paths.bpffs)])


def _ensure_host(paths: LabPaths, state: dict, name: str) -> None:
    subnet, subnet6 = ipaddress.IPv4Network(state["subnet"]), ipaddress.IPv6Network(state["subnet6"])
    netns.ensure_host_network(subnet, subnet6, name)
    netns.set_behind_jump(subnet, subnet6, name, name in state["behind_jump"])
    impairment = state["impairments"].get(name, {})
    impairments.apply_rate(name, impairment.get("rate", impairments.DEFAULT_RATE))
    paths.state_dir(name).mkdir(parents=True, exist_ok=True)
    # The jump host may open SSH to the hosts behind it, and only to those.
    forward_to = [host_address(network, host_index(hidden)) for hidden in state["behind_jump"]
                  for network in (subnet, subnet6)]
    sshd.ensure_sshd(paths, (subnet, subnet6), name, forward_to if name == JUMP_HOST else ())


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first, in this mount namespace."""
    found = []
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4]
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
            if point == str(path) or point.startswith(prefix):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _is_bpffs_mount(path: Path) -> bool:
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            if fields[4] == str(path) and fields[fields.index("-") + 1] == "bpf":
                return True
    return False


# --- down ---------------------------------------------------------------------------------

def _lab_namespace_ids(paths: LabPaths, names) -> set:
    """Network namespaces of the lab: the named ones, plus any that a process of the lab still
    holds after its name is gone (a daemon or sshd session outlives `ip netns del`)."""
    namespace_ids = {file_identity(f"/run/netns/{n}") for n in names} - {None}
    for pid in sshd.lab_sshd_pids(paths) + traffic.traffic_pids():
        namespace_ids.add(file_identity(f"/proc/{pid}/ns/net"))
    # Never the controller's own namespace (someone may run the traffic program there by hand).
    namespace_ids -= {None, file_identity("/proc/1/ns/net"), file_identity("/proc/self/ns/net")}
    return namespace_ids


def _remove_host(paths: LabPaths, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (paths.traffic / f"{name}.pid").unlink()
    leftover = kill(pids_in_namespaces({file_identity(f"/run/netns/{name}")} - {None}))
    if leftover:
        raise LabFailed(f"{name}: processes {leftover} do not end")
    if name in netns_names():
        ip("netns", "del", name)
    shutil.rmtree(paths.sshd_dir(name), ignore_errors=True)
    shutil.rmtree(paths.state_dir(name), ignore_errors=True)


# The kernel's own preloaded iterators in every bpffs root; they cannot be unlinked.
_BPFFS_PRELOADED = {"maps.debug", "progs.debug"}


def _remove_pins(bpffs: Path) -> None:
    """Unlink every pin (a struct_ops link pin going away unregisters its control)."""
    for top, dirs, files in os.walk(bpffs, topdown=False):
        for entry in files:
            if top == str(bpffs) and entry in _BPFFS_PRELOADED:
                continue
            os.unlink(os.path.join(top, entry))
        for entry in dirs:
            path = os.path.join(top, entry)
            if os.path.islink(path):
                os.unlink(path)
            else:
                os.rmdir(path)


def down() -> None:
    """Remove every trace of the lab: traffic, sshd daemons and their sessions (every process
    in the lab's namespaces), the namespaces, the controller's veth, the pins and the bpffs
    mount, and the lab directory. Safe to run when nothing (or half a lab) is up."""
    require_root()
    paths = LabPaths(lab_dir())
    with locked(paths, create=False):
        names = lab_host_namespaces() + ([HUB_NS] if HUB_NS in netns_names() else [])
        namespace_ids = _lab_namespace_ids(paths, names)
        kill(traffic.traffic_pids())
        monitoring.stop(paths)
        stuck = kill(pids_in_namespaces(namespace_ids))
        if stuck:
            raise LabFailed(f"lab processes {sorted(stuck)} do not end, even on SIGKILL")
        if ROOT_VETH in netns.links():
            ip("link", "del", ROOT_VETH)
        for name in names:
            ip("netns", "del", name)
        try:
            if paths.bpffs.is_dir() and _is_bpffs_mount(paths.bpffs):
                _remove_pins(paths.bpffs)
        except OSError as exc:
            raise LabFailed(f"cannot remove pins under {paths.bpffs}: {exc}") from None
        for point in _mounts_under(paths.root):
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "--lazy", point])
        if _mounts_under(paths.root):
            raise LabFailed(f"{paths.root} still has mounts: {_mounts_under(paths.root)}")
        _remove_lab_files(paths)
    left = leftovers()
    if left:
        raise LabFailed("the lab is not fully down: " + "; ".join(left))


def _remove_lab_files(paths: LabPaths) -> None:
    """Remove what the lab made in its directory, then the directory if that left it empty
    (so a CCROLLOUT_LAB_DIR pointed at the wrong place never loses anything else)."""
    if not paths.root.is_dir():
        return
    for entry in os.listdir(paths.root):
        if not is_lab_entry(entry):
            continue
        path = paths.root / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    with contextlib.suppress(OSError):
        paths.root.rmdir()


def leftovers() -> list[str]:
    """What of the lab still exists (empty after a clean `down`)."""
    paths = LabPaths(lab_dir())
    found = [f"namespace {n}" for n in lab_host_namespaces()]
    if HUB_NS in netns_names():
        found.append(f"namespace {HUB_NS}")
    if os.path.exists(f"/sys/class/net/{ROOT_VETH}"):
        found.append(f"link {ROOT_VETH}")
    found += [f"address {a}" for a in lab_addresses6_in_root(lab_subnet6())]
    found += [f"mount {m}" for m in _mounts_under(paths.root)]
    found += [f"process {p} (sshd)" for p in sshd.lab_sshd_pids(paths)]
    found += [f"process {p}" for p in traffic.traffic_pids()]
    found += [f"process {p} (monitoring)" for p in monitoring.monitoring_pids(paths)]
    if paths.root.is_dir():
        entries = os.listdir(paths.root)
        ours = [e for e in entries if is_lab_entry(e)]
        if ours or not entries:
            found.append(f"{paths.root}: {', '.join(sorted(ours)) or 'empty directory'}")
    return found


# --- status -------------------------------------------------------------------------------

def status() -> dict:
    """What is up. Shape::

        {"up": bool, "lab_dir": str, "subnet": str, "inventory": str | None,
         "bpffs": bool, "hub": {"namespace": bool, "address": str, "sink": bool},
         "hosts": {"lab1": {"namespace": bool, "address": str, "sshd": bool,
                            "sshd_pid": int | None, "traffic": bool, "node_exporter_pid": int | None,
                            "impairment": {"rate": str, "loss": float, "ce": float}}},
         "traffic": bool,
         "prometheus": {"url": str, "running": bool, "pid": int | None, "targets_up": int | None}}
    """
    require_root()
    paths = LabPaths(lab_dir())
    state = load_state(paths)
    subnet = ipaddress.IPv4Network(state.get("subnet") or str(lab_subnet()))
    subnet6 = ipaddress.IPv6Network(state.get("subnet6") or str(lab_subnet6()))
    namespaces = set(netns_names())
    count = max([state.get("hosts", 0)] + [host_index(n) for n in lab_host_namespaces()])
    hosts = {}
    for index in range(1, count + 1):
        name = f"lab{index}"
        pid = sshd.sshd_pid(paths, name)
        hosts[name] = {
            "namespace": name in namespaces,
            "address": host_address(subnet, index),
            "address6": host_address(subnet6, index),
            "behind_jump": name in state.get("behind_jump", []),
            "sshd": pid is not None,
            "sshd_pid": pid,
            "traffic": traffic.sender_pid(paths, name) is not None,
            "node_exporter_pid": monitoring.exporter_pid(paths, name),
            "impairment": impairments.describe_impairment(
                state.get("impairments", {}).get(name, {})),
        }
    bpffs = paths.bpffs.is_dir() and _is_bpffs_mount(paths.bpffs)
    hub = {"namespace": HUB_NS in namespaces, "address": sink_address(subnet),
           "sink": traffic.sink_pid(paths) is not None}
    expected = state.get("hosts", 0)
    return {
        "up": bool(expected) and bpffs and hub["namespace"]
              and os.path.exists(f"/sys/class/net/{ROOT_VETH}")
              and all(hosts[f"lab{i}"]["namespace"] and hosts[f"lab{i}"]["sshd"]
                      for i in range(1, expected + 1)),
        "lab_dir": str(paths.root),
        "subnet": str(subnet),
        "subnet6": str(subnet6),
        "inventory": str(paths.inventory) if paths.inventory.exists() else None,
        "bpffs": bpffs,
        "hub": hub,
        "hosts": hosts,
        "traffic": hub["sink"] or any(h["traffic"] for h in hosts.values()),
        "prometheus": monitoring.status(paths),
    }
