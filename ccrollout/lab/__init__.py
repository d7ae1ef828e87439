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

Modules, each importing only those above it: ``base`` (paths, state, the lock, commands,
processes), ``netns`` (namespaces, veths, the hub's bridge, addresses), ``sshd``, ``traffic``
(the sink and senders, and starting them), ``impairments``, ``inventory``, and ``lifecycle``
(up, down, status).
"""

from ccrollout.errors import LabFailed
from ccrollout.lab.base import DEFAULT_LAB_DIR, lab_dir
from ccrollout.lab.netns import (
    BRIDGE, DEFAULT_SUBNET, HOST_DEFAULT_CONGESTION, HOST_IFACE, HOST_OFFSET, HUB_NS, HUB_OFFSET,
    HUB_ROOT_VETH, ROOT_OFFSET, ROOT_VETH)
from ccrollout.lab.sshd import SSH_PORT, SSHD, SSHD_PRIVSEP_DIR
from ccrollout.lab.traffic import (
    LABTRAFFIC, TRAFFIC_PORT, run_transfer, traffic_start, traffic_stop, transfer)
from ccrollout.lab.impairments import (
    DEFAULT_RATE, NFT_TABLE, PROBABILITY_SCALE, TBF_BURST, TBF_LIMIT_BYTES, impair,
    parse_fraction, parse_rate)
from ccrollout.lab.inventory import inventory_path
from ccrollout.lab.lifecycle import DEFAULT_HOSTS, MAX_HOSTS, down, leftovers, status, up

__all__ = [
    "BRIDGE", "DEFAULT_HOSTS", "DEFAULT_LAB_DIR", "DEFAULT_RATE", "DEFAULT_SUBNET",
    "HOST_DEFAULT_CONGESTION", "HOST_IFACE", "HOST_OFFSET", "HUB_NS", "HUB_OFFSET",
    "HUB_ROOT_VETH", "LABTRAFFIC", "LabFailed", "MAX_HOSTS", "NFT_TABLE", "PROBABILITY_SCALE",
    "ROOT_OFFSET", "ROOT_VETH", "SSHD", "SSHD_PRIVSEP_DIR", "SSH_PORT", "TBF_BURST",
    "TBF_LIMIT_BYTES", "TRAFFIC_PORT", "down", "impair", "inventory_path", "lab_dir",
    "leftovers", "parse_fraction", "parse_rate", "run_transfer", "status", "traffic_start",
    "traffic_stop", "transfer", "up",
]
