"""Read-only probes of the host this code runs on. Nothing here changes anything."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from . import layout, protocol, routes, state
from .errors import ActionError
from .libbpf import MIN_VERSION, LibbpfError, shared

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


def initial_netns_id() -> str | None:
    """The network namespace of pid 1: the one that may change kernel-wide TCP settings."""
    try:
        return str(os.stat("/proc/1/ns/net").st_ino)
    except OSError:
        return None


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


def tcp_ecn() -> int | None:
    value = read_text(_SYSCTL + "tcp_ecn")
    return int(value) if value.isdigit() else None


def routes_with_congctl() -> list[dict]:
    """Routes of this namespace (any table, IPv4 and IPv6) that name their own congestion control."""
    return routes.with_congctl()


def _btf_mentions(*names: str) -> dict[str, bool]:
    """Whether the kernel's BTF names these types: how struct_ops features are told apart."""
    try:
        with open("/sys/kernel/btf/vmlinux", "rb") as handle:
            btf = handle.read()
    except OSError:
        return {name: False for name in names}
    return {name: b"\0" + name.encode() + b"\0" in btf for name in names}


def kernel_features() -> dict[str, bool]:
    found = _btf_mentions("bpf_struct_ops_tcp_congestion_ops", "bpf_struct_ops_link")
    return {"btf": os.path.exists("/sys/kernel/btf/vmlinux"),
            "struct_ops": found["bpf_struct_ops_tcp_congestion_ops"],
            # struct_ops links (Linux 6.4) are what lets a pin own the control and an update
            # swap its program in place.
            "struct_ops_link": found["bpf_struct_ops_link"]}


def libbpf_version() -> str | None:
    try:
        return ".".join(map(str, shared().version()))
    except LibbpfError:
        return None


def pinned_link_ids(name: str) -> dict | None:
    """Link and map ids of NAME's pinned link, as the kernel reports them."""
    if not os.path.exists(layout.link_pin(name)):
        return None
    try:
        bpf = shared()
        link = bpf.open_pinned_link(layout.link_pin(name))
    except LibbpfError:
        return None
    try:
        return bpf.link_ids(link)
    finally:
        bpf.release_link(link)


def records(state_dir: str) -> dict[str, state.ControlRecord]:
    """The controls in the host's own record; none when it cannot be read (facts never fail:
    the actions that need the record say what is wrong with it)."""
    try:
        return state.load(state_dir).controls
    except state.StateError:
        return {}


def managed_controls(state_dir: str | None = None) -> dict[str, dict]:
    """Controls ccrollout has loaded on this kernel, as its pins in bpffs show them."""
    managed = {}
    if not os.path.isdir(layout.PIN_ROOT):
        return managed
    mine = records(state_dir) if state_dir else {}
    for name in sorted(os.listdir(layout.PIN_ROOT)):
        control_dir = layout.control_dir(name)
        if not os.path.isdir(control_dir):
            continue
        ids = pinned_link_ids(name) or {}
        managed[name] = {
            "pinned": os.path.exists(layout.link_pin(name)),
            "pin": layout.link_pin(name),
            "digest": layout.loaded_digest(name),
            "link_id": ids.get("link_id"),
            "map_id": ids.get("map_id"),
            "users": layout.users(name),
            "since": mine[name].since if name in mine else None,
        }
    return managed


def objects(state_dir: str) -> list[str]:
    """Digests of the objects kept on this host, so they need not be sent again."""
    try:
        entries = os.listdir(os.path.join(state_dir, "objects"))
    except OSError:
        return []
    return sorted(entry[:-len(".bpf.o")] for entry in entries if entry.endswith(".bpf.o"))


def problems(features: dict, libbpf: str | None, root: bool) -> list[str]:
    """What keeps this host from taking a BPF congestion control, found before any change."""
    found = []
    if not root:
        found.append("the host side does not run as root (set ansible_become or ansible_user=root)")
    if not features["btf"]:
        found.append("the kernel has no BTF (/sys/kernel/btf/vmlinux): CONFIG_DEBUG_INFO_BTF is off")
    elif not features["struct_ops"]:
        found.append("the kernel cannot register congestion controls from BPF (struct_ops, Linux 5.6+)")
    elif not features["struct_ops_link"]:
        found.append("the kernel has no struct_ops links (Linux 6.4+): a control could not be pinned")
    if libbpf is None:
        found.append("libbpf is not installed (libbpf1 1.2 or newer)")
    elif tuple(map(int, libbpf.split("."))) < MIN_VERSION:
        found.append(f"libbpf {libbpf} is too old: struct_ops links need "
                     f"{'.'.join(map(str, MIN_VERSION))} or newer")
    return found


VMLINUX_BTF = "/sys/kernel/btf/vmlinux"


def vmlinux_header(limit: int = protocol.MAX_VMLINUX_TEXT) -> str:
    """This kernel's types as C (`bpftool btf dump ... format c`): the vmlinux.h a control
    built for it may include. At most LIMIT bytes, or ActionError."""
    bpftool = shutil.which("bpftool") or next(
        (path for path in ("/usr/sbin/bpftool", "/usr/local/sbin/bpftool") if os.path.exists(path)), None)
    if bpftool is None:
        raise ActionError("bpftool is not installed here (Debian: apt-get install bpftool)")
    if not os.path.exists(VMLINUX_BTF):
        raise ActionError(f"the kernel has no BTF ({VMLINUX_BTF}): CONFIG_DEBUG_INFO_BTF is off")
    process = subprocess.Popen([bpftool, "btf", "dump", "file", VMLINUX_BTF, "format", "c"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        text = process.stdout.read(limit + 1)
        if len(text) > limit:
            raise ActionError(f"bpftool's vmlinux.h is longer than {limit} bytes")
        errors = process.stderr.read().decode(errors="replace").strip()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
    if process.returncode != 0:
        raise ActionError(f"bpftool failed (exit {process.returncode}): {errors[-300:]}")
    return text.decode()


def summary(state_dir: str) -> dict:
    features = kernel_features()
    libbpf = libbpf_version()
    return {
        "kernel": platform.release(),
        **features,
        "libbpf": libbpf,
        "python": platform.python_version(),
        "bpffs": bpffs_mounted(),
        "boot_id": boot_id(),
        "netns": netns_id(),
        "default": default_congestion_control(),
        "available": available_congestion_controls(),
        "allowed": allowed_congestion_controls(),
        "ecn": tcp_ecn(),
        "routes": routes_with_congctl(),
        "managed": managed_controls(state_dir),
        "records": {name: record.to_json() for name, record in records(state_dir).items()},
        "objects": objects(state_dir),
        "problems": problems(features, libbpf, os.geteuid() == 0),
    }
