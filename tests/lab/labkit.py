"""What the lab tests share: running the CLI, and looking at hosts the way an observer
outside ccrollout would (the sysctl in the host's namespace, bpftool, the bpffs pins)."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ccrollout import lab
from kernelview import registered_controls, struct_ops_links

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("lab1", "lab2", "lab3")
MAP_RELEASE_SECONDS = 15


@contextlib.contextmanager
def running_lab(hosts: int, **options):
    """The lab with background traffic, for a fixture to yield; torn down whatever happens."""
    require_lab()
    try:
        inventory = lab.up(hosts, **options)
        lab.traffic_start()
        yield inventory
    finally:
        try:
            lab.traffic_stop()
        finally:
            lab.down()  # also removes any pin a failed test left, which unregisters its control


def require_lab() -> None:
    """Lab tests run as root; under CI they never skip: they pass or fail."""
    if os.environ.get("CI") == "true":
        return
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")


def ccrollout(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CCROLLOUT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "ccrollout.cli", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)


def default_of(host: str) -> str:
    return subprocess.run(["ip", "netns", "exec", host, "sysctl", "-n", "net.ipv4.tcp_congestion_control"],
                          capture_output=True, text=True, check=True).stdout.strip()


def struct_ops_named(name: str) -> list[dict]:
    result = subprocess.run(["bpftool", "-j", "struct_ops", "show"], capture_output=True, text=True, check=True)
    return [entry for entry in json.loads(result.stdout or "[]") if entry.get("name") == name]


def pin_dir(name: str) -> Path:
    return lab.lab_dir() / "bpffs" / "ccrollout" / name


def host_state(host: str) -> dict:
    path = lab.lab_dir() / "hosts" / host / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"controls": {}}


def assert_gone(name: str) -> None:
    """Unregistered and unpinned at once; the map itself lives on while connections opened
    under it are still open (the lab's senders close theirs within seconds)."""
    assert name not in registered_controls()
    assert not pin_dir(name).exists()
    assert not struct_ops_links()
    deadline = time.monotonic() + MAP_RELEASE_SECONDS
    while struct_ops_named(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not struct_ops_named(name)


def roll_back_every_rollout(home: Path, inventory: str) -> None:
    """Newest first, so each rollback restores what the one before it found."""
    history = json.loads(ccrollout(home, "history", "--json").stdout or "[]")
    for rollout in reversed(history):
        ccrollout(home, "rollback", "-i", inventory, rollout["id"])


# The lab playbooks' limits and sampling: in the lab a BPF control now and then loses a burst
# (see the README), and 1 s intervals let one burst spoil two of a bake's four samples.
LAB_HEALTH = {"min_segments": 300, "max_retransmit_ratio": "15%", "max_increase": "10%"}
# For tests of what a rollout changes (routes, sources), not of the judge: a one-stage plan has one
# baseline interval, and one of the lab's loss bursts (9-26 %, see the README) would fail it.
NOT_JUDGING = {"min_segments": 300, "max_retransmit_ratio": "60%", "max_increase": "55%"}


def write_plan(tmp_path: Path, algorithm: str, source: str, algorithm_options=None, **rollout) -> Path:
    """A plan beside a copy of bpf/, with the lab playbooks' limits."""
    shutil.copytree(REPO / "bpf", tmp_path / "bpf", dirs_exist_ok=True)
    (tmp_path / "plans").mkdir(exist_ok=True)
    plan = {
        "algorithms": [{"name": algorithm, "source": f"../bpf/{source}", **(algorithm_options or {})}],
        "rollouts": [{"name": f"test-{algorithm}", "algorithm": algorithm, "hosts": "lab",
                      "stages": [1, "50%", "100%"], "baseline": "2s", "settle": "2s", "bake": "8s", "interval": "2s",
                      "health": LAB_HEALTH, **rollout}],
    }
    path = tmp_path / "plans" / f"{algorithm}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def start_apply(home, inventory: str, plan, **env) -> subprocess.Popen:
    """`ccrollout apply` in the background, its output (stdout and stderr) to read line by line."""
    return subprocess.Popen([sys.executable, "-m", "ccrollout.cli", "apply", "-i", inventory, str(plan)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "CCROLLOUT_HOME": str(home), **env})


# A connection that keeps sending for a while and reports how much the peer has acknowledged
# (tcp_info's tcpi_bytes_acked, at byte 120), so a test can see it carry data across a change.
LONG_SENDER = r"""
import json, socket, struct, sys, time
sock = socket.socket()
if float(sys.argv[4]):  # bytes a second: TCP paces itself below the bottleneck, so it never overflows
    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MAX_PACING_RATE", 47), int(float(sys.argv[4])))
sock.connect((sys.argv[1], int(sys.argv[2])))
control = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
end, chunk, reported = time.monotonic() + float(sys.argv[3]), b"x" * 16384, 0.0
while time.monotonic() < end:
    sock.sendall(chunk)
    if time.monotonic() - reported >= 0.2:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
        acked = struct.unpack_from("<Q", info, 120)[0]
        print(json.dumps({"time": time.time(), "acked": acked, "control": control,
                          "port": sock.getsockname()[1]}), flush=True)
        reported = time.monotonic()
sock.close()
"""


class LongSender:
    """LONG_SENDER in a lab host's namespace, read in a thread."""

    def __init__(self, host: str, seconds: float, pacing: float = 0):
        sink = str(lab.DEFAULT_SUBNET).rsplit(".", 1)[0] + f".{lab.HUB_OFFSET}"
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", host, sys.executable, "-c", LONG_SENDER, sink, str(lab.TRAFFIC_PORT),
             str(seconds), str(pacing)], stdout=subprocess.PIPE, text=True)
        self.reports: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.reports.append(json.loads(line))

    def acked_after(self, moment: float) -> int:
        """Bytes acknowledged between MOMENT and the connection's end."""
        later = [report["acked"] for report in self.reports if report["time"] >= moment]
        earlier = [report["acked"] for report in self.reports if report["time"] < moment]
        return (later[-1] - earlier[-1]) if later and earlier else 0

    def finish(self, wait: bool = True) -> None:
        """Wait for the connection's end (or end it now, without WAIT)."""
        try:
            if wait:
                self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.reader.join(timeout=5)


# What `ss -ti` prints before the control's name: the connection's TCP options.
SS_OPTION_WORDS = {"ts", "sack", "ecn", "ecnseen", "fastopen", "cong"}


def ss_congestion(host: str, seconds: float = 3.0) -> str:
    """The control `ss -ti` (in HOST's namespace) shows for a new connection from HOST to the
    sink: an observer's view, apart from what the socket itself says."""
    sender = LongSender(host, seconds)
    try:
        deadline = time.monotonic() + seconds
        while not sender.reports and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sender.reports, f"no connection from {host} to the sink"
        shown = subprocess.run(["ip", "netns", "exec", host, "ss", "-tinoH", "state", "established",
                                "sport", "=", f":{sender.reports[0]['port']}"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
        assert len(shown) >= 2, f"ss did not show the connection: {shown}"
        return next(token for token in shown[1].split() if ":" not in token and token not in SS_OPTION_WORDS)
    finally:
        sender.finish(wait=False)
