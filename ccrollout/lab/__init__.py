"""The local lab fleet: hosts lab1..labN in network namespaces, each with its own sshd.

Layout (all on one kernel, so the lab behaves like containers on one node)::

    root namespace (the controller)          hub namespace "ccrlab"
      ccrlab0 10.199.0.254/24 ── veth ──┐     bridge ccrbr0 10.199.0.1/24  <- traffic sink
                                        └──── vroot
    namespace "lab1": eth0 10.199.0.11 ── veth ── vlab1 (on the bridge)
    namespace "lab2": eth0 10.199.0.12 ── veth ── vlab2 ...

Every one of them also has an IPv6 address in the lab's unique local /64 (fd63:6372:6c61::/64,
or ``$CCROLLOUT_LAB_SUBNET6``) at the same offset: ::1 the hub, ::b lab1 (0x0b = 11), ::fe the
controller. ``lab down`` takes them away with the namespaces and the controller's veth.

A host may be put *behind the jump host* (``up(behind_jump=["lab3"])``): an nftables table in
its own namespace drops SSH from the controller's addresses, and lab1's sshd may forward SSH
to it (``AllowTcpForwarding local``, ``PermitOpen`` its address only). The inventory reaches
it with ``-o ProxyCommand="ssh -F <lab dir>/ssh_config -W %h:%p lab1"``, the ssh_config with
``ProxyJump lab1``.

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

    up(hosts=3, behind_jump=()) -> str   create or repair the lab with exactly lab1..labN; inventory path
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

Monitoring (``monitoring``): a node_exporter in each host's namespace, listening on the
host's address, port 9100 (netstat collector only, so it reports that namespace's TCP
counters), and one Prometheus on the controller's side at ``http://127.0.0.1:9090`` scraping
them every second (each target labelled ``lab_host="labN"``), its data under
``<lab dir>/monitoring/``. ``down`` ends them and removes the data.

CE marks only matter on ECN-capable connections: a control with TCP_CONG_NEEDS_ECN asks for
ECN by itself; for others set ``net.ipv4.tcp_ecn=1`` in the host's namespace.

Modules, each importing only those above it: ``base`` (paths, state, the lock, commands,
processes), ``netns`` (namespaces, veths, the hub's bridge, addresses), ``sshd``, ``traffic``
(the sink and senders, and starting them), ``impairments``, ``inventory``, ``monitoring``
(node_exporter and Prometheus), and ``lifecycle``
(up, down, status).
"""

from ccrollout.errors import LabFailed
from ccrollout.lab.base import DEFAULT_LAB_DIR, lab_dir
from ccrollout.lab.netns import (
    BRIDGE, DEFAULT_SUBNET, DEFAULT_SUBNET6, HOST_DEFAULT_CONGESTION, HOST_IFACE, HOST_OFFSET, HUB_NS,
    HUB_OFFSET, HUB_ROOT_VETH, JUMP_HOST, ROOT_OFFSET, ROOT_VETH, lab_subnet6)
from ccrollout.lab.sshd import SSH_PORT, SSHD, SSHD_PRIVSEP_DIR
from ccrollout.lab.traffic import (
    LABTRAFFIC, TRAFFIC_PORT, run_transfer, traffic_start, traffic_stop, transfer)
from ccrollout.lab.impairments import (
    DEFAULT_RATE, NFT_TABLE, PROBABILITY_SCALE, TBF_BURST, TBF_LIMIT_BYTES, impair,
    parse_fraction, parse_rate)
from ccrollout.lab.inventory import inventory_path
from ccrollout.lab.monitoring import PROMETHEUS_URL
from ccrollout.lab.lifecycle import DEFAULT_HOSTS, MAX_HOSTS, down, leftovers, status, up

__all__ = [
    "BRIDGE", "DEFAULT_HOSTS", "DEFAULT_LAB_DIR", "DEFAULT_RATE", "DEFAULT_SUBNET", "DEFAULT_SUBNET6",
    "HOST_DEFAULT_CONGESTION", "HOST_IFACE", "HOST_OFFSET", "HUB_NS", "HUB_OFFSET",
    "HUB_ROOT_VETH", "JUMP_HOST", "LABTRAFFIC", "LabFailed", "lab_subnet6", "MAX_HOSTS", "NFT_TABLE", "PROBABILITY_SCALE", "PROMETHEUS_URL",
    "ROOT_OFFSET", "ROOT_VETH", "SSHD", "SSHD_PRIVSEP_DIR", "SSH_PORT", "TBF_BURST",
    "TBF_LIMIT_BYTES", "TRAFFIC_PORT", "down", "impair", "inventory_path", "lab_dir",
    "leftovers", "parse_fraction", "parse_rate", "run_transfer", "status", "traffic_start",
    "traffic_stop", "transfer", "up",
]
