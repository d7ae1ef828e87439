"""The local lab fleet: namespaces with their own sshd, shared bpffs, traffic, impairments.

One lab (3 hosts) for the whole module; it is always taken down, also when a test fails.
The last test takes it down itself and checks that nothing is left.
"""

import os
import re
import shutil
import subprocess
import time
import uuid

import fabric
import paramiko
import pytest

from ccrollout import lab
from ccrollout.errors import LabFailed


HOSTS = 3


def _skip_unless_possible():
    if os.environ.get("CI") == "true":
        return                      # in CI a lab test never skips: it passes or fails
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")


@pytest.fixture(scope="module")
def fleet():
    _skip_unless_possible()
    try:
        started = time.monotonic()
        inventory = lab.up(HOSTS)
        info = lab.status()
        info["inventory_path"] = inventory
        info["up_seconds"] = time.monotonic() - started
        yield info
    finally:
        lab.down()


def _paths():
    root = lab.lab_dir()
    return str(root / "id_ed25519"), str(root / "known_hosts")


def _connect(address, known_hosts=None):
    key, default_known_hosts = _paths()
    conn = fabric.Connection(address, user="root", port=22,
                             connect_kwargs={"key_filename": key, "look_for_keys": False,
                                             "allow_agent": False, "timeout": 10})
    # Fabric installs AutoAddPolicy: turn host-key checking back on.
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(known_hosts or default_known_hosts)
    # Every conn.run below passes in_stream=False: under pytest's capture, invoke's
    # stdin forwarding would fail reading the captured stdin.
    return conn


def _counters(ns, *names):
    out = subprocess.run(["ip", "netns", "exec", ns, "nstat", "-az", *names],
                         capture_output=True, text=True, check=True).stdout
    values = dict.fromkeys(names, 0)
    for line in out.splitlines()[1:]:
        fields = line.split()
        values[fields[0]] = int(fields[1])
    return values


def _live_pids(marker: bytes):
    """Running (not zombie) processes whose command line contains marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if marker in fh.read():
                    found.append(int(entry))
        except (OSError, IndexError):
            pass
    return found


def test_the_lab_comes_up(fleet):
    assert fleet["up"], fleet
    assert sorted(fleet["hosts"]) == ["lab1", "lab2", "lab3"]
    assert fleet["inventory_path"] == lab.inventory_path()
    text = open(fleet["inventory_path"]).read()
    for index in range(1, HOSTS + 1):
        host = fleet["hosts"][f"lab{index}"]
        assert host["namespace"] and host["sshd"]
        assert host["address"] == f"10.199.0.{10 + index}"
        assert host["address6"] == f"fd63:6372:6c61::{10 + index:x}" and not host["behind_jump"]
        assert (f"lab{index} ansible_host=10.199.0.{10 + index} "
                f"ccrollout_state_dir={lab.lab_dir()}/hosts/lab{index}") in text
        assert os.path.isdir(f"{lab.lab_dir()}/hosts/lab{index}")
    assert "[lab:vars]\nansible_user=root\nansible_port=22\n" in text
    assert f"ccrollout_known_hosts={lab.lab_dir()}/known_hosts" in text
    print(f"lab up with {HOSTS} hosts took {fleet['up_seconds']:.2f}s")


def test_each_host_answers_over_ssh_with_host_key_checking(fleet):
    boot_ids = set()
    for name, host in fleet["hosts"].items():
        with _connect(host["address"]) as conn:
            result = conn.run("hostname; ip -4 -o addr show dev eth0; "
                              "cat /proc/sys/kernel/random/boot_id", hide=True, in_stream=False)
        hostname, addr_line, boot_id = result.stdout.strip().splitlines()
        assert hostname == name
        assert f"inet {host['address']}/24" in addr_line
        boot_ids.add(boot_id)
    assert len(boot_ids) == 1       # one kernel: the design relies on this


def test_a_wrong_or_missing_host_key_is_rejected(fleet, tmp_path):
    known = open(_paths()[1]).read().splitlines()
    lab2_key = known[1].split(" ", 1)[1]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"10.199.0.11 {lab2_key}\n")       # lab1's address, lab2's key
    with pytest.raises(paramiko.BadHostKeyException):
        with _connect("10.199.0.11", str(wrong)) as conn:
            conn.run("true", hide=True, in_stream=False)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        with _connect("10.199.0.11", str(empty)) as conn:
            conn.run("true", hide=True, in_stream=False)


def test_each_host_answers_ssh_on_its_ipv6_address_too(fleet):
    assert fleet["subnet6"] == lab.DEFAULT_SUBNET6
    for name, host in fleet["hosts"].items():
        with _connect(host["address6"]) as conn:
            assert conn.run("hostname", hide=True, in_stream=False).stdout.strip() == name


def test_sessions_see_one_shared_bpffs(fleet):
    bpffs = lab.lab_dir() / "bpffs"
    probe = f"probe_{uuid.uuid4().hex[:8]}"     # bpffs refuses names with a dot
    (bpffs / probe).mkdir()
    try:
        with _connect(fleet["hosts"]["lab1"]["address"]) as conn:
            conn.run(f"mkdir /sys/fs/bpf/{probe}_from_lab1", hide=True, in_stream=False)
        for host in fleet["hosts"].values():
            with _connect(host["address"]) as conn:
                out = conn.run("stat -f -c %T /sys/fs/bpf; ls /sys/fs/bpf", hide=True, in_stream=False).stdout
            assert out.splitlines()[0] == "bpf_fs"
            assert probe in out.split() and f"{probe}_from_lab1" in out.split()
        assert (bpffs / f"{probe}_from_lab1").is_dir()
    finally:
        for name in (probe, f"{probe}_from_lab1"):
            if (bpffs / name).exists():
                (bpffs / name).rmdir()


def test_traffic_start_sends_and_stop_ends_it(fleet):
    before = _counters("lab1", "TcpOutSegs")["TcpOutSegs"]
    pids = lab.traffic_start(lifetime=60)
    try:
        assert sorted(pids) == ["lab1", "lab2", "lab3"] and all(pids.values())
        time.sleep(2.5)
        assert _counters("lab1", "TcpOutSegs")["TcpOutSegs"] - before > 1000
        info = lab.status()
        assert info["traffic"] and info["hub"]["sink"]
        assert all(h["traffic"] for h in info["hosts"].values())
    finally:
        lab.traffic_stop()
    assert _live_pids(f"\0-I\0{lab.LABTRAFFIC}\0".encode()) == []
    assert not lab.status()["traffic"]


def test_loss_produces_retransmissions_while_ssh_works(fleet):
    names = ("TcpOutSegs", "TcpRetransSegs")
    before = _counters("lab3", *names)
    lab.transfer("lab3", 2, congestion="reno")
    after = _counters("lab3", *names)
    baseline = (after["TcpRetransSegs"] - before["TcpRetransSegs"]) / \
        max(after["TcpOutSegs"] - before["TcpOutSegs"], 1)

    assert lab.impair("lab2", loss="5%") == {"rate": "50mbit", "loss": 0.05, "ce": 0.0}
    try:
        before = _counters("lab2", *names)
        sent = lab.run_transfer("lab2", 2, congestion="reno")
        after = _counters("lab2", *names)
        retransmitted = after["TcpRetransSegs"] - before["TcpRetransSegs"]
        ratio = retransmitted / max(after["TcpOutSegs"] - before["TcpOutSegs"], 1)
        assert sent > 0
        assert ratio > 0.02 and ratio > 2 * baseline, (ratio, baseline)
        with _connect(fleet["hosts"]["lab2"]["address"]) as conn:   # SSH is never impaired
            for _ in range(5):
                assert conn.run("echo ok", hide=True, in_stream=False).stdout.strip() == "ok"
        assert lab.status()["hosts"]["lab2"]["impairment"]["loss"] == 0.05
    finally:
        assert lab.impair("lab2", clear=True) == {"rate": "50mbit", "loss": 0.0, "ce": 0.0}


def test_ce_marks_reach_an_ecn_sender_and_rate_is_set(fleet):
    assert lab.impair(3, ce=0.1, rate="20mbit") == {"rate": "20mbit", "loss": 0.0, "ce": 0.1}
    sysctl = ["ip", "netns", "exec", "lab3", "sysctl", "-qw"]
    subprocess.run(sysctl + ["net.ipv4.tcp_ecn=1"], check=True)
    try:
        qdisc = subprocess.run(["tc", "-n", "lab3", "qdisc", "show", "dev", "eth0"],
                               capture_output=True, text=True, check=True).stdout
        assert "tbf" in qdisc and "rate 20Mbit" in qdisc
        before = _counters("lab3", "TcpExtTCPDeliveredCE")["TcpExtTCPDeliveredCE"]
        result = lab.transfer("lab3", 1.5, congestion="reno")
        assert result["congestion"] == "reno"
        assert _counters("lab3", "TcpExtTCPDeliveredCE")["TcpExtTCPDeliveredCE"] > before
    finally:
        subprocess.run(sysctl + ["net.ipv4.tcp_ecn=2"], check=True)
        lab.impair("lab3", clear=True)


def test_bad_knobs_are_user_errors(fleet):
    for call in (lambda: lab.impair("lab9", loss="1%"),
                 lambda: lab.impair("lab1", loss="150%"),
                 lambda: lab.impair("lab1", ce=-0.1),
                 lambda: lab.impair("lab1", rate="fast"),
                 lambda: lab.transfer("lab1", 1, congestion="no_such_cc"),
                 lambda: lab.up(0)):
        with pytest.raises(LabFailed):
            call()


def test_up_is_idempotent_and_grows_and_shrinks(fleet):
    pids = {n: h["sshd_pid"] for n, h in lab.status()["hosts"].items()}
    lab.up(HOSTS)
    assert {n: h["sshd_pid"] for n, h in lab.status()["hosts"].items()} == pids
    lab.up(HOSTS + 1)
    try:
        assert "lab4 ansible_host=10.199.0.14" in open(lab.inventory_path()).read()
        with _connect("10.199.0.14") as conn:
            assert conn.run("hostname", hide=True, in_stream=False).stdout.strip() == "lab4"
    finally:
        lab.up(HOSTS)
    info = lab.status()
    assert sorted(info["hosts"]) == ["lab1", "lab2", "lab3"] and info["up"]
    assert "lab4" not in open(lab.inventory_path()).read()
    assert "lab4" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout


def test_up_without_monitoring_stops_it_and_up_brings_it_back(fleet):
    marker = str(lab.lab_dir() / "monitoring")
    lab.up(HOSTS, with_monitoring=False)
    try:
        info = lab.status()
        assert not info["prometheus"]["running"]
        assert [h["node_exporter_pid"] for h in info["hosts"].values()] == [None] * HOSTS
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # none left
        assert {h["sshd_pid"] is not None for h in info["hosts"].values()} == {True}
    finally:
        lab.up(HOSTS)
    info = lab.status()
    assert info["prometheus"]["running"] and info["prometheus"]["targets_up"] == HOSTS


def test_down_leaves_nothing_behind(fleet):
    root = lab.lab_dir()
    # Leave the kinds of things that outlive a careless teardown: an SSH session with a
    # process in it, background traffic and a pin in the shared bpffs.
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    conn = _connect(fleet["hosts"]["lab1"]["address"])
    conn.open()
    conn.client.exec_command(f"sleep {marker}")
    lab.traffic_start(lifetime=60)
    if shutil.which("bpftool"):
        subprocess.run(["bpftool", "map", "create", str(root / "bpffs" / "leftover"),
                        "type", "array", "key", "4", "value", "4", "entries", "1",
                        "name", "ccrlab_test"], check=True)
    deadline = time.monotonic() + 5
    while not _live_pids(f"sleep\0{marker}".encode()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_pids(f"sleep\0{marker}".encode())

    started = time.monotonic()
    lab.down()
    print(f"lab down took {time.monotonic() - started:.2f}s")
    conn.close()

    assert lab.leftovers() == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(r"^(lab\d+|ccrlab)\b", namespaces, re.M), namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "ccrlab0" not in links
    addresses = subprocess.run(["ip", "-o", "-6", "addr"], capture_output=True, text=True).stdout
    assert "fd63:6372:6c61:" not in addresses
    assert str(root) not in open("/proc/self/mountinfo").read()
    assert _live_pids(f"sleep\0{marker}".encode()) == []
    assert _live_pids(f"{root}/sshd/".encode()) == []
    assert _live_pids(f"\0-I\0{lab.LABTRAFFIC}\0".encode()) == []
    assert not root.exists()
    assert not lab.status()["up"]
