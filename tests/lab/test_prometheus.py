"""Stages judged from the lab's Prometheus (health.source: prometheus): node_exporter in each
host's namespace, one Prometheus scraping them every second. Reno passes, the broken control
fails without the control hosts ever being reached over SSH, and a Prometheus that does not
answer, or has no series for a host, makes a stage inconclusive, never a pass."""

import json
import subprocess
import time
import urllib.parse
import urllib.request

from labkit import HOSTS, assert_gone, ccrollout, default_of, roll_back_every_rollout, write_plan

from ccrollout import lab
from ccrollout.metrics import promql

PROMETHEUS = {"url": lab.PROMETHEUS_URL}
SCRAPE_WAIT_SECONDS = 30
JUDGED = {"min_segments": 300, "max_retransmit_ratio": "15%", "max_increase": "10%", "source": "prometheus"}


def instant(query: str) -> list:
    url = f"{lab.PROMETHEUS_URL}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]["result"]


def apply(journal_home, fleet, plan) -> dict:
    applied = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
    assert "Traceback" not in applied.stdout + applied.stderr
    summary = json.loads(applied.stdout)
    summary["returncode"] = applied.returncode
    return summary


def namespace_out_segs(host: str) -> int:
    """TcpOutSegs as the host's own namespace counts it (/proc/net/snmp)."""
    snmp = subprocess.run(["ip", "netns", "exec", host, "cat", "/proc/net/snmp"], capture_output=True,
                          text=True, check=True).stdout
    names, values = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Tcp:")]
    return int(values[names.index("OutSegs")])


def scraped_after(series: str, moment: float) -> float:
    """The first value of SERIES that Prometheus scraped after MOMENT. A range selector gives
    the samples with their own times (an instant vector carries the query's time instead);
    Prometheus scrapes every second, the bound only keeps a broken lab from hanging the test."""
    deadline = time.monotonic() + SCRAPE_WAIT_SECONDS
    while time.monotonic() < deadline:
        for result in instant(f"{series}[10s]"):
            later = [float(value) for stamp, value in result["values"] if float(stamp) > moment]
            if later:
                return later[0]
        time.sleep(0.2)
    raise AssertionError(f"no scrape of {series} after {moment} within {SCRAPE_WAIT_SECONDS}s")


def test_each_hosts_node_exporter_reports_its_own_namespace(fleet):
    status = lab.status()
    assert status["prometheus"]["running"] and status["prometheus"]["targets_up"] == len(HOSTS)
    assert all(status["hosts"][host]["node_exporter_pid"] for host in HOSTS)
    for host in HOSTS:
        before, moment = namespace_out_segs(host), time.time()
        scraped = scraped_after(f'node_netstat_Tcp_OutSegs{{lab_host="{host}"}}', moment)
        # Read between two readings of that namespace's own counter: its, and no other's.
        assert before <= scraped <= namespace_out_segs(host)


def test_prometheus_reads_escaped_values_as_their_text(fleet):
    # The escaping of template values is PromQL's own: lab1 written all in escapes finds lab1,
    # and a name that tries to close the string finds nothing instead of running its query.
    spelled = "".join(f"\\u{ord(char):04x}" for char in "lab1")
    assert [s["metric"]["lab_host"] for s in instant(f'node_netstat_Tcp_OutSegs{{lab_host="{spelled}"}}')] == ["lab1"]
    hostile = promql.escape('lab1"} or vector(1) or up{x="')
    assert instant(f'node_netstat_Tcp_OutSegs{{lab_host="{hostile}"}}') == []


def test_reno_passes_judged_from_prometheus(fleet, journal_home):
    summary = apply(journal_home, fleet, "playbooks/lab-reno-prometheus.yaml")
    try:
        assert summary["returncode"] == 0, summary
        assert [v["outcome"] for v in summary["verdicts"]] == ["pass"] * len(HOSTS)
        first = summary["verdicts"][0]
        assert first["source"] == "prometheus" and first["figures"]["lab1"]["sent"] > 300
        assert first["figures"]["lab1"]["control"]["intervals"] >= 3
        assert all(default_of(host) == "ccr_reno" for host in HOSTS)
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert_gone("ccr_reno")


def test_the_broken_control_fails_and_the_controls_are_never_reached(fleet, journal_home, tmp_path):
    before = {host: default_of(host) for host in HOSTS}
    plan = write_plan(tmp_path, "ccr_broken", "fixtures/ccr_broken.bpf.c", baseline="4s",
                      health={**JUDGED, "prometheus": PROMETHEUS})
    summary = apply(journal_home, fleet, plan)
    try:
        assert summary["returncode"] == 1, summary
        assert summary["status"] == "rolled_back"
        (verdict,) = summary["verdicts"]
        assert verdict["hosts"] == ["lab1"] and verdict["outcome"] == "fail"
        assert any("above the ceiling" in reason for reason in verdict["reasons"]), verdict["reasons"]
        assert verdict["figures"]["lab1"]["control"]["median"] < 0.05
        for host in verdict["controls"]:
            assert summary["hosts"][host]["phases"] == {}   # read from Prometheus, not over SSH
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert {host: default_of(host) for host in HOSTS} == before
    assert_gone("ccr_broken")


def _short_stage(tmp_path, prometheus: dict):
    # on_inconclusive: pass, so only the source's own rule keeps missing figures from passing.
    return write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", stages=[1, "100%"], baseline="2s", bake="4s",
                      health={**JUDGED, "on_inconclusive": "pass", "min_intervals": 2, "prometheus": prometheus})


def test_a_prometheus_that_does_not_answer_is_inconclusive(fleet, journal_home, tmp_path):
    summary = apply(journal_home, fleet, _short_stage(tmp_path, {"url": "http://127.0.0.1:9"}))
    try:
        assert summary["returncode"] == 1 and summary["status"] == "rolled_back", summary
        (verdict,) = summary["verdicts"]
        assert verdict["outcome"] == "inconclusive"
        assert verdict["reasons"][0].startswith("lab1: inconclusive: Prometheus at http://127.0.0.1:9 did not answer")
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert_gone("ccr_reno")


def test_no_series_for_a_host_is_inconclusive(fleet, journal_home, tmp_path):
    summary = apply(journal_home, fleet, _short_stage(tmp_path, {**PROMETHEUS, "instance": "{{host}}:9100"}))
    try:
        assert summary["returncode"] == 1 and summary["status"] == "rolled_back", summary
        (verdict,) = summary["verdicts"]
        assert verdict["outcome"] == "inconclusive"
        assert verdict["reasons"][0] == ('lab1: inconclusive: Prometheus has no series for '
                                         'node_netstat_Tcp_OutSegs{instance="lab1:9100"}')
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert_gone("ccr_reno")
