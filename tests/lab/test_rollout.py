"""The whole path through the lab: real sshd per host, real kernel, real TCP.

Every check after a change is made independently of ccrollout: the sysctl read
in the host's namespace, bpftool, the kernel's registry and the bpffs pins.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccrollout import lab
from kernelview import registered_controls, struct_ops_links
from labkit import (HOSTS, NOT_JUDGING, REPO, assert_gone, ccrollout, default_of, host_state, pin_dir,
                    roll_back_every_rollout, start_apply, struct_ops_named, write_plan)


EVENTS_SCHEMA = Path(lab.__file__).resolve().parents[1] / "schema" / "events.schema.json"


def read_events(path: Path) -> list[dict]:
    """The JSON lines of --events, each checked against the schema the README documents."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(json.loads(EVENTS_SCHEMA.read_text()))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        assert not list(validator.iter_errors(line)), line
    assert (path.stat().st_mode & 0o077) == 0  # what the fleet did is the operator's alone
    return lines


class Webhook:
    """A local HTTP server that keeps what is POSTed to it, for --notify."""

    def __init__(self):
        import http.server
        import threading
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_good_plan_promotes_every_host_and_rollback_restores_them(fleet, journal_home, tmp_path):
    before = {host: default_of(host) for host in HOSTS}
    try:
        applied = ccrollout(journal_home, "apply", "--json", "--events", str(tmp_path / "events.jsonl"),
                            "-i", fleet, "playbooks/lab-reno.yaml")
        assert applied.returncode == 0, applied.stderr + applied.stdout
        streamed = read_events(tmp_path / "events.jsonl")
        assert [e["outcome"] for e in streamed if e["event"] == "verdict"] == ["pass", "pass", "pass"]
        assert [e["stage"] for e in streamed if e["event"] == "stage_started"] == [1, 2, 3]
        assert any(e["event"] == "interval_sampled" and e["phase"] == "bake" and e["figures"] for e in streamed)
        assert streamed[-1]["event"] == "finished" and streamed[-1]["status"] == "completed"
        summary = json.loads(applied.stdout)
        assert summary["status"] == "completed"
        assert [v["outcome"] for v in summary["verdicts"]] == ["pass", "pass", "pass"]
        assert [v["hosts"] for v in summary["verdicts"]] == [["lab1"], ["lab2"], ["lab3"]]
        for host in HOSTS:
            assert summary["hosts"][host]["status"] == "changed"
            assert set(summary["hosts"][host]["phases"]) >= {"gather", "change"}
            assert default_of(host) == "ccr_reno"
        # One program for the kernel, shared by the three namespaces, pinned once.
        assert "ccr_reno" in registered_controls()
        (loaded,) = struct_ops_named("ccr_reno")
        assert (pin_dir("ccr_reno") / "link").exists()
        assert sorted(os.listdir(pin_dir("ccr_reno") / "users")) and len(os.listdir(pin_dir("ccr_reno") / "users")) == 3
        (link,) = struct_ops_links()
        assert link.get("map_id") == loaded["id"]
        # New connections take it.
        assert lab.transfer("lab2", 1.0)["congestion"] == "ccr_reno"
    finally:
        rolled = ccrollout(journal_home, "rollback", "-i", fleet)
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    for host in HOSTS:
        assert default_of(host) == before[host]
        assert "ccr_reno" not in host_state(host)["controls"]
    assert_gone("ccr_reno")
    assert lab.transfer("lab2", 0.5)["congestion"] == before["lab2"]
    (told,) = json.loads(ccrollout(journal_home, "history", "--json").stdout)
    assert told["story"].startswith("completed all 3 stages, then rolled back by hand by ")


def test_broken_plan_is_rolled_back_at_the_first_stage(fleet, journal_home, tmp_path):
    before = {host: default_of(host) for host in HOSTS}
    webhook = Webhook()
    try:
        applied = ccrollout(journal_home, "apply", "--json", "--events", str(tmp_path / "events.jsonl"),
                            "--notify", webhook.url, "-i", fleet, "playbooks/lab-broken.yaml")
    finally:
        webhook.close()
    assert applied.returncode == 1, applied.stderr + applied.stdout
    streamed = read_events(tmp_path / "events.jsonl")
    assert [e["event"] for e in streamed if e["event"] in ("verdict", "rolled_back", "finished")] == \
        ["verdict", "rolled_back", "finished"]
    # the webhook hears of the failed stage with the judge's reasons, as the stream tells it
    assert [e["event"] for e in webhook.received] == ["verdict", "rolled_back", "finished"]
    (told,) = [e for e in streamed if e["event"] == "verdict"]
    assert webhook.received[0] == told and told["outcome"] == "fail"
    assert any("above the ceiling" in reason for reason in told["reasons"])
    summary = json.loads(applied.stdout)
    assert summary["status"] == "rolled_back"
    (verdict,) = summary["verdicts"]
    assert verdict["hosts"] == ["lab1"] and verdict["outcome"] == "fail"
    assert any("above the ceiling" in reason for reason in verdict["reasons"])
    assert summary["hosts"]["lab1"]["status"] == "rolled_back"
    # history keeps the figures behind the verdict
    (recorded,) = json.loads(ccrollout(journal_home, "history", "--json").stdout)[0]["verdicts"]
    figures = recorded["figures"]["lab1"]
    assert figures["outcome"] == "fail" and figures["retransmit_ratio"] > 0.15 and figures["sent"] > 0
    assert figures["control"]["median"] < 0.05 and figures["control"]["intervals"] >= 3
    assert "stage 1: fail" in ccrollout(journal_home, "history").stdout
    assert_evidence_is_kept_and_drawn(journal_home, summary["rollout"], tmp_path / "report.png")
    for host in ("lab2", "lab3"):
        assert summary["hosts"][host]["status"] == "untouched"
        assert set(summary["hosts"][host]["phases"]) == {"gather"}
        objects = lab.lab_dir() / "hosts" / host / "objects"
        assert not any(objects.glob("*.bpf.o")) or "ccr_broken" not in host_state(host)["controls"]
    for host in HOSTS:
        assert default_of(host) == before[host]
        assert host_state(host)["controls"] == {}
    assert_gone("ccr_broken")


def assert_evidence_is_kept_and_drawn(journal_home: Path, rollout_id: str, png: Path) -> None:
    """Every interval of the stage is in the journal, per host with its role, and the report
    draws them; history tells how the rollout ended."""
    from ccrollout.journal import Access, Journal
    journal = Journal(journal_home / "journal.sqlite", Access.READ)
    try:
        intervals = [event["data"] for event in journal.events(rollout_id, ("interval",))]
    finally:
        journal.close()
    for phase in ("baseline", "bake"):
        recorded = [data for data in intervals if data["phase"] == phase]
        assert [data["index"] for data in recorded] == list(range(1, len(recorded) + 1)) and recorded
        for data in recorded:
            assert data["hosts"]["lab1"]["role"] == "canary"
            assert {data["hosts"][host]["role"] for host in data["hosts"] if host != "lab1"} <= {"control"}
    assert sum(data["hosts"]["lab1"]["sent"] for data in intervals if data["phase"] == "bake") > 0
    drawn = ccrollout(journal_home, "report", "-o", str(png), rollout_id)
    assert drawn.returncode == 0 and drawn.stdout.strip() == str(png), drawn.stderr
    assert png.read_bytes().startswith(b"\x89PNG")
    (told,) = json.loads(ccrollout(journal_home, "history", "--json").stdout)
    assert told["story"] == "failed the canary of stage 1 (fail) and was rolled back"


def test_verifier_rejection_is_reported_and_changes_nothing(fleet, journal_home, tmp_path):
    before = {host: default_of(host) for host in HOSTS}
    plan = write_plan(tmp_path, "ccr_rejected", "fixtures/ccr_rejected.bpf.c")
    applied = ccrollout(journal_home, "apply", "-i", fleet, str(plan))
    assert applied.returncode == 5, applied.stderr + applied.stdout
    assert "the kernel refused to load ccr_rejected" in applied.stdout
    assert "no write support to tcp_sock" in applied.stdout  # the verifier's own words
    assert "Traceback" not in applied.stdout + applied.stderr
    for host in HOSTS:
        assert default_of(host) == before[host]
        assert host_state(host)["controls"] == {}
    assert_gone("ccr_rejected")


@pytest.mark.parametrize("mutation, message", [
    (lambda text: text.replace("bake: 8s", "bake: [8s"), "YAML syntax error"),
    (lambda text: text.replace("hosts: lab ", "hosts: labz "), "did you mean group 'lab'"),
])
def test_invalid_plan_is_one_clear_message_and_touches_no_host(fleet, journal_home, mutation, message):
    before = {host: (default_of(host), host_state(host)) for host in HOSTS}
    plan = REPO / "playbooks" / ".test-invalid.yaml"
    plan.write_text(mutation((REPO / "playbooks" / "lab-reno.yaml").read_text()))
    try:
        applied = ccrollout(journal_home, "apply", "-i", fleet, str(plan))
    finally:
        plan.unlink()
    assert applied.returncode == 3
    assert message in applied.stderr and ".test-invalid.yaml:" in applied.stderr
    assert "Traceback" not in applied.stderr
    assert {host: (default_of(host), host_state(host)) for host in HOSTS} == before
    assert not (journal_home / "journal.sqlite").exists() or "rollout" not in applied.stdout


def test_unreachable_host_stops_before_any_change_with_preflight_all(fleet, journal_home, tmp_path):
    inventory = tmp_path / "inventory.ini"
    text = Path(fleet).read_text().replace("ansible_host=10.199.0.13", "ansible_host=10.199.0.99")
    inventory.write_text(text)
    before = {host: default_of(host) for host in HOSTS}
    applied = ccrollout(journal_home, "apply", "--preflight", "all", "-i", str(inventory), "playbooks/lab-reno.yaml")
    assert applied.returncode == 5, applied.stderr + applied.stdout
    assert "nothing was changed" in applied.stderr and "lab3" in applied.stderr
    assert {host: default_of(host) for host in HOSTS} == before
    assert "ccr_reno" not in registered_controls()
    # Stage by stage (the default), lab3 is found unreachable when its stage begins: it was
    # only left out of the controls before, and the stages before it are rolled back.
    applied = ccrollout(journal_home, "apply", "--json", "-i", str(inventory), "playbooks/lab-reno.yaml")
    assert applied.returncode == 5, applied.stderr + applied.stdout
    summary = json.loads(applied.stdout)
    assert summary["status"] == "rolled_back" and "stage 3 cannot begin" in summary["message"]
    assert "left out of the controls (unreachable): lab3" in applied.stderr
    assert [verdict["outcome"] for verdict in summary["verdicts"]] == ["pass", "pass"]
    assert {host: default_of(host) for host in HOSTS} == before
    assert_gone("ccr_reno")


def test_without_traffic_a_canary_does_not_pass(fleet, journal_home, tmp_path):
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", baseline="1s", settle="0s", bake="3s",
                      interval="1s")
    lab.traffic_stop()
    try:
        applied = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
    finally:
        lab.traffic_start()
    assert applied.returncode == 1, applied.stderr + applied.stdout
    (verdict,) = json.loads(applied.stdout)["verdicts"]
    assert verdict["outcome"] == "inconclusive"
    assert any("too little traffic to judge" in reason for reason in verdict["reasons"])
    assert default_of("lab1") == "reno"
    assert_gone("ccr_reno")


def test_unknown_host_key_is_refused_before_any_change(fleet, journal_home, tmp_path):
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(Path(fleet).read_text().replace(
        str(lab.lab_dir() / "known_hosts"), str(empty_known_hosts)))
    assert str(empty_known_hosts) in inventory.read_text()
    before = {host: default_of(host) for host in HOSTS}
    # HOME points elsewhere too, so no known_hosts of the machine's own can vouch for the lab.
    applied = subprocess.run([sys.executable, "-m", "ccrollout.cli", "apply", "-i", str(inventory),
                              "playbooks/lab-reno.yaml"], capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "CCROLLOUT_HOME": str(journal_home), "HOME": str(tmp_path)})
    assert applied.returncode == 5, applied.stderr + applied.stdout
    assert "not in known_hosts (refusing to connect)" in applied.stderr
    assert {host: default_of(host) for host in HOSTS} == before
    assert "ccr_reno" not in registered_controls()


def route_of(host: str, prefix: str) -> str:
    return subprocess.run(["ip", "netns", "exec", host, "ip", "-4", "route", "show", "exact", prefix],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_route_scope_changes_only_the_routes_and_rollback_restores_them(fleet, journal_home, tmp_path):
    connected, added = "10.199.0.0/24", "10.199.0.254/32"
    before = {host: (default_of(host), route_of(host, connected), route_of(host, added)) for host in HOSTS}
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", stages=["100%"],
                      scope={"default": False, "routes": [connected, added]}, health=NOT_JUDGING)
    try:
        applied = ccrollout(journal_home, "apply", "-i", fleet, str(plan))
        assert applied.returncode == 0, applied.stderr + applied.stdout
        for host in HOSTS:
            assert default_of(host) == before[host][0]  # the namespace default is left alone
            assert "congctl ccr_reno" in route_of(host, connected)
            assert route_of(host, connected).replace(" congctl ccr_reno", "") == before[host][1]
            assert "congctl ccr_reno" in route_of(host, added)
        # A new connection to the sink follows its route's control, not the default.
        assert lab.transfer("lab1", 0.5)["congestion"] == "ccr_reno"
    finally:
        rolled = ccrollout(journal_home, "rollback", "-i", fleet)
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    for host in HOSTS:
        assert (default_of(host), route_of(host, connected), route_of(host, added)) == before[host]
    assert_gone("ccr_reno")


def test_applying_the_same_plan_twice_changes_nothing_the_second_time(fleet, journal_home, tmp_path):
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c")
    try:
        first = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
        assert first.returncode == 0, first.stderr + first.stdout
        links_before = struct_ops_links()
        checked = ccrollout(journal_home, "apply", "--check", "-i", fleet, str(plan))
        assert checked.returncode == 0 and "0 of 3 hosts would change" in checked.stdout, checked.stdout
        second = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
        assert second.returncode == 0, second.stderr + second.stdout
        summary = json.loads(second.stdout)
        assert {report["status"] for report in summary["hosts"].values()} == {"ok"}
        assert {verdict["outcome"] for verdict in summary["verdicts"]} == {"unchanged"}
        assert struct_ops_links() == links_before  # the same link: nothing was reloaded
        assert all(default_of(host) == "ccr_reno" for host in HOSTS)
        # Undoing the second rollout has nothing to undo; the first one is still in place.
        undo_second = ccrollout(journal_home, "rollback", "-i", fleet, summary["rollout"])
        assert undo_second.returncode == 0 and "no change left to undo" in undo_second.stdout
        assert all(default_of(host) == "ccr_reno" for host in HOSTS)
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert all(default_of(host) == "reno" for host in HOSTS)
    assert_gone("ccr_reno")


def bpf_view() -> tuple:
    """What an observer outside ccrollout sees: controls, links, maps, every host's default."""
    result = subprocess.run(["bpftool", "-j", "struct_ops", "show"], capture_output=True, text=True, check=True)
    return (sorted(registered_controls()), struct_ops_links(), json.loads(result.stdout or "[]"),
            {host: default_of(host) for host in HOSTS})


def test_check_mode_says_what_would_change_and_changes_nothing(fleet, journal_home):
    before = bpf_view()
    checked = ccrollout(journal_home, "apply", "--check", "--diff", "-i", fleet, "playbooks/lab-reno.yaml")
    assert checked.returncode == 0, checked.stderr + checked.stdout
    for host in HOSTS:
        assert f"{host}: would change" in checked.stdout
    assert "default: reno -> ccr_reno" in checked.stdout
    assert "load ccr_reno" in checked.stdout
    assert "nothing was changed" in checked.stdout
    assert bpf_view() == before
    history = ccrollout(journal_home, "history", "--json")
    assert json.loads(history.stdout or "[]") == []


def test_status_sees_a_lost_pin_and_the_next_apply_repairs_it(fleet, journal_home, tmp_path):
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", stages=["100%"])
    try:
        applied = ccrollout(journal_home, "apply", "-i", fleet, str(plan))
        assert applied.returncode == 0, applied.stderr + applied.stdout
        status = ccrollout(journal_home, "status", "--json", "-i", fleet)
        assert status.returncode == 0, status.stdout
        assert {host["state"] for host in json.loads(status.stdout).values()} == {"in step"}
        # What a reboot does to bpffs: the pin goes, and with it the registration.
        (pin_dir("ccr_reno") / "link").unlink()
        deadline = time.monotonic() + 5  # the kernel unregisters it a moment after the last reference
        while "ccr_reno" in registered_controls() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "ccr_reno" not in registered_controls()
        drifted = ccrollout(journal_home, "status", "--json", "-i", fleet)
        assert drifted.returncode == 6, drifted.stdout
        report = json.loads(drifted.stdout)
        assert {host["state"] for host in report.values()} == {"drifted"}
        assert any("pin is gone" in reason for reason in report["lab1"]["reasons"])
        repaired = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
        assert repaired.returncode == 0, repaired.stderr + repaired.stdout
        # Every host chose the reloaded control again, so none of them is "ok" (unchanged).
        assert {r["status"] for r in json.loads(repaired.stdout)["hosts"].values()} == {"changed"}
        assert "ccr_reno" in registered_controls() and (pin_dir("ccr_reno") / "link").exists()
        assert ccrollout(journal_home, "status", "-i", fleet).returncode == 0
        assert lab.transfer("lab2", 0.5)["congestion"] == "ccr_reno"
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert all(default_of(host) == "reno" for host in HOSTS)
    assert_gone("ccr_reno")


@pytest.mark.parametrize("journal, refusal", [
    ("the same", ["another rollout holds these hosts; nothing was changed", "lab2: held by rollout", "runs as pid"]),
    # A controller with a journal of its own is kept out by the hosts' own claims.
    ("another", ["another controller holds these hosts; nothing was changed", "lab2: locked by rollout"]),
])
def test_a_second_apply_on_the_same_hosts_is_refused_while_one_runs(fleet, journal_home, tmp_path, journal, refusal):
    plan = write_plan(tmp_path, "ccr_reno", "ccr_reno.bpf.c", stages=["100%"], baseline="2s", bake="6s")
    second_home = journal_home if journal == "the same" else tmp_path / "elsewhere"
    first = start_apply(journal_home, fleet, plan)
    try:
        for line in first.stdout:
            if line.startswith("stage 1/1"):
                break
        second = ccrollout(second_home, "apply", "-i", fleet, "--limit", "lab2", str(plan))
        assert second.returncode == 6, second.stderr + second.stdout
        assert all(text in second.stderr for text in refusal), second.stderr
        if journal == "another":
            assert json.loads(ccrollout(second_home, "history", "--json").stdout)[0]["status"] == "refused"
        assert first.wait(timeout=120) == 0
        assert all("lock" not in host_state(host) for host in HOSTS)  # the hosts' claims are released
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        roll_back_every_rollout(journal_home, fleet)
    assert all(default_of(host) == "reno" for host in HOSTS)
    assert_gone("ccr_reno")
