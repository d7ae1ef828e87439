"""`ccrollout trace` on the lab: bcc on each host finds the connections that retransmit,
names their control, and leaves no probe behind, also when it is interrupted."""

import json
import os
import signal
import subprocess
import sys
import time


from ccrollout import lab
from kernelview import retransmit_probes
from labkit import LAB_HEALTH, REPO, LongSender, assert_gone, ccrollout, roll_back_every_rollout, write_plan


SINK = "10.199.0.1"


def wait_for_no_probes(seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    while (left := retransmit_probes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_trace_finds_the_lossy_host_and_names_its_connections(fleet, journal_home):
    assert retransmit_probes() == []
    # One paced connection per host, below the bottleneck: only the loss rule makes it retransmit.
    lab.traffic_stop()
    lab.traffic_start(["lab3"])  # the sink, and traffic on a host not traced
    lab.impair("lab1", loss="5%")
    senders = [LongSender(host, seconds=10, pacing=2_500_000) for host in ("lab1", "lab2")]
    try:
        time.sleep(1)
        traced = ccrollout(journal_home, "trace", "--json", "-i", fleet, "lab1:lab2",
                           "--duration", "6s", "--interval", "2s")
    finally:
        for sender in senders:
            sender.finish()
        lab.impair("lab1", clear=True)
        lab.traffic_start()
    assert traced.returncode == 0, traced.stderr + traced.stdout
    report = json.loads(traced.stdout)
    lossy, clean = report["lab1"], report["lab2"]
    assert lossy["intervals"] == 3
    assert lossy["by_congestion"].get("reno", 0) > 100, lossy
    assert clean["retransmits"] * 10 < lossy["retransmits"], (lossy["retransmits"], clean["retransmits"])
    busiest = lossy["top"][0]
    assert (busiest["saddr"], busiest["daddr"], busiest["dport"]) == ("10.199.0.11", SINK, lab.TRAFFIC_PORT)
    assert busiest["congestion"] == senders[0].reports[0]["control"] == "reno"  # the lab hosts' default
    # Each host reports its own connections only, although the probe sees the whole kernel.
    assert all(entry["saddr"] == "10.199.0.12" for entry in clean["top"])
    assert wait_for_no_probes(2) == []


def test_an_interrupted_trace_detaches_its_probes(fleet, journal_home):
    process = subprocess.Popen(
        [sys.executable, "-m", "ccrollout.cli", "trace", "-i", fleet, "lab1:lab2", "--duration", "60s",
         "--interval", "1s"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CCROLLOUT_HOME": str(journal_home)})
    try:
        started = []
        for line in process.stdout:
            if "tracing (ready in" in line:
                started.append(line)
            if len(started) == 2:
                break
        assert len(started) == 2, process.stderr.read() if process.poll() is not None else "no start"
        assert retransmit_probes(), "the probes should be attached while tracing"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 130
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert wait_for_no_probes(5) == []


def test_a_plan_whose_health_source_is_the_tracer_is_judged_on_its_figures(fleet, journal_home, tmp_path):
    plan = write_plan(tmp_path, "ccr_broken", "fixtures/ccr_broken.bpf.c", stages=[1, "100%"], baseline="2s",
                      settle="2.5s", bake="6s", health={**LAB_HEALTH, "source": "trace"})
    applied = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
    assert applied.returncode == 1, applied.stderr + applied.stdout
    assert "lab1: retransmissions from the tracer" in applied.stderr
    (verdict,) = json.loads(applied.stdout)["verdicts"]
    # The tracer counts retransmitted packets, which may carry several segments each, so its
    # ratio is lower than tcp_info's (12.7 % in one run where tcp_info gives 23-32 %): still far above.
    assert verdict["outcome"] == "fail" and any("points above the control hosts" in r for r in verdict["reasons"])
    assert wait_for_no_probes(3) == []  # the watcher took its probe with it
    assert_gone("ccr_broken")


def test_without_bcc_the_tracer_source_falls_back_with_a_note(fleet, journal_home, tmp_path):
    bare = tmp_path / "bare"  # the host's python, without the system's site packages: no bcc
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(bare)], check=True)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(open(fleet).read().replace("ansible_python_interpreter=/usr/bin/python3",
                                                    f"ansible_python_interpreter={bare}/bin/python3"))
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", stages=["100%"], baseline="2s", settle="2.5s",
                      bake="6s", health={**LAB_HEALTH, "max_increase": "18%", "source": "trace"})
    try:
        applied = ccrollout(journal_home, "apply", "-i", str(inventory), str(plan))
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert "lab1: the tracer cannot run here (bcc does not import" in applied.stdout
        assert "retransmissions come from tcp_info" in applied.stdout
        assert "Traceback" not in applied.stdout + applied.stderr
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert_gone("ccr_reno")
