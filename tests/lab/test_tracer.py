"""The retransmission tracer against real TCP between network namespaces.

Two senders (ccrtr-a, ccrtr-b) reach a receiver (ccrtr-r) through a bridge, all
in 10.198.0.0/24 (a test network of tests/lab/testnet.py). An nftables rule in
the receiver drops 2 % of what sender A sends to one port, so A has one lossy
and one clean connection and B only a clean one. A tracer runs inside each
sender (as a host would run it: `ip netns exec NAME python3 -m
ccrollout.host.tracecli`) and one in this process, in the initial namespace,
which owns none of these connections.

What the tracers report is checked against the senders' own tcp_info. After
each test no probe of ours is attached (bpftool perf / prog show), and the
namespaces, and with them the nft table and the veths, are gone.
"""

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ccrollout.host import kernelheaders, tracer
from kernelview import loaded_program_ids, retransmit_probes
from labkit import REPO, require_lab
from testnet import COMMAND_TIMEOUT, Network, run

SYSTEM_PYTHON = "/usr/bin/python3"   # where Debian's python3-bpfcc lives
PREFIX = "ccrtr-"
LOSSY_SENDER, CLEAN_SENDER, RECEIVER = "ccrtr-a", "ccrtr-b", "ccrtr-r"
ADDRESSES = {LOSSY_SENDER: "10.198.0.101", CLEAN_SENDER: "10.198.0.102", RECEIVER: "10.198.0.110"}
LOSSY_PORT, CLEAN_PORT, LOOPBACK_PORT = 5311, 5312, 5313
LOOPBACK_NETNS = "ccrtr-6"
DROP_PER_MILLE = 20
NFT_TABLE = "ccrtr"
TRANSFER_SECONDS = 3.0
LOOPBACK_TRANSFER_SECONDS = 1.5
TRACE_SECONDS = TRANSFER_SECONDS + 3.0   # the tracers outlast the transfers, which start after them
CLEAN_MARGIN = 10    # the lossy connection must show this many times the clean ones' retransmissions

# Drains every connection it accepts until the peer closes; one thread per connection.
SINK = """
import select, socket, sys, threading
address, expected, ports = sys.argv[1], int(sys.argv[2]), [int(port) for port in sys.argv[3:]]
family = socket.AF_INET6 if ":" in address else socket.AF_INET
servers = [socket.create_server((address, port), family=family) for port in ports]
def drain(connection):
    connection.settimeout(20)
    try:
        while connection.recv(1 << 20):
            pass
    finally:
        connection.close()
print("listening", flush=True)
threads = []
while len(threads) < expected:
    ready, _, _ = select.select(servers, [], [], 20)
    if not ready:
        break
    for server in ready:
        connection, _ = server.accept()
        threads.append(threading.Thread(target=drain, args=(connection,)))
        threads[-1].start()
for thread in threads:
    thread.join(30)
"""

# Sends on each PORT:CONTROL connection for a bounded time, waits until the receiver has
# everything (so the connection retransmits no more), then reports its own tcp_info.
# TCP paces itself below what a busy 2-core machine forwards between namespaces without
# dropping: unpaced, clean flows here lose packets to CPU contention and retransmit.
SENDER = """
import json, socket, struct, sys, threading, time
address, seconds, flows = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
TOTAL_RETRANS_OFFSET = 100   # struct tcp_info, include/uapi/linux/tcp.h
SO_MAX_PACING_RATE = 47      # asm-generic/socket.h
PACING_BYTES_PER_SECOND = 25_000_000
results = []
def send(port, control):
    connection = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, control.encode())
    connection.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, PACING_BYTES_PER_SECOND)
    connection.settimeout(5)
    connection.connect((address, port))
    connection.settimeout(0.2)
    chunk, sent, deadline = b"x" * 65536, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sent += connection.send(chunk)
        except socket.timeout:
            pass
    connection.shutdown(socket.SHUT_WR)
    connection.settimeout(20)
    while connection.recv(1 << 16):
        pass
    info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    used = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\\0")[0].decode()
    results.append({"dport": port, "sport": connection.getsockname()[1], "congestion": used, "sent": sent,
                    "total_retrans": struct.unpack_from("=I", info, TOTAL_RETRANS_OFFSET)[0]})
    connection.close()
threads = [threading.Thread(target=send, args=(int(port), control))
           for port, control in (flow.split(":") for flow in flows)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(40)
print(json.dumps(results), flush=True)
"""


# ---------------------------------------------------------------- plumbing

def retransmit_probes_of(pids: set[int]) -> list[dict]:
    return [entry for entry in retransmit_probes() if entry.get("pid") in pids]


def read_line(process: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"{process.args} said nothing within {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"{process.args} ended early: {process.stderr.read().strip()}")
    return line


def start_tracer(network: Network, netns: str, header_cache: Path,
                 seconds: float = TRACE_SECONDS) -> tuple[subprocess.Popen, dict]:
    process = network.start(netns, SYSTEM_PYTHON, "-m", "ccrollout.host.tracecli", "--seconds", str(seconds),
                            "--interval", "1", "--json", "--header-cache", str(header_cache))
    started = json.loads(read_line(process, COMMAND_TIMEOUT))
    assert started["event"] == "started", started
    return process, started


def finish_tracer(process: subprocess.Popen) -> list[dict]:
    """The intervals a tracer reported after its start line, once it has ended by itself."""
    stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    assert process.returncode == 0, f"the tracer failed: {stderr.strip()}"
    reports = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [report for report in reports if report["event"] == "interval"]


def retransmits_by_connection(intervals: list[dict]) -> dict[tuple, dict]:
    """Each connection's retransmissions summed over the intervals, with the control it was given."""
    totals: dict[tuple, dict] = {}
    for interval in intervals:
        for entry in interval["connections"]:
            key = (entry["saddr"], entry["sport"], entry["daddr"], entry["dport"])
            total = totals.setdefault(key, {"retransmits": 0, "congestion": set()})
            total["retransmits"] += entry["retransmits"]
            total["congestion"].add(entry["congestion"])
    return totals


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def header_cache(tmp_path_factory):
    """The merged header tree, built once for the module in a temporary directory."""
    cache = tmp_path_factory.mktemp("bcc-headers")
    if os.geteuid() == 0:
        kernelheaders.kernel_headers(cache)
    return cache


@pytest.fixture(scope="module", autouse=True)
def tracefs_as_found():
    """A tracer outside `ip netns exec` mounts tracefs for good if it is missing; undo that."""
    mounted_before = tracer.tracefs_dir() is not None
    yield
    if not mounted_before and tracer.tracefs_dir() is not None:
        run("umount", str(tracer.TRACEFS_MOUNTS[0]), check=False)


@pytest.fixture
def network(testnet):
    """Sender A (lossy towards LOSSY_PORT), sender B, the receiver; removed whatever happens."""
    lossy_traffic = f"ip saddr {ADDRESSES[LOSSY_SENDER]} tcp dport {LOSSY_PORT}"
    return testnet(PREFIX, ADDRESSES, nft={RECEIVER: f"""
        table inet {NFT_TABLE} {{
            chain input {{
                type filter hook input priority 0; policy accept;
                {lossy_traffic} numgen random mod 1000 < {DROP_PER_MILLE} drop
            }}
        }}"""})


@pytest.fixture
def lossy_loopback(testnet):
    """A namespace whose IPv6 loopback loses 2 % of what is sent to LOOPBACK_PORT."""
    return testnet(PREFIX, {LOOPBACK_NETNS: None}, nft={LOOPBACK_NETNS: f"""
        table inet {NFT_TABLE} {{
            chain input {{
                type filter hook input priority 0; policy accept;
                ip6 daddr ::1 tcp dport {LOOPBACK_PORT} numgen random mod 1000 < {DROP_PER_MILLE} drop
            }}
        }}"""})


# ---------------------------------------------------------------- sockdiag

def test_sockdiag_in_a_namespace_without_sockets(testnet):
    netns = PREFIX + "empty"
    network = testnet(PREFIX, {netns: None})
    listed = network.run(netns, sys.executable, "-c",
                         "from ccrollout.host import sockdiag; print(len(sockdiag.tcp_sockets()))")
    assert listed.stdout.strip() == "0"


# ---------------------------------------------------------------- attribution, without the kernel

def test_bcc_status_says_where_headers_come_from(header_cache, monkeypatch):
    require_lab()
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    status = tracer.bcc_status(header_cache)
    assert status["bcc"] and status["headers"] and status["ready"], status["reason"]
    assert Path(status["headers_source"], "include").is_dir()
    broken = tracer.bcc_status(header_cache, root=header_cache / "nothing-here")
    if not kernelheaders.running_kernel_build_dir().is_dir():
        assert not broken["ready"] and "no kernel headers" in broken["reason"]


def test_merged_header_tree_is_built_once(header_cache):
    require_lab()
    tree = kernelheaders.merged_header_tree(header_cache)
    built_at = tree.stat().st_mtime_ns
    assert kernelheaders.merged_header_tree(header_cache) == tree and tree.stat().st_mtime_ns == built_at
    assert (tree / "include" / "linux" / "kconfig.h").exists()   # from -common
    assert (tree / "include" / "generated").is_dir()             # from the flavour


def test_a_tracer_error_is_one_clear_line(header_cache):
    require_lab()
    result = subprocess.run([SYSTEM_PYTHON, "-m", "ccrollout.host.tracecli", "--seconds", "1"], cwd=REPO,
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                            env={**os.environ, "BCC_KERNEL_SOURCE": "/nonexistent"})
    assert result.returncode == 1
    assert result.stderr.strip() == "ccrollout tracer: BCC_KERNEL_SOURCE=/nonexistent has no include/ directory"


# ---------------------------------------------------------------- tracing real traffic

def test_retransmissions_are_counted_per_connection_and_namespace(network, header_cache):
    sink = network.start(RECEIVER, sys.executable, "-c", SINK, ADDRESSES[RECEIVER], "3",
                         str(LOSSY_PORT), str(CLEAN_PORT))
    assert read_line(sink, COMMAND_TIMEOUT).strip() == "listening"

    with tracer.RetransTracer(header_cache) as in_initial_namespace:
        lossy_tracer, started = start_tracer(network, LOSSY_SENDER, header_cache)
        clean_tracer, _ = start_tracer(network, CLEAN_SENDER, header_cache)
        tracer_pids = {lossy_tracer.pid, clean_tracer.pid, os.getpid()}
        attached = retransmit_probes_of(tracer_pids)
        assert {entry["pid"] for entry in attached} == tracer_pids, attached

        senders = [network.start(LOSSY_SENDER, sys.executable, "-c", SENDER, ADDRESSES[RECEIVER],
                                 str(TRANSFER_SECONDS), f"{LOSSY_PORT}:reno", f"{CLEAN_PORT}:cubic"),
                   network.start(CLEAN_SENDER, sys.executable, "-c", SENDER, ADDRESSES[RECEIVER],
                                 str(TRANSFER_SECONDS), f"{CLEAN_PORT}:cubic")]
        lossy_flows, clean_flows = ({flow["dport"]: flow for flow in json.loads(sender.communicate(
            timeout=COMMAND_TIMEOUT)[0])} for sender in senders)

        lossy_intervals = finish_tracer(lossy_tracer)
        clean_intervals = finish_tracer(clean_tracer)
        seen_from_initial = in_initial_namespace.read_interval()
    assert not retransmit_probes_of(tracer_pids), "a retransmit probe is still attached"
    assert not {entry["prog_id"] for entry in attached} & loaded_program_ids(), "a tracer program is still loaded"

    lossy_host, clean_host, receiver = ADDRESSES[LOSSY_SENDER], ADDRESSES[CLEAN_SENDER], ADDRESSES[RECEIVER]
    lossy = lossy_flows[LOSSY_PORT]
    clean_from_lossy_host, clean = lossy_flows[CLEAN_PORT], clean_flows[CLEAN_PORT]
    assert (lossy["congestion"], clean["congestion"]) == ("reno", "cubic")
    print(f"\ntracer start-up {started['startup_seconds']} s; sender tcp_info total_retrans: "
          f"lossy {lossy['total_retrans']}, clean {clean_from_lossy_host['total_retrans']} "
          f"and {clean['total_retrans']}")

    # Inside the lossy sender: its lossy connection stands out, under the control it was given.
    in_lossy_host = retransmits_by_connection(lossy_intervals)
    lossy_seen = in_lossy_host.get((lossy_host, lossy["sport"], receiver, LOSSY_PORT))
    assert lossy_seen and lossy_seen["congestion"] == {"reno"}, in_lossy_host
    clean_seen = in_lossy_host.get((lossy_host, clean_from_lossy_host["sport"], receiver, CLEAN_PORT),
                                   {"retransmits": 0, "congestion": {"cubic"}})
    assert clean_seen["congestion"] == {"cubic"}
    print(f"tracer in {LOSSY_SENDER}: lossy {lossy_seen['retransmits']} retransmits, clean {clean_seen['retransmits']}")
    assert lossy_seen["retransmits"] > CLEAN_MARGIN * max(clean_seen["retransmits"], 1)
    # Every counted retransmission sent at least one segment, which tcp_info counted too.
    assert lossy_seen["retransmits"] <= lossy["total_retrans"]
    assert {key[0] for key in in_lossy_host} == {lossy_host}, "another namespace's connection was attributed"

    # Inside the clean sender: only its own connection, and A's retransmissions are not its.
    in_clean_host = retransmits_by_connection(clean_intervals)
    assert all(key[0] == clean_host for key in in_clean_host), in_clean_host
    clean_elsewhere = in_clean_host.get((clean_host, clean["sport"], receiver, CLEAN_PORT), {"retransmits": 0})
    print(f"tracer in {CLEAN_SENDER}: its connection {clean_elsewhere['retransmits']} retransmits, "
          f"unattributed {sum(i['unattributed'] for i in clean_intervals)}")
    assert lossy_seen["retransmits"] > CLEAN_MARGIN * max(clean_elsewhere["retransmits"], 1)
    assert sum(interval["unattributed"] for interval in clean_intervals) >= lossy_seen["retransmits"]

    # In the initial namespace none of these connections exists: all of it is unattributed.
    assert not [c for c in seen_from_initial.connections if c.connection.saddr.startswith("10.198.0.")]
    assert seen_from_initial.unattributed >= lossy_seen["retransmits"]


def test_ipv6_connections_are_counted(lossy_loopback, header_cache):
    sink = lossy_loopback.start(LOOPBACK_NETNS, sys.executable, "-c", SINK, "::1", "1", str(LOOPBACK_PORT))
    assert read_line(sink, COMMAND_TIMEOUT).strip() == "listening"
    traced, _ = start_tracer(lossy_loopback, LOOPBACK_NETNS, header_cache, seconds=LOOPBACK_TRANSFER_SECONDS + 2)
    sender = lossy_loopback.start(LOOPBACK_NETNS, sys.executable, "-c", SENDER, "::1",
                                  str(LOOPBACK_TRANSFER_SECONDS), f"{LOOPBACK_PORT}:reno")
    flow = json.loads(sender.communicate(timeout=COMMAND_TIMEOUT)[0])[0]
    seen = retransmits_by_connection(finish_tracer(traced)).get(("::1", flow["sport"], "::1", LOOPBACK_PORT))
    assert seen and seen["congestion"] == {"reno"} and 0 < seen["retransmits"] <= flow["total_retrans"], seen


def test_the_probe_is_detached_when_the_caller_is_interrupted(header_cache):
    require_lab()
    with pytest.raises(KeyboardInterrupt):
        with tracer.RetransTracer(header_cache) as traced:
            attached = retransmit_probes_of({os.getpid()})
            assert traced.attached and len(attached) == 1
            raise KeyboardInterrupt
    assert not traced.attached and not retransmit_probes_of({os.getpid()})
    assert attached[0]["prog_id"] not in loaded_program_ids()


def test_a_terminated_tracer_exits_cleanly(network, header_cache):
    process, _ = start_tracer(network, CLEAN_SENDER, header_cache, seconds=30)
    assert retransmit_probes_of({process.pid})
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=COMMAND_TIMEOUT)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert not retransmit_probes_of({process.pid})
