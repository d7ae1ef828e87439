"""The congestion controls in bpf/ load into the real kernel and carry real TCP.

Each control goes the whole way a rollout takes it: ccrollout.build compiles
and inspects it, the host side (`python3 -m ccrollout.host`, started in a
network namespace as on a lab host) loads, pins and activates it, and a TCP
transfer between two namespaces runs under it. What the host side reports is
checked against independent views: `ss -ti`, `bpftool` and /proc.

The two namespaces (ccrt-a sends, ccrt-b receives) are joined through a bridge
in 10.198.0.0/24 (a test network of tests/lab/testnet.py). Every host-side run
sees one bpffs instance that the network mounted in the root mount namespace, so
the pins outlive each run (as they would on a node) and the whole instance goes
away with the module.
"""

import contextlib
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ccrollout import build
from kernelview import registered_controls, struct_ops_links
from labkit import REPO, struct_ops_named
from testnet import COMMAND_TIMEOUT, Network, in_netns, wait_until

PREFIX = "ccrt-"
SENDER, RECEIVER = "ccrt-a", "ccrt-b"
SENDER_ADDR, RECEIVER_ADDR = "10.198.0.1", "10.198.0.2"
PORT = 5201
NFT_TABLE = "ccrt"
SAMPLE_INTERVAL = 0.05      # seconds between `ss` samples during a transfer
TRANSFER_SECONDS = 1.0      # a transfer that only has to show up in `ss`
DCTCP_TRANSFER_SECONDS = 2.0
CE_MARK_PERCENT = 20        # share of ECN-capable packets the "switch" marks CE
TCP_CONG_NON_RESTRICTED = 0x1
CWND_SEPARATION = 10        # unmarked median cwnd must exceed the marked one by this factor

CONTROLS = {
    "ccr_reno": REPO / "bpf" / "ccr_reno.bpf.c",
    "ccr_dctcp": REPO / "bpf" / "ccr_dctcp.bpf.c",
    "ccr_broken": REPO / "bpf" / "fixtures" / "ccr_broken.bpf.c",
}
# Where each control is made the default. DCTCP needs both ends: a peer that does not
# run it refuses ECN for DCTCP's ECT-marked SYN (see the fallback test).
ENDS = {"ccr_dctcp": (SENDER, RECEIVER)}
REJECTED = ("ccr_rejected", REPO / "bpf" / "fixtures" / "ccr_rejected.bpf.c")

# Receives until the sender closes, then says how much arrived. One connection.
SINK = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
server.settimeout(20)
print("listening", flush=True)
connection, _ = server.accept()
connection.settimeout(20)
received = 0
while chunk := connection.recv(1 << 20):
    received += len(chunk)
connection.close()
print(received, flush=True)
"""

# Sends as fast as it can for a bounded time, then closes.
SENDER_SCRIPT = """
import socket, sys, time
address, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
connection = socket.create_connection((address, port), timeout=10)
block = b"x" * (1 << 16)
sent, deadline = 0, time.monotonic() + seconds
while time.monotonic() < deadline:
    sent += connection.send(block)
connection.shutdown(socket.SHUT_WR)
connection.recv(1)
connection.close()
print(sent, flush=True)
"""


@dataclass
class Lab:
    """The two namespaces' network (with its shared bpffs), a state directory per namespace."""

    net: Network
    state_dirs: dict[str, str]

    def host(self, netns: str, actions: list[dict]) -> list[dict]:
        """One run of the host side in NETNS, as the fleet would start it over SSH."""
        request = json.dumps({"state_dir": self.state_dirs[netns], "actions": actions})
        result = self.net.run(netns, "python3", "-m", "ccrollout.host", input=request, check=False,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, f"host side failed in {netns}: {result.stderr}"
        return json.loads(result.stdout)["results"]

    def push(self, netns: str, built: build.BuiltObject) -> None:
        objects = Path(self.state_dirs[netns]) / "objects"
        objects.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built.path, objects / f"{built.digest}.bpf.o")


@pytest.fixture(scope="module")
def lab(module_testnet, tmp_path_factory):
    assert shutil.which("ss"), "ss is not installed (make setup)"
    net = module_testnet(PREFIX, {SENDER: SENDER_ADDR, RECEIVER: RECEIVER_ADDR}, bpffs=True)
    state_root = tmp_path_factory.mktemp("ccrt-state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CCROLLOUT_CACHE", str(state_root / "build-cache"))  # compile for real
        yield Lab(net, {netns: str(state_root / netns) for netns in (SENDER, RECEIVER)})
    # module_testnet removes the network and asserts that nothing this module loaded outlives it


def assert_ok(results: list[dict], count: int) -> None:
    assert len(results) == count and all(r["ok"] for r in results), json.dumps(results, indent=1)


@contextlib.contextmanager
def activated(lab: Lab, built: build.BuiltObject, namespaces: tuple[str, ...]):
    """Install and activate BUILT in each namespace; always deactivate and check it is gone."""
    if built.name in registered_controls():
        pytest.fail(f"{built.name} is already registered on this kernel by someone else "
                    "(a lab left running?); these tests need the name free")
    touched, undone = [], []
    try:
        for netns in namespaces:
            lab.push(netns, built)
            touched.append(netns)
            results = lab.host(netns, [{"op": "install", "name": built.name, "digest": built.digest},
                                       {"op": "activate", "name": built.name, "digest": built.digest}])
            assert_ok(results, 2)
            assert results[1]["default"] == built.name
        yield
    finally:
        for netns in reversed(touched):
            try:
                undone += lab.host(netns, [{"op": "deactivate", "name": built.name}])
            except Exception as exc:  # go on: the lab's teardown removes whatever is left
                undone.append({"ok": False, "error": repr(exc)})
    assert all(result["ok"] for result in undone), undone
    # The last user gone: unpinned and unregistered, independently of what the host side says.
    assert not os.path.exists(os.path.join(lab.net.bpffs, "ccrollout", built.name))
    assert wait_until(lambda: built.name not in registered_controls())
    assert wait_until(lambda: not struct_ops_named(built.name))


@dataclass
class Transfer:
    sent: int
    received: int
    samples: list[dict]  # one per `ss` sample that saw the connection: {"cc", "cwnd", "ecn", "line"}


# What `ss -ti` prints before the control's name: the connection's TCP options.
SS_OPTION_WORDS = {"ts", "sack", "ecn", "ecnseen", "fastopen", "cong"}


def parse_ss(output: str) -> list[dict]:
    """The connections in `ss -tinoH` output: socket line, then the tcp_info line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    connections = []
    for info in lines[1::2]:
        tokens = info.split()
        cwnd = next((int(t.split(":")[1]) for t in tokens if t.startswith("cwnd:")), None)
        cc = next((t for t in tokens if ":" not in t and t not in SS_OPTION_WORDS), "")
        connections.append({"cc": cc, "cwnd": cwnd, "ecn": "ecn" in tokens, "line": info})
    return connections


def transfer(lab: Lab, seconds: float) -> Transfer:
    """SENDER sends to RECEIVER for SECONDS; `ss -tin` in SENDER is sampled meanwhile."""
    sink = lab.net.start(RECEIVER, sys.executable, "-c", SINK, RECEIVER_ADDR, str(PORT))
    try:
        assert sink.stdout.readline().strip() == "listening", sink.stderr.read()
        sender = lab.net.start(SENDER, sys.executable, "-c", SENDER_SCRIPT, RECEIVER_ADDR, str(PORT), str(seconds))
        samples = []
        while sender.poll() is None:
            # -o as well: iproute2 6.1 prints the options (ts sack ecn) only with -o or -e
            output = in_netns(SENDER, "ss", "-tinoH", "state", "established", "dst", RECEIVER_ADDR,
                              "dport", "=", f":{PORT}").stdout
            samples += parse_ss(output)
            time.sleep(SAMPLE_INTERVAL)
        sent_output, sender_errors = sender.communicate(timeout=COMMAND_TIMEOUT)
        assert sender.returncode == 0, sender_errors
        received_output, sink_errors = sink.communicate(timeout=COMMAND_TIMEOUT)
        assert sink.returncode == 0, sink_errors
        return Transfer(int(sent_output), int(received_output), samples)
    finally:
        lab.net.stop_processes()


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_control_loads_and_carries_traffic(lab, name):
    built = build.build(name, CONTROLS[name])
    assert built.name == name and built.flags & TCP_CONG_NON_RESTRICTED  # else no namespace may use it
    ends = ENDS.get(name, (SENDER,))
    with activated(lab, built, ends):
        (facts,) = lab.host(SENDER, [{"op": "facts"}])
        assert facts["facts"]["default"] == name
        assert facts["facts"]["managed"][name]["digest"] == built.digest
        # Independent views: the kernel's registry, its links and struct_ops maps.
        assert name in registered_controls()
        assert Path(lab.net.bpffs, "ccrollout", name, "link").exists()
        maps = struct_ops_named(name)
        assert len(maps) == 1 and maps[0].get("kernel_struct_ops") == "tcp_congestion_ops", maps
        links = [link for link in struct_ops_links(check=True) if link.get("map_id") == maps[0]["id"]]
        assert len(links) == 1, struct_ops_links(check=True)
        if RECEIVER not in ends:  # the default is per namespace
            assert in_netns(RECEIVER, "sysctl", "-n", "net.ipv4.tcp_congestion_control").stdout.strip() != name

        result = transfer(lab, TRANSFER_SECONDS)
        assert result.received == result.sent > 0
        assert result.samples, "ss never saw the connection"
        assert {sample["cc"] for sample in result.samples} == {name}, result.samples[0]["line"]


def ip_ext_counter(netns: str, name: str) -> int:
    """An IpExt counter of NETNS from /proc/net/netstat (e.g. InECT0Pkts: ECT(0) packets received)."""
    lines = in_netns(netns, "cat", "/proc/net/netstat").stdout.splitlines()
    for header, values in zip(lines, lines[1:]):
        if header.startswith("IpExt:") and values.startswith("IpExt:"):
            return int(dict(zip(header.split(), values.split()))[name])
    raise AssertionError("no IpExt counters in /proc/net/netstat")


def test_dctcp_falls_back_to_reno_without_ecn(lab):
    """A peer that does not run DCTCP refuses ECN; the connection goes to Reno and stops sending ECT."""
    built = build.build("ccr_dctcp", CONTROLS["ccr_dctcp"])
    with activated(lab, built, (SENDER,)):
        ect_before = ip_ext_counter(RECEIVER, "InECT0Pkts")
        result = transfer(lab, TRANSFER_SECONDS)
        ect_received = ip_ext_counter(RECEIVER, "InECT0Pkts") - ect_before
    assert result.received == result.sent > 0 and result.samples
    for sample in result.samples:
        assert sample["cc"] == "reno" and not sample["ecn"], sample["line"]
    assert ect_received <= 1, "only DCTCP's SYN may carry ECT"


def delivered_ce(lab: Lab, netns: str) -> int:
    """Segments the senders of NETNS saw acknowledged with ECE (tp->delivered_ce, summed)."""
    (counters,) = lab.host(netns, [{"op": "counters"}])
    return counters["counters"]["TCPDeliveredCE"]


def median_cwnd(result: Transfer) -> float:
    return statistics.median(sample["cwnd"] for sample in result.samples)


def test_dctcp_keeps_a_smaller_window_under_ce_marks(lab):
    """CE marks on a share of the packets hold DCTCP's window far below an unmarked run.

    There is no bottleneck (no netem or fq here): unmarked, the window grows to
    thousands of segments; with 20 % of the packets marked, alpha settles near
    0.2 and the window stays at a few tens. A factor of CWND_SEPARATION leaves
    room for a slow, busy machine.
    """
    built = build.build("ccr_dctcp", CONTROLS["ccr_dctcp"])
    # Both ends run it: DCTCP needs ECN negotiated, and the receiver's precise ECE echo.
    with activated(lab, built, (SENDER, RECEIVER)):
        unmarked = transfer(lab, DCTCP_TRANSFER_SECONDS)
        ce_before = delivered_ce(lab, SENDER)
        # The "switch": marks CE on a share of the ECN-capable packets before the receiver.
        lab.net.nft(RECEIVER, f"""
            table ip {NFT_TABLE} {{
                chain ingress {{
                    type filter hook prerouting priority raw; policy accept;
                    ip saddr {SENDER_ADDR} tcp dport {PORT} ip ecn {{ ect0, ect1 }} numgen random mod 100 < {CE_MARK_PERCENT} counter ip ecn set ce
                }}
            }}
            """)
        try:
            marked = transfer(lab, DCTCP_TRANSFER_SECONDS)
            ruleset = json.loads(in_netns(RECEIVER, "nft", "-j", "list", "table", "ip", NFT_TABLE).stdout)
        finally:
            in_netns(RECEIVER, "nft", "delete", "table", "ip", NFT_TABLE, check=False)
        echoed_ce = delivered_ce(lab, SENDER) - ce_before

    marked_packets = sum(expression["counter"]["packets"] for item in ruleset["nftables"] if "rule" in item
                         for expression in item["rule"]["expr"] if "counter" in expression)
    for result in (unmarked, marked):
        assert result.received == result.sent > 0
        assert result.samples, "ss never saw the connection"
        for sample in result.samples:
            assert sample["cc"] == "ccr_dctcp" and sample["ecn"], sample["line"]
    assert marked_packets > 0, "the nftables rule marked nothing"
    assert echoed_ce > 0, "the sender never counted an ECE-acknowledged segment"
    print(f"\nccr_dctcp median cwnd: {median_cwnd(unmarked):g} unmarked, {median_cwnd(marked):g} with "
          f"{CE_MARK_PERCENT} % CE ({marked_packets} packets marked, {echoed_ce} segments echoed; "
          f"{len(unmarked.samples)} and {len(marked.samples)} samples)")
    assert median_cwnd(marked) * CWND_SEPARATION < median_cwnd(unmarked)


def test_verifier_rejection_is_reported_and_leaves_nothing(lab):
    name, source = REJECTED
    built = build.build(name, source)  # the controller's checks cannot see this bug
    lab.push(SENDER, built)
    links_before = {link["id"] for link in struct_ops_links(check=True)}
    try:
        results = lab.host(SENDER, [{"op": "install", "name": name, "digest": built.digest},
                                    {"op": "activate", "name": name, "digest": built.digest}])
    finally:
        results_of_cleanup = lab.host(SENDER, [{"op": "deactivate", "name": name}])
    assert len(results) == 1, "the batch must stop at the refused install"
    (install,) = results
    assert install["ok"] is False and install["changed"] is False
    assert "kernel refused" in install["error"] and name in install["error"]
    # The verifier's own log, naming the forbidden write and the source line that made it.
    log = install["log"]
    # The verifier's own words, without libbpf's framing and debug lines.
    assert "no write support to tcp_sock" in log and "libbpf:" not in log, log[-2000:]
    assert "tp->snd_nxt = " in log, log[-2000:]
    assert_ok(results_of_cleanup, 1)
    assert results_of_cleanup[0]["changed"] is False  # there was nothing to undo
    assert name not in registered_controls()
    assert not os.path.exists(os.path.join(lab.net.bpffs, "ccrollout", name))
    assert not struct_ops_named(name)
    assert {link["id"] for link in struct_ops_links(check=True)} <= links_before
    assert in_netns(SENDER, "sysctl", "-n", "net.ipv4.tcp_congestion_control").stdout.strip() != name
