"""The local lab fleet: hosts lab1..labN in network namespaces, each with its own sshd.

Layout (all on one kernel, so the lab behaves like containers on one node)::

    root namespace (the controller)          hub namespace "ccrlab"
      ccrlab0 10.199.0.254/24 ── veth ──┐     bridge ccrbr0 10.199.0.1/24  <- traffic sink
                                        └──── vroot
    namespace "lab1": eth0 10.199.0.11 ── veth ── vlab1 (on the bridge)
    namespace "lab2": eth0 10.199.0.12 ── veth ── vlab2 ...

Each host runs ``/usr/sbin/sshd`` in its namespace, listening only on its own address, port 22,
with its own ed25519 host key. ``ip netns exec`` gives a process a fresh /sys, so /sys/fs/bpf
would be empty and private per host; instead one bpffs is mounted at ``<lab dir>/bpffs`` and
bind-mounted onto /sys/fs/bpf in each sshd's mount namespace, so every SSH session on every
host sees the same pins, as on one real node.

Network per host: ``tbf rate 50mbit burst 32kbit limit 30000`` on the host's eth0 (egress
toward the sink). Random loss and CE marks are nftables rules in the HUB namespace, on the
way into the sink, keyed by the host's address and the sink's port only (never SSH). They are
not in the host's own namespace on purpose: a packet dropped by netfilter in the sender's own
stack (output or egress hook) is a *local* drop; TCP sees an error from its transmit call,
keeps the segment queued and sends it again later without ever counting a retransmission.
Dropped on the receiving side, it is a real loss and shows up in TcpRetransSegs.

Python API (everything needs root; user errors raise ``LabFailed``)::

    up(hosts=3) -> str              create or repair the lab with exactly lab1..labN; inventory path
    down() -> None                  remove every trace of the lab
    status() -> dict                what is up
    inventory_path() -> str         where the Ansible INI inventory is (exists while the lab is up)
    traffic_start(hosts=None, lifetime=900, congestion=None) -> dict   background bulk senders
    traffic_stop() -> None
    impair(host, rate=None, loss=None, ce=None, clear=False) -> dict   per-host network knobs
    transfer(host, seconds=3.0, congestion=None) -> dict  one bounded foreground transfer
    run_transfer(host, seconds=3.0, congestion=None) -> int             ... its bytes sent

Files under the lab dir (``/run/ccrollout-lab``, or ``$CCROLLOUT_LAB_DIR``): ``inventory.ini``,
``id_ed25519`` (client key), ``known_hosts`` (each host under its name and address),
``ssh_config`` (``ssh -F <lab dir>/ssh_config lab1``), ``bpffs/``, ``hosts/labN/`` (the
per-host ``ccrollout_state_dir``), and the lab's own ``sshd/``, ``traffic/`` and ``lab.json``.

CE marks only matter on ECN-capable connections: a control with TCP_CONG_NEEDS_ECN asks for
ECN by itself; for others set ``net.ipv4.tcp_ecn=1`` in the host's namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ccrollout import labtraffic, units
from ccrollout.errors import LabFailed

DEFAULT_LAB_DIR = "/run/ccrollout-lab"
DEFAULT_SUBNET = labtraffic.DEFAULT_SUBNET
DEFAULT_HOSTS = 3
MAX_HOSTS = 200
HUB_NS = "ccrlab"
BRIDGE = "ccrbr0"
ROOT_VETH = "ccrlab0"          # root namespace side of the controller's veth
HUB_ROOT_VETH = "vroot"        # its peer on the bridge
HOST_IFACE = "eth0"
HUB_OFFSET = 1                 # .1  : the hub's bridge and the traffic sink
HOST_OFFSET = 10               # .10+i: host lab<i>
ROOT_OFFSET = 254              # .254: the controller in the root namespace
SSH_PORT = 22
TRAFFIC_PORT = labtraffic.TRAFFIC_PORT
DEFAULT_RATE = "50mbit"
# A new namespace inherits the initial namespace's default (bbr on these machines), whose
# retransmissions on the lab's small bottleneck queue swing between 3 % and 25 % and make
# every baseline noise. reno is steady (~1 %) and, unlike cubic, any namespace may choose it.
HOST_DEFAULT_CONGESTION = "reno"
TBF_BURST = "32kbit"
TBF_LIMIT_BYTES = 30000
NFT_TABLE = "ccrlab"
PROBABILITY_SCALE = 1_000_000  # nft numgen modulus: loss and CE in parts per million
SSHD = "/usr/sbin/sshd"
SSHD_PRIVSEP_DIR = "/run/sshd"
LABTRAFFIC = os.path.abspath(labtraffic.__file__)
# How a traffic process of the lab shows in /proc/PID/cmdline (see _traffic_cmd); precise
# enough that an editor or a grep naming the file is never taken for one.
_TRAFFIC_MARKER = f"\0-I\0{LABTRAFFIC}\0"
_SSHD_START_TIMEOUT = 10.0
_KILL_GRACE = 2.0
_LOCK_TIMEOUT = 120.0
_HOST_NAME = re.compile(r"^lab([1-9][0-9]*)$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")


# --- where things are -------------------------------------------------------------------

def lab_dir() -> Path:
    """The lab directory: $CCROLLOUT_LAB_DIR or /run/ccrollout-lab."""
    text = os.environ.get("CCROLLOUT_LAB_DIR", "").strip() or DEFAULT_LAB_DIR
    if not _SAFE_PATH.match(text) or "/../" in text + "/":
        raise LabFailed(f"lab directory {text!r} must be an absolute path of letters, "
                        "digits, '.', '_', '-' and '/'")
    return Path(os.path.normpath(text))


def inventory_path() -> str:
    """Path of the lab's Ansible INI inventory (the file exists while the lab is up)."""
    return str(lab_dir() / "inventory.ini")


def _subnet() -> ipaddress.IPv4Network:
    try:
        return labtraffic.lab_subnet()
    except ValueError as exc:
        raise LabFailed(str(exc)) from None


def _address(subnet: ipaddress.IPv4Network, offset: int) -> str:
    return str(subnet.network_address + offset)


def _host_address(subnet, index: int) -> str:
    return _address(subnet, HOST_OFFSET + index)


def _index(name: str) -> int:
    return int(_HOST_NAME.match(name).group(1))


# Everything the lab puts into its directory; `down` removes these and nothing else.
_LAB_ENTRIES = {"lab.json", "id_ed25519", "id_ed25519.pub", "authorized_keys", "known_hosts",
                "ssh_config", "inventory.ini", "bpffs", "hosts", "sshd", "traffic"}


class _Paths:
    def __init__(self, root: Path):
        self.root = root
        self.state = root / "lab.json"
        self.key = root / "id_ed25519"
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts = root / "known_hosts"
        self.ssh_config = root / "ssh_config"
        self.inventory = root / "inventory.ini"
        self.bpffs = root / "bpffs"
        self.traffic = root / "traffic"

    def state_dir(self, name):        # the host's ccrollout_state_dir
        return self.root / "hosts" / name

    def sshd_dir(self, name):         # the lab's own files for that host's sshd
        return self.root / "sshd" / name


# --- small helpers ----------------------------------------------------------------------

def _run(argv, *, input=None, check=True, timeout=30.0) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise LabFailed(f"{argv[0]} not found: run scripts/setup.sh "
                        "(iproute2, nftables, openssh-server, util-linux)") from None
    except subprocess.TimeoutExpired:
        raise LabFailed(f"timed out after {timeout:g}s: {shlex.join(map(str, argv))}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabFailed(f"{shlex.join(map(str, argv))} failed: "
                        f"{detail[-1] if detail else 'exit code %d' % proc.returncode}")
    return proc


def _ip(*args, ns=None, check=True):
    return _run(["ip", *(["-n", ns] if ns else []), *map(str, args)], check=check)


def _nft(script: str, ns: str):
    return _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script)


def _write(path: Path, text: str, mode=0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabFailed("the lab needs root (network namespaces, mounts, sshd)")


def _netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _lab_host_namespaces() -> list[str]:
    return sorted((n for n in _netns_names() if _HOST_NAME.match(n)), key=_index)


def _links(ns=None) -> set[str]:
    proc = _ip("-j", "link", "show", ns=ns, check=False)
    if proc.returncode != 0:
        return set()
    return {link["ifname"] for link in json.loads(proc.stdout or "[]")}


def _proc_alive(pid: int, marker: str | None = None) -> bool:
    """True if pid runs (a zombie does not count) and, if given, its command line has marker."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        if state in (b"Z", b"X"):
            return False
        if marker is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return marker.encode() in fh.read()
        return True
    except (OSError, IndexError):
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _ns_inode(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _pids_in_netns(inodes: set) -> list[int]:
    """Every process whose network namespace is one of `inodes` (like `ip netns pids`)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            if _ns_inode(f"/proc/{entry}/ns/net") in inodes:
                pids.append(int(entry))
    return pids


def _pids_with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and _proc_alive(int(entry), marker):
            found.append(int(entry))
    return found


def _kill(pids) -> list[int]:
    """SIGTERM, a short grace, then SIGKILL. Returns the pids that still run."""
    pids = [p for p in set(pids) if _proc_alive(p)]
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE), (signal.SIGKILL, _KILL_GRACE)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)     # reap it if it is our own child
            pids = [p for p in pids if _proc_alive(p)]
            if pids:
                time.sleep(0.02)
        if not pids:
            break
    return pids


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


@contextlib.contextmanager
def _locked(paths: _Paths, create: bool):
    """Serialise up/down/impair/traffic between processes: flock on the lab dir itself.
    Yields False (and locks nothing) when the dir does not exist and create is False."""
    deadline = time.monotonic() + _LOCK_TIMEOUT
    while True:
        if create:
            paths.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            fd = os.open(paths.root, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if create:
                continue
            yield False
            return
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LabFailed(f"another lab operation holds {paths.root} "
                                    f"for over {_LOCK_TIMEOUT:g}s") from None
                time.sleep(0.1)
        # `down` may have removed the directory while we waited: lock the new one then.
        if _ns_inode(str(paths.root)) == _ns_inode(f"/proc/self/fd/{fd}"):
            break
        os.close(fd)
    try:
        yield True
    finally:
        os.close(fd)


def _load_state(paths: _Paths) -> dict:
    try:
        return json.loads(paths.state.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LabFailed(f"{paths.state} is unreadable ({exc}); run `ccrollout lab down`") from None


def _save_state(paths: _Paths, state: dict) -> None:
    _write(paths.state, json.dumps(state, indent=2, sort_keys=True) + "\n")


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


def _host_name(host, state: dict) -> str:
    hosts = state.get("hosts", 0)
    name = f"lab{host}" if isinstance(host, int) and not isinstance(host, bool) else str(host)
    subnet = state.get("subnet")
    if subnet and not _HOST_NAME.match(name):
        for index in range(1, hosts + 1):     # an address works too
            if name == _host_address(ipaddress.IPv4Network(subnet), index):
                name = f"lab{index}"
    match = _HOST_NAME.match(name)
    if not match or int(match.group(1)) > hosts:
        have = f"lab1..lab{hosts}" if hosts else "no hosts: run `ccrollout lab up`"
        raise LabFailed(f"unknown lab host {host!r} (the lab has {have})")
    return name


# --- up -----------------------------------------------------------------------------------

def up(hosts: int = DEFAULT_HOSTS) -> str:
    """Create the lab, or bring it to exactly lab1..lab<hosts> (adds or removes hosts,
    restarts a dead sshd, re-applies impairments). Idempotent. Returns the inventory path."""
    if isinstance(hosts, bool) or not isinstance(hosts, int) or not 1 <= hosts <= MAX_HOSTS:
        raise LabFailed(f"hosts must be a whole number from 1 to {MAX_HOSTS}, not {hosts!r}")
    _require_root()
    _check_root_account()
    paths = _Paths(lab_dir())
    subnet = _subnet()
    with _locked(paths, create=True):
        state = _load_state(paths)
        if state.get("subnet", str(subnet)) != str(subnet) and (
                HUB_NS in _netns_names() or _lab_host_namespaces()):
            raise LabFailed(f"the lab is up on {state['subnet']}, not {subnet}: "
                            "run `ccrollout lab down` first")
        _check_lab_dir(paths)
        _check_subnet_free(subnet)
        try:
            _build(paths, subnet, state, hosts)
        except LabFailed as exc:
            raise LabFailed(f"{exc} (the lab may be half up: `ccrollout lab down` "
                            "removes it)") from None
    return str(paths.inventory)


def _build(paths: _Paths, subnet, state: dict, hosts: int) -> None:
    """Make the lab match `hosts`, step by step; each step is a no-op when already done."""
    old_hosts = max([state.get("hosts", 0)] + [_index(n) for n in _lab_host_namespaces()])
    state.update(subnet=str(subnet), hosts=hosts)
    state.setdefault("impairments", {})
    _save_state(paths, state)            # first, so `down` knows what to clean up

    os.makedirs(SSHD_PRIVSEP_DIR, mode=0o755, exist_ok=True)
    _ensure_client_key(paths)
    _ensure_bpffs(paths)
    _ensure_hub(paths, subnet)
    for index in range(hosts + 1, old_hosts + 1):
        _remove_host(paths, f"lab{index}")
        state["impairments"].pop(f"lab{index}", None)
    names = [f"lab{i}" for i in range(1, hosts + 1)]
    for name in names:
        _ensure_host(paths, subnet, name, state["impairments"].get(name, {}))
    _apply_hub_rules(subnet, state)
    _save_state(paths, state)
    _wait_for_sshd(paths, subnet, names)
    _write_client_files(paths, subnet, names)
    _verify_shared_bpffs(paths, names)


def _check_lab_dir(paths: _Paths) -> None:
    st = os.stat(paths.root)
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise LabFailed(f"{paths.root} must belong to root and be writable by root only "
                        "(it holds the lab's authorized_keys)")
    foreign = [e for e in os.listdir(paths.root) if e.removesuffix(".tmp") not in _LAB_ENTRIES]
    if foreign:
        raise LabFailed(f"{paths.root} holds files the lab did not make ({', '.join(foreign)}):"
                        " set CCROLLOUT_LAB_DIR to a new or empty directory")


def _check_root_account() -> None:
    # Without PAM, sshd refuses every login to an account whose password field starts with
    # '!' (locked), even by key. Debian leaves root at '*' (no password, not locked).
    try:
        with open("/etc/shadow") as fh:
            fields = next((line.split(":") for line in fh if line.startswith("root:")), [])
    except OSError:
        return
    if len(fields) > 1 and fields[1].startswith("!"):
        raise LabFailed("root's account is locked ('!' in /etc/shadow) and the lab's sshd "
                        "runs without PAM, so it would refuse every login: "
                        "run `usermod -p '*' root` (no password, key logins only)")


def _check_subnet_free(subnet) -> None:
    proc = _ip("-j", "-4", "addr", "show")
    for link in json.loads(proc.stdout or "[]"):
        if link["ifname"] == ROOT_VETH:
            continue
        for addr in link.get("addr_info", []):
            network = ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
            if network.overlaps(subnet):
                raise LabFailed(f"{subnet} overlaps {addr['local']}/{addr['prefixlen']} on "
                                f"{link['ifname']}: set CCROLLOUT_LAB_SUBNET to a free /24")


def _ensure_client_key(paths: _Paths) -> None:
    if not paths.key.exists() or not paths.key.with_suffix(".pub").exists():
        for stale in (paths.key, paths.key.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ccrollout-lab",
              "-f", str(paths.key)])
    public = paths.key.with_suffix(".pub").read_text()
    if not paths.authorized_keys.exists() or paths.authorized_keys.read_text() != public:
        _write(paths.authorized_keys, public, 0o600)


def _ensure_bpffs(paths: _Paths) -> None:
    paths.bpffs.mkdir(mode=0o700, exist_ok=True)
    if not _is_bpffs_mount(paths.bpffs):
        _run(["mount", "-t", "bpf", "bpf", str(paths.bpffs)])


def _ensure_hub(paths: _Paths, subnet) -> None:
    if HUB_NS not in _netns_names():
        _ip("netns", "add", HUB_NS)
    hub_links = _links(HUB_NS)
    _ip("link", "set", "lo", "up", ns=HUB_NS)
    if BRIDGE not in hub_links:
        _ip("link", "add", BRIDGE, "type", "bridge", ns=HUB_NS)
    _ip("addr", "replace", f"{_address(subnet, HUB_OFFSET)}/24", "dev", BRIDGE, ns=HUB_NS)
    _ip("link", "set", BRIDGE, "up", ns=HUB_NS)
    if ROOT_VETH not in _links() or HUB_ROOT_VETH not in hub_links:
        _ip("link", "del", ROOT_VETH, check=False)
        _ip("link", "add", ROOT_VETH, "type", "veth", "peer", "name", HUB_ROOT_VETH,
            "netns", HUB_NS)
    _ip("link", "set", HUB_ROOT_VETH, "master", BRIDGE, "up", ns=HUB_NS)
    _ip("addr", "replace", f"{_address(subnet, ROOT_OFFSET)}/24", "dev", ROOT_VETH)
    _ip("link", "set", ROOT_VETH, "up")
    paths.traffic.mkdir(exist_ok=True)


def _ensure_host(paths: _Paths, subnet, name: str, impairment: dict) -> None:
    index = _index(name)
    if name not in _netns_names():
        _ip("netns", "add", name)
        # Only when made: a rollout may have changed it since, and `up` must not undo that.
        _run(["ip", "netns", "exec", name, "sysctl", "-qw",
              f"net.ipv4.tcp_congestion_control={HOST_DEFAULT_CONGESTION}"])
    _ip("link", "set", "lo", "up", ns=name)
    hub_side = f"v{name}"
    if hub_side not in _links(HUB_NS) or HOST_IFACE not in _links(name):
        _ip("link", "del", hub_side, ns=HUB_NS, check=False)
        _ip("link", "del", HOST_IFACE, ns=name, check=False)
        _ip("link", "add", hub_side, "type", "veth", "peer", "name", HOST_IFACE,
            "netns", name, ns=HUB_NS)
        # A host made again (after `up` with fewer hosts) has a new MAC address: forget the
        # old one, or the controller and the sink talk to it only after ARP gives up (~10 s).
        address = _host_address(subnet, index)
        _ip("neigh", "flush", "to", address, check=False)
        _ip("neigh", "flush", "to", address, ns=HUB_NS, check=False)
    _ip("link", "set", hub_side, "master", BRIDGE, "up", ns=HUB_NS)
    _ip("addr", "replace", f"{_host_address(subnet, index)}/24", "dev", HOST_IFACE, ns=name)
    _ip("link", "set", HOST_IFACE, "up", ns=name)
    _apply_rate(name, impairment.get("rate", DEFAULT_RATE))
    paths.state_dir(name).mkdir(parents=True, exist_ok=True)
    _ensure_sshd(paths, subnet, name)


def _sshd_config(paths: _Paths, subnet, name: str) -> str:
    d = paths.sshd_dir(name)
    return "\n".join([
        f"# sshd of lab host {name}, written by ccrollout.lab",
        f"ListenAddress {_host_address(subnet, _index(name))}:{SSH_PORT}",
        f"HostKey {d / 'ssh_host_ed25519_key'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {paths.authorized_keys}",
        # The lab dir may sit under a world-writable /tmp, which StrictModes would refuse;
        # `up` checks instead that the lab dir itself is root's and writable by root only.
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "MaxStartups 64:30:128",   # a fleet fan-out opens many connections at once
        "MaxSessions 32",
        "Subsystem sftp internal-sftp",
        "",
    ])


def _ensure_sshd(paths: _Paths, subnet, name: str) -> None:
    d = paths.sshd_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "sshd_config"
    host_key = d / "ssh_host_ed25519_key"
    if not host_key.exists() or not host_key.with_suffix(".pub").exists():
        for stale in (host_key, host_key.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}",
              "-f", str(host_key)])
    text = _sshd_config(paths, subnet, name)
    changed = not conf.exists() or conf.read_text() != text
    if changed:
        _write(conf, text)
    pid = _read_pid(d / "sshd.pid")
    if pid and _proc_alive(pid, str(conf)):
        if not changed:
            return
        _kill([pid])
    with contextlib.suppress(FileNotFoundError):
        (d / "sshd.pid").unlink()
    _run([SSHD, "-t", "-f", str(conf)])      # a clear error for a bad config
    # A fresh mount namespace per `ip netns exec`: give it the lab's shared bpffs before
    # sshd starts, so every session on this host sees the same /sys/fs/bpf. Its own UTS
    # namespace lets `hostname` on the host say its name.
    inner = (f"hostname {shlex.quote(name)} && "
             f"mount --bind {shlex.quote(str(paths.bpffs))} /sys/fs/bpf && "
             f"exec {shlex.join([SSHD, '-f', str(conf), '-E', str(d / 'sshd.log')])}")
    _run(["ip", "netns", "exec", name, "unshare", "--uts", "sh", "-c", inner])


def _lab_sshd_pids(paths: _Paths) -> list[int]:
    """Running sshd processes started with a config of this lab (daemons, not sessions)."""
    found = []
    for pid in _pids_with_marker(f"{paths.root}/sshd/"):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                found.append(pid)
    return found


def _sshd_pid(paths: _Paths, name: str) -> int | None:
    d = paths.sshd_dir(name)
    pid = _read_pid(d / "sshd.pid")
    return pid if pid and _proc_alive(pid, str(d / "sshd_config")) else None


def _wait_for_sshd(paths: _Paths, subnet, names) -> None:
    waiting = list(names)
    deadline = time.monotonic() + _SSHD_START_TIMEOUT
    while waiting:
        for name in list(waiting):
            if _sshd_pid(paths, name) and _ssh_banner(_host_address(subnet, _index(name))):
                waiting.remove(name)
        if waiting and time.monotonic() > deadline:
            name = waiting[0]
            log = paths.sshd_dir(name) / "sshd.log"
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            raise LabFailed(f"sshd of {name} did not answer within {_SSHD_START_TIMEOUT:g}s"
                            + (f": {tail[0]}" if tail else ""))
        if waiting:
            time.sleep(0.05)


def _ssh_banner(address: str) -> bool:
    try:
        with socket.create_connection((address, SSH_PORT), timeout=1.0) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _write_client_files(paths: _Paths, subnet, names) -> None:
    known, config, inventory = [], [], ["[lab]"]
    for name in names:
        address = _host_address(subnet, _index(name))
        key_type, key = (paths.sshd_dir(name) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        known.append(f"{name},{address} {key_type} {key}")
        config += [f"Host {name} {address}", f"    HostName {address}"]
        inventory.append(f"{name} ansible_host={address} "
                         f"ccrollout_state_dir={paths.state_dir(name)}")
    config += ["Host *", "    User root", f"    Port {SSH_PORT}",
               f"    IdentityFile {paths.key}", "    IdentitiesOnly yes",
               f"    UserKnownHostsFile {paths.known_hosts}",
               "    StrictHostKeyChecking yes", "    BatchMode yes", "    ConnectTimeout 5"]
    inventory += ["", "[lab:vars]", "ansible_user=root", f"ansible_port={SSH_PORT}",
                  f"ansible_ssh_private_key_file={paths.key}",
                  "ansible_python_interpreter=/usr/bin/python3",
                  f"ccrollout_known_hosts={paths.known_hosts}"]
    _write(paths.known_hosts, "\n".join(known) + "\n")
    _write(paths.ssh_config, "\n".join(config) + "\n")
    _write(paths.inventory, "\n".join(inventory) + "\n")


def _verify_shared_bpffs(paths: _Paths, names) -> None:
    """A directory made in the lab's bpffs must show up in /sys/fs/bpf as each sshd sees it
    (bpffs has no regular files; a directory is the cheapest probe)."""
    probe = paths.bpffs / f"ccrlab_probe_{os.getpid()}"   # bpffs refuses names with a dot
    probe.mkdir(exist_ok=True)
    try:
        for name in names:
            pid = _sshd_pid(paths, name)
            seen = os.listdir(f"/proc/{pid}/root/sys/fs/bpf") if pid else []
            if probe.name not in seen:
                raise LabFailed(f"{name}: sshd does not see the lab's bpffs at /sys/fs/bpf")
    finally:
        probe.rmdir()


# --- impairments --------------------------------------------------------------------------

def _apply_rate(name: str, rate: str) -> None:
    _run(["tc", "-n", name, "qdisc", "replace", "dev", HOST_IFACE, "root", "tbf",
          "rate", rate, "burst", TBF_BURST, "limit", str(TBF_LIMIT_BYTES)])


def _apply_hub_rules(subnet, state: dict) -> None:
    """Rebuild the hub's nftables table from the state, in one atomic transaction."""
    sink = _address(subnet, HUB_OFFSET)
    jumps, chains = [], []
    for name in sorted(state.get("impairments", {}), key=_index):
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
            address = _host_address(subnet, _index(name))
            # Only bulk traffic from that host to the sink's port: never SSH.
            jumps.append(f"ip saddr {address} ip daddr {sink} tcp dport {TRAFFIC_PORT} "
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
    _nft(script, HUB_NS)


def impair(host, rate=None, loss=None, ce=None, clear: bool = False) -> dict:
    """Set a host's bottleneck rate, random loss and CE-mark share (fractions in [0, 1] or
    strings like "2%"; rates like "50mbit"). Arguments left at None keep their value;
    clear=True first resets to 50mbit, no loss, no CE. Returns the host's new settings."""
    _require_root()
    paths = _Paths(lab_dir())
    with _locked(paths, create=False) as locked:
        state = _load_state(paths) if locked else {}
        name = _host_name(host, state)
        settings = {} if clear else dict(state["impairments"].get(name, {}))
        if rate is not None:
            settings["rate"] = parse_rate(rate)
        if loss is not None:
            settings["loss"] = parse_fraction(loss, "loss")
        if ce is not None:
            settings["ce"] = parse_fraction(ce, "ce")
        settings = {k: v for k, v in settings.items()
                    if not (k == "rate" and v == DEFAULT_RATE) and v != 0.0}
        if name not in _netns_names():
            raise LabFailed(f"{name} is not up: run `ccrollout lab up`")
        _apply_rate(name, settings.get("rate", DEFAULT_RATE))
        state["impairments"][name] = settings
        _apply_hub_rules(ipaddress.IPv4Network(state["subnet"]), state)
        _save_state(paths, state)
    return _describe_impairment(settings)


def _describe_impairment(settings: dict) -> dict:
    return {"rate": settings.get("rate", DEFAULT_RATE), "loss": settings.get("loss", 0.0),
            "ce": settings.get("ce", 0.0)}


# --- traffic ------------------------------------------------------------------------------

def _traffic_cmd(ns: str, *args) -> list[str]:
    # -I: isolated, so the script's own directory (ccrollout/) never shadows a stdlib module.
    return ["ip", "netns", "exec", ns, sys.executable, "-I", LABTRAFFIC, *map(str, args)]


def _start_traffic_daemon(ns: str, what: str, *args) -> None:
    proc = _run(_traffic_cmd(ns, *args), check=False)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise LabFailed(f"{what} did not start: {detail.removeprefix('labtraffic: ')}")


def _sink_pid(paths: _Paths) -> int | None:
    pid = _read_pid(paths.traffic / "sink.pid")
    return pid if pid and _proc_alive(pid, _TRAFFIC_MARKER) else None


def _sender_pid(paths: _Paths, name: str) -> int | None:
    pid = _read_pid(paths.traffic / f"{name}.pid")
    return pid if pid and _proc_alive(pid, _TRAFFIC_MARKER) else None


def _ensure_sink(paths: _Paths, subnet, lifetime: float) -> None:
    """Start the sink, or restart it if it would end before `lifetime` seconds from now."""
    expires_file = paths.traffic / "sink.expires"
    pid = _sink_pid(paths)
    if pid:
        try:
            expires = float(expires_file.read_text())
        except (OSError, ValueError):
            expires = 0.0
        if expires >= time.time() + lifetime:
            return
        _kill([pid])
    paths.traffic.mkdir(exist_ok=True)
    _start_traffic_daemon(HUB_NS, "the traffic sink", "sink",
                          "--bind", _address(subnet, HUB_OFFSET), "--port", TRAFFIC_PORT,
                          "--lifetime", lifetime, "--daemon",
                          "--pidfile", paths.traffic / "sink.pid",
                          "--logfile", paths.traffic / "sink.log")
    _write(expires_file, f"{time.time() + lifetime:.0f}\n")


def _lab_state_or_fail(paths: _Paths) -> dict:
    state = _load_state(paths)
    if not state.get("hosts") or HUB_NS not in _netns_names():
        raise LabFailed("the lab is not up: run `ccrollout lab up`")
    return state


def traffic_start(hosts=None, lifetime: float = labtraffic.DEFAULT_LIFETIME,
                  congestion: str | None = None) -> dict:
    """Start background bulk senders on `hosts` (names or numbers; default: all), each
    opening a new connection to the sink every ~2 s, until traffic_stop() or `lifetime`
    seconds. A host that already has a sender keeps it. Returns {host: sender pid}."""
    _require_root()
    if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or \
            not 0 < lifetime <= labtraffic.MAX_LIFETIME:
        raise LabFailed(f"lifetime must be in (0, {labtraffic.MAX_LIFETIME:g}] seconds")
    paths = _Paths(lab_dir())
    with _locked(paths, create=False):
        state = _lab_state_or_fail(paths)
        subnet = ipaddress.IPv4Network(state["subnet"])
        names = [f"lab{i}" for i in range(1, state["hosts"] + 1)] if hosts is None else \
            [_host_name(h, state) for h in ([hosts] if isinstance(hosts, (str, int)) else hosts)]
        _ensure_sink(paths, subnet, lifetime)
        started = {}
        for name in names:
            pid = _sender_pid(paths, name)
            if not pid:
                args = ["send", "--to", _address(subnet, HUB_OFFSET), "--port", TRAFFIC_PORT,
                        "--lifetime", lifetime, "--daemon",
                        "--pidfile", paths.traffic / f"{name}.pid",
                        "--logfile", paths.traffic / f"{name}.log"]
                if congestion:
                    args += ["--congestion", congestion]
                _start_traffic_daemon(name, f"traffic on {name}", *args)
                pid = _sender_pid(paths, name)
            started[name] = pid
    return started


def traffic_stop() -> None:
    """Stop every traffic process of the lab: senders, the sink, foreground transfers."""
    _require_root()
    paths = _Paths(lab_dir())
    _kill(_pids_with_marker(_TRAFFIC_MARKER))
    if paths.traffic.is_dir():
        for pidfile in paths.traffic.glob("*.pid"):
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()
        with contextlib.suppress(FileNotFoundError):
            (paths.traffic / "sink.expires").unlink()


def transfer(host, seconds: float = 3.0, congestion: str | None = None) -> dict:
    """One bounded foreground transfer from `host` to the sink on a new connection
    (setsockopt TCP_CONGESTION first if `congestion` is given). Starts the sink if needed.
    Returns {"bytes": sent, "seconds": took, "congestion": the control the socket used}."""
    _require_root()
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
            not 0 < seconds <= 600:
        raise LabFailed(f"seconds must be in (0, 600], not {seconds!r}")
    paths = _Paths(lab_dir())
    with _locked(paths, create=False):
        state = _lab_state_or_fail(paths)
        name = _host_name(host, state)
        subnet = ipaddress.IPv4Network(state["subnet"])
        if not _sink_pid(paths):
            _ensure_sink(paths, subnet, seconds + 60)
    args = ["send", "--once", "--seconds", seconds, "--to", _address(subnet, HUB_OFFSET),
            "--port", TRAFFIC_PORT]
    if congestion:
        args += ["--congestion", congestion]
    proc = _run(_traffic_cmd(name, *args), timeout=seconds + 30, check=False)
    try:
        if proc.returncode == 0:
            return json.loads(proc.stdout)
    except ValueError:
        pass
    detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    raise LabFailed(f"transfer from {name} failed: {detail.removeprefix('labtraffic: ')}")


def run_transfer(host, seconds: float = 3.0, congestion: str | None = None) -> int:
    """transfer(...)["bytes"]: bytes sent by one bounded transfer from `host`."""
    return transfer(host, seconds, congestion)["bytes"]


# --- down ---------------------------------------------------------------------------------

def _lab_netns_inodes(paths: _Paths, names) -> set:
    """Network namespaces of the lab: the named ones, plus any that a process of the lab still
    holds after its name is gone (a daemon or sshd session outlives `ip netns del`)."""
    inodes = {_ns_inode(f"/run/netns/{n}") for n in names} - {None}
    for pid in _lab_sshd_pids(paths) + _pids_with_marker(_TRAFFIC_MARKER):
        inodes.add(_ns_inode(f"/proc/{pid}/ns/net"))
    # Never the controller's own namespace (someone may run labtraffic there by hand).
    inodes -= {None, _ns_inode("/proc/1/ns/net"), _ns_inode("/proc/self/ns/net")}
    return inodes


def _remove_host(paths: _Paths, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (paths.traffic / f"{name}.pid").unlink()
    leftover = _kill(_pids_in_netns({_ns_inode(f"/run/netns/{name}")} - {None}))
    if leftover:
        raise LabFailed(f"{name}: processes {leftover} do not end")
    if name in _netns_names():
        _ip("netns", "del", name)
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
    _require_root()
    paths = _Paths(lab_dir())
    with _locked(paths, create=False):
        names = _lab_host_namespaces() + ([HUB_NS] if HUB_NS in _netns_names() else [])
        inodes = _lab_netns_inodes(paths, names)
        _kill(_pids_with_marker(_TRAFFIC_MARKER))
        stuck = _kill(_pids_in_netns(inodes))
        if stuck:
            raise LabFailed(f"lab processes {sorted(stuck)} do not end, even on SIGKILL")
        if ROOT_VETH in _links():
            _ip("link", "del", ROOT_VETH)
        for name in names:
            _ip("netns", "del", name)
        try:
            if paths.bpffs.is_dir() and _is_bpffs_mount(paths.bpffs):
                _remove_pins(paths.bpffs)
        except OSError as exc:
            raise LabFailed(f"cannot remove pins under {paths.bpffs}: {exc}") from None
        for point in _mounts_under(paths.root):
            if _run(["umount", point], check=False).returncode != 0:
                _run(["umount", "--lazy", point])
        if _mounts_under(paths.root):
            raise LabFailed(f"{paths.root} still has mounts: {_mounts_under(paths.root)}")
        _remove_lab_files(paths)
    left = leftovers()
    if left:
        raise LabFailed("the lab is not fully down: " + "; ".join(left))


def _remove_lab_files(paths: _Paths) -> None:
    """Remove what the lab made in its directory, then the directory if that left it empty
    (so a CCROLLOUT_LAB_DIR pointed at the wrong place never loses anything else)."""
    if not paths.root.is_dir():
        return
    for entry in os.listdir(paths.root):
        if entry.removesuffix(".tmp") not in _LAB_ENTRIES:
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
    paths = _Paths(lab_dir())
    found = [f"namespace {n}" for n in _lab_host_namespaces()]
    if HUB_NS in _netns_names():
        found.append(f"namespace {HUB_NS}")
    if os.path.exists(f"/sys/class/net/{ROOT_VETH}"):
        found.append(f"link {ROOT_VETH}")
    found += [f"mount {m}" for m in _mounts_under(paths.root)]
    found += [f"process {p} (sshd)" for p in _lab_sshd_pids(paths)]
    found += [f"process {p}" for p in _pids_with_marker(_TRAFFIC_MARKER)]
    if paths.root.is_dir():
        entries = os.listdir(paths.root)
        ours = [e for e in entries if e.removesuffix(".tmp") in _LAB_ENTRIES]
        if ours or not entries:
            found.append(f"{paths.root}: {', '.join(sorted(ours)) or 'empty directory'}")
    return found


# --- status -------------------------------------------------------------------------------

def status() -> dict:
    """What is up. Shape::

        {"up": bool, "lab_dir": str, "subnet": str, "inventory": str | None,
         "bpffs": bool, "hub": {"namespace": bool, "address": str, "sink": bool},
         "hosts": {"lab1": {"namespace": bool, "address": str, "sshd": bool,
                            "sshd_pid": int | None, "traffic": bool,
                            "impairment": {"rate": str, "loss": float, "ce": float}}},
         "traffic": bool}
    """
    _require_root()
    paths = _Paths(lab_dir())
    state = _load_state(paths)
    subnet = ipaddress.IPv4Network(state.get("subnet") or str(_subnet()))
    namespaces = set(_netns_names())
    count = max([state.get("hosts", 0)] + [_index(n) for n in _lab_host_namespaces()])
    hosts = {}
    for index in range(1, count + 1):
        name = f"lab{index}"
        pid = _sshd_pid(paths, name)
        hosts[name] = {
            "namespace": name in namespaces,
            "address": _host_address(subnet, index),
            "sshd": pid is not None,
            "sshd_pid": pid,
            "traffic": _sender_pid(paths, name) is not None,
            "impairment": _describe_impairment(state.get("impairments", {}).get(name, {})),
        }
    bpffs = paths.bpffs.is_dir() and _is_bpffs_mount(paths.bpffs)
    hub = {"namespace": HUB_NS in namespaces, "address": _address(subnet, HUB_OFFSET),
           "sink": _sink_pid(paths) is not None}
    expected = state.get("hosts", 0)
    return {
        "up": bool(expected) and bpffs and hub["namespace"]
              and os.path.exists(f"/sys/class/net/{ROOT_VETH}")
              and all(hosts[f"lab{i}"]["namespace"] and hosts[f"lab{i}"]["sshd"]
                      for i in range(1, expected + 1)),
        "lab_dir": str(paths.root),
        "subnet": str(subnet),
        "inventory": str(paths.inventory) if paths.inventory.exists() else None,
        "bpffs": bpffs,
        "hub": hub,
        "hosts": hosts,
        "traffic": hub["sink"] or any(h["traffic"] for h in hosts.values()),
    }
