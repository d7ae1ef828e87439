"""Read-only probes of the host this code runs on. Nothing here changes anything."""

import os
import platform

from . import layout

_SYSCTL = "/proc/sys/net/ipv4/"


def read_text(path: str, default: str = "") -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return default


def default_congestion_control() -> str:
    return read_text(_SYSCTL + "tcp_congestion_control")


def available_congestion_controls() -> list[str]:
    return read_text(_SYSCTL + "tcp_available_congestion_control").split()


def allowed_congestion_controls() -> list[str]:
    return read_text(_SYSCTL + "tcp_allowed_congestion_control").split()


def boot_id() -> str:
    """Hosts with the same boot id share one kernel, and so one registry of controls."""
    return read_text("/proc/sys/kernel/random/boot_id")


def netns_id() -> str:
    """The inode of this network namespace: unique among namespaces of one kernel."""
    return str(os.stat("/proc/self/ns/net").st_ino)


def bpffs_mounted(path: str = layout.BPFFS) -> bool:
    for line in read_text("/proc/self/mounts").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == path and fields[2] == "bpf":
            return True
    return False


def tcp_counters() -> dict[str, int]:
    """Tcp (RFC 1213) and TcpExt counters of this network namespace, by name."""
    counters: dict[str, int] = {}
    for path, prefixes in (("/proc/net/snmp", ("Tcp:",)), ("/proc/net/netstat", ("TcpExt:",))):
        lines = read_text(path).splitlines()
        for header, values in zip(lines, lines[1:]):
            if header.startswith(prefixes) and values.startswith(prefixes):
                for name, value in zip(header.split()[1:], values.split()[1:]):
                    counters[name] = int(value)
    return counters


def managed_controls() -> dict[str, dict]:
    """Controls ccrollout has loaded on this kernel, as its pins in bpffs show them."""
    managed = {}
    if not os.path.isdir(layout.PIN_ROOT):
        return managed
    for name in sorted(os.listdir(layout.PIN_ROOT)):
        control_dir = layout.control_dir(name)
        if not os.path.isdir(control_dir):
            continue
        managed[name] = {
            "pinned": os.path.exists(layout.link_pin(name)),
            "digest": layout.loaded_digest(name),
            "users": layout.users(name),
        }
    return managed


def summary() -> dict:
    return {
        "kernel": platform.release(),
        "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
        "bpffs": bpffs_mounted(),
        "boot_id": boot_id(),
        "netns": netns_id(),
        "default": default_congestion_control(),
        "available": available_congestion_controls(),
        "allowed": allowed_congestion_controls(),
        "managed": managed_controls(),
    }
