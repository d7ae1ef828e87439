"""Each lab host's own sshd: the client key the controller logs in with, per-host host keys
and sshd configs, the shared bpffs in each sshd's mount namespace, and known_hosts."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import time
from pathlib import Path

from ccrollout.errors import LabFailed
from ccrollout.host.osutil import pid_alive, write_atomically
from ccrollout.lab.base import LabPaths, kill, pids_with_marker, read_pid, run
from ccrollout.lab.netns import SSH_PORT, host_address, host_index
SSHD = "/usr/sbin/sshd"
SSHD_PRIVSEP_DIR = "/run/sshd"
_SSHD_START_TIMEOUT = 10.0


def check_root_account() -> None:
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


def ensure_client_key(paths: LabPaths) -> None:
    if not paths.key.exists() or not paths.key.with_suffix(".pub").exists():
        for stale in (paths.key, paths.key.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ccrollout-lab",
             "-f", str(paths.key)])
    public = paths.key.with_suffix(".pub").read_text()
    if not paths.authorized_keys.exists() or paths.authorized_keys.read_text() != public:
        write_atomically(paths.authorized_keys, public, mode=0o600)


def _with_port(address: str) -> str:
    return f"[{address}]:{SSH_PORT}" if ":" in address else f"{address}:{SSH_PORT}"


def _sshd_config(paths: LabPaths, subnets, name: str, forward_to=()) -> str:
    """FORWARD_TO: addresses whose SSH port this host may open for a client (a jump host's)."""
    d = paths.sshd_dir(name)
    forwarding = (["AllowTcpForwarding local", "PermitOpen " + " ".join(map(_with_port, forward_to))]
                  if forward_to else ["AllowTcpForwarding no"])
    return "\n".join([
        f"# sshd of lab host {name}, written by ccrollout.lab",
        *(f"ListenAddress {_with_port(host_address(subnet, host_index(name)))}" for subnet in subnets),
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
        *forwarding,
        "MaxStartups 64:30:128",   # a fleet fan-out opens many connections at once
        "MaxSessions 32",
        "Subsystem sftp internal-sftp",
        "",
    ])


def ensure_sshd(paths: LabPaths, subnets, name: str, forward_to=()) -> None:
    """NAME's sshd, listening on its address in each of SUBNETS (IPv4 and IPv6)."""
    d = paths.sshd_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "sshd_config"
    host_key = d / "ssh_host_ed25519_key"
    if not host_key.exists() or not host_key.with_suffix(".pub").exists():
        for stale in (host_key, host_key.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}",
             "-f", str(host_key)])
    text = _sshd_config(paths, subnets, name, forward_to)
    changed = not conf.exists() or conf.read_text() != text
    if changed:
        write_atomically(conf, text, mode=0o644)
    pid = read_pid(d / "sshd.pid")
    if pid and pid_alive(pid, str(conf)):
        if not changed:
            return
        kill([pid])
    with contextlib.suppress(FileNotFoundError):
        (d / "sshd.pid").unlink()
    run([SSHD, "-t", "-f", str(conf)])      # a clear error for a bad config
    # A fresh mount namespace per `ip netns exec`: give it the lab's shared bpffs before
    # sshd starts, so every session on this host sees the same /sys/fs/bpf. Its own UTS
    # namespace lets `hostname` on the host say its name.
    inner = (f"hostname {shlex.quote(name)} && "
             f"mount --bind {shlex.quote(str(paths.bpffs))} /sys/fs/bpf && "
             f"exec {shlex.join([SSHD, '-f', str(conf), '-E', str(d / 'sshd.log')])}")
    run(["ip", "netns", "exec", name, "unshare", "--uts", "sh", "-c", inner])


def lab_sshd_pids(paths: LabPaths) -> list[int]:
    """Running sshd processes started with a config of this lab (daemons, not sessions)."""
    found = []
    for pid in pids_with_marker(f"{paths.root}/sshd/"):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                found.append(pid)
    return found


def sshd_pid(paths: LabPaths, name: str) -> int | None:
    d = paths.sshd_dir(name)
    pid = read_pid(d / "sshd.pid")
    return pid if pid and pid_alive(pid, str(d / "sshd_config")) else None


def wait_for_sshd(paths: LabPaths, subnet, names, unreachable=()) -> None:
    """Until each sshd answers; those UNREACHABLE from here (behind the jump host) only run."""
    waiting = list(names)
    deadline = time.monotonic() + _SSHD_START_TIMEOUT
    while waiting:
        for name in list(waiting):
            if sshd_pid(paths, name) and (name in unreachable or _ssh_banner(host_address(subnet, host_index(name)))):
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


def write_known_hosts(paths: LabPaths, subnets, names) -> None:
    """Each host's key under its name and its addresses, so host-key checking stays on."""
    known = []
    for name in names:
        addresses = ",".join(host_address(subnet, host_index(name)) for subnet in subnets)
        key_type, key = (paths.sshd_dir(name) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        known.append(f"{name},{addresses} {key_type} {key}")
    write_atomically(paths.known_hosts, "\n".join(known) + "\n", mode=0o644)


def verify_shared_bpffs(paths: LabPaths, names) -> None:
    """A directory made in the lab's bpffs must show up in /sys/fs/bpf as each sshd sees it
    (bpffs has no regular files; a directory is the cheapest probe)."""
    probe = paths.bpffs / f"ccrlab_probe_{os.getpid()}"   # bpffs refuses names with a dot
    probe.mkdir(exist_ok=True)
    try:
        for name in names:
            pid = sshd_pid(paths, name)
            seen = os.listdir(f"/proc/{pid}/root/sys/fs/bpf") if pid else []
            if probe.name not in seen:
                raise LabFailed(f"{name}: sshd does not see the lab's bpffs at /sys/fs/bpf")
    finally:
        probe.rmdir()
