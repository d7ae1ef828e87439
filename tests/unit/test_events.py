"""Events of a rollout on the simulated fleet: their schema, the plain view's pace, the recap,
webhooks delivered to a real local HTTP server, and on_inconclusive: pause."""

import dataclasses
import http.server
import json
import threading
from pathlib import Path

import jsonschema
import pytest

from ccrollout import events
from ccrollout.cli.recap import recap_lines
from ccrollout.cli.render_plain import PlainView
from ccrollout.journal import Journal
from ccrollout.notify import Notifier
from ccrollout.rollout.judge import Limits
from ccrollout.rollout.reports import HostReport, Result
from ccrollout.rollout.runner import Runner
from ccrollout.simulation import SimulatedFleet
from ccrollout.status import HostStatus, RolloutStatus
from test_runner import built, inventory_hosts, rollout_of  # noqa: F401 (built is a fixture)

SCHEMA = json.loads((Path(events.__file__).parent / "schema" / "events.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def run(tmp_path, ratio: float, subscribers, rollout=None, hosts=4):
    names = inventory_hosts(hosts)
    fleet = SimulatedFleet([h.name for h in names], ratios={"reno": 0.01, "ccr_sim": ratio})
    journal = Journal(tmp_path / "journal.sqlite")
    bus = events.Bus(subscribers)
    with Runner(names, journal, forks=4, bus=bus, connect=fleet.connect) as runner:
        return runner.apply("plan.yaml", rollout or rollout_of(stages=(1, "100%"))), fleet, journal


def test_schema_and_event_classes_name_the_same_fields():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(SCHEMA["$defs"]) == set(events.EVENT_KINDS)
    for kind, cls in events.EVENT_KINDS.items():
        fields = {field.name for field in dataclasses.fields(cls)} | {"event", "version"}
        assert set(SCHEMA["$defs"][kind]["properties"]) == fields, kind


@pytest.mark.parametrize("ratio, status", [(0.012, RolloutStatus.COMPLETED), (0.5, RolloutStatus.ROLLED_BACK)])
def test_a_rollout_tells_its_steps_as_events_that_match_the_schema(tmp_path, built, ratio, status):
    seen = []
    result, _, _ = run(tmp_path, ratio, [seen.append])
    assert result.status == status
    for event in seen:
        document = json.loads(json.dumps(event.as_dict()))
        assert not list(VALIDATOR.iter_errors(document)), document
    kinds = [event.kind for event in seen]
    assert kinds[:3] == ["rollout_started", "stage_started", "phase_started"]  # the build is a stand-in here
    assert kinds[-1] == "finished" and seen[-1].status == status
    assert all(event.rollout == result.rollout_id for event in seen)
    bake = [e for e in seen if isinstance(e, events.IntervalSampled) and e.phase == "bake" and e.stage == 1]
    assert [e.index for e in bake] == list(range(1, len(bake) + 1)) and bake[0].figures
    verdicts = [e for e in seen if isinstance(e, events.StageVerdict)]
    if status == RolloutStatus.ROLLED_BACK:
        assert verdicts[0].outcome == "fail" and any("above the ceiling" in r for r in verdicts[0].reasons)
        assert [e.host for e in seen if isinstance(e, events.HostRolledBack) and e.ok] == verdicts[0].hosts
    else:
        assert [v.outcome for v in verdicts] == ["pass", "pass"]


def interval(index: float, when: float) -> events.IntervalSampled:
    return events.IntervalSampled(rollout="r", stage=1, time=when, phase="bake", index=int(index), intervals=1800,
                                  elapsed=float(index), seconds=1800.0, figures={"h1": {"sent": 100, "retransmitted": 1}},
                                  outcome="pass", needed=3)


def test_the_plain_view_summarises_a_long_bake_instead_of_a_line_per_interval(capsys):
    import sys
    view = PlainView(sys.stdout)
    view(events.PhaseStarted(rollout="r", stage=1, time=1000.0, phase="bake", seconds=1800.0, intervals=1800))
    for index in range(1, 1801):  # a 30-minute bake at 1 s intervals
        view(interval(index, 1000.0 + index))
    lines = capsys.readouterr().out.splitlines()
    assert 55 <= len(lines) <= 62, len(lines)
    assert lines[1].strip() == "bake: 30s of 30m00s, 29m30s left; passing so far; h1 1.00%"


def test_the_judge_so_far_in_words():
    from ccrollout.cli.eventtext import judge_words
    early = dataclasses.replace(interval(2, 0), outcome="inconclusive", reasons=["h1: too few intervals"], needed=4)
    assert judge_words(early) == "collecting 2 of 4 intervals"
    assert judge_words(dataclasses.replace(early, index=5)) == "not decided yet: h1: too few intervals"


def test_the_recap_counts_each_host_with_columns_as_wide_as_the_names():
    reports = {"a-very-long-host-name.example.org": HostReport("x", HostStatus.ROLLED_BACK),
               "db1": HostReport("db1", HostStatus.OK), "db2": HostReport("db2", HostStatus.UNREACHABLE)}
    lines = recap_lines(Result("r", "rolled_back", 1, "stage 1 did not pass", reports))
    table = lines[3:7]
    assert table[0].startswith("a-very-long-host-name.example.org : ok=0 ")
    assert table[1].startswith("db1" + " " * 30 + " : ok=1 ")
    assert "changed=1" in table[0] and "rolled_back=1" in table[0] and "unreachable=1" in table[2]
    assert table[3].startswith("total") and "ok=1" in table[3] and "changed=1" in table[3]
    assert len({line.index(":") for line in table}) == 1


class Hook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook/secret-token", Hook.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_webhook_receives_the_failed_stage_with_the_judges_reasons(tmp_path, built, webhook):
    url, received = webhook
    warnings = []
    notifier = Notifier([url, "http://127.0.0.1:9/nobody-listens"], warn=warnings.append, timeout=2)
    result, _, _ = run(tmp_path, 0.5, [notifier])
    notifier.close()
    assert result.status == RolloutStatus.ROLLED_BACK
    kinds = [document["event"] for document in received]
    assert kinds == ["verdict", "rolled_back", "finished"]
    verdict = received[0]
    assert verdict["outcome"] == "fail" and verdict["stage"] == 1 and verdict["rollout"] == result.rollout_id
    assert any("above the ceiling" in reason for reason in verdict["reasons"])
    assert not list(VALIDATOR.iter_errors(verdict))
    # the dead webhook is warned about once per event, without its path, and stopped nothing
    assert len(warnings) == 3 and all("http://127.0.0.1:9:" in w and "nobody" not in w for w in warnings)


def test_a_webhook_that_never_answers_is_given_up_on_at_the_end():
    import time
    release = threading.Event()
    warnings = []
    notifier = Notifier(["http://example.invalid/"], warn=warnings.append,
                        post=lambda url, document, timeout: release.wait())
    for _ in range(3):
        notifier(events.Finished(rollout="r", status="completed", exit_code=0, message="", hosts={}, time=time.time()))
    notifier.close(flush_seconds=0.2)
    release.set()
    assert warnings and "not delivered" in warnings[-1]


@pytest.mark.parametrize("decision, status", [("promote", RolloutStatus.COMPLETED), ("abort", RolloutStatus.ABORTED)])
def test_an_inconclusive_stage_pauses_for_an_operator_when_the_plan_says_so(tmp_path, built, decision, status):
    limits = Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=10 ** 9, on_inconclusive="pause")
    seen = []
    journal_path = tmp_path / "journal.sqlite"

    def operator(event):  # what `ccrollout promote|abort` writes, as soon as the rollout pauses
        seen.append(event)
        if isinstance(event, events.Paused):
            Journal(journal_path).event(event.rollout, None, decision, {"by": "tester"})

    result, fleet, journal = run(tmp_path, 0.012, [operator], rollout_of(stages=(1, "100%"), limits=limits))
    assert result.status == status, result.message
    paused = [e for e in seen if isinstance(e, events.Paused)]
    assert paused[0].reason == "inconclusive" and paused[0].stage == 1
    assert [e.decision for e in seen if isinstance(e, events.Decided)][0] == decision
    assert [r["outcome"] for r in result.verdicts][0] == "inconclusive"
    journaled = [e for e in journal.events(result.rollout_id) if e["kind"] == "paused"]
    assert journaled[0]["data"] == {"reason": "inconclusive"}
    if decision == "abort":
        assert all(host.default == "reno" for host in fleet.hosts.values())
    else:
        assert len(paused) == 2  # the last stage is inconclusive too, and waits as well
        assert all(host.default == "ccr_sim" for host in fleet.hosts.values())


def test_an_inconclusive_stage_still_fails_without_pause(tmp_path, built):
    limits = Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=10 ** 9)
    seen = []
    result, _, _ = run(tmp_path, 0.012, [seen.append], rollout_of(stages=(1, "100%"), limits=limits))
    assert result.status == RolloutStatus.ROLLED_BACK
    assert not [e for e in seen if isinstance(e, events.Paused)]


def test_events_and_webhook_options_are_checked_before_anything_runs(tmp_path):
    import argparse

    from ccrollout.cli.common import command_output
    from ccrollout.errors import UserError
    args = argparse.Namespace(json=True, events=None, notify=["file:///etc/passwd"])
    with pytest.raises(UserError, match="not an http or https URL") as raised:
        with command_output(args):
            pass
    assert raised.value.exit_code == 2
    with pytest.raises(UserError, match="both write to standard output"):
        with command_output(argparse.Namespace(json=True, events="-", notify=None)):
            pass
    args = argparse.Namespace(json=True, events=str(tmp_path / "missing" / "events.jsonl"), notify=None)
    with pytest.raises(UserError, match="--events .*cannot write it") as raised:
        with command_output(args):
            pass
    assert raised.value.exit_code == 3


def test_the_events_file_is_the_owners_alone(tmp_path):
    import argparse

    from ccrollout.cli.common import command_output
    path = tmp_path / "events.jsonl"
    with command_output(argparse.Namespace(json=True, events=str(path), notify=None)) as bus:
        bus.emit(events.Note(text="hello"))
    assert path.stat().st_mode & 0o777 == 0o600
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["text"] == "hello" and not list(VALIDATOR.iter_errors(json.loads(line)))


def test_a_resumed_rollout_says_so(tmp_path, built, monkeypatch):
    class Died(Exception):
        pass

    def die_after_change(name):
        if name == "after-change":
            raise Died(name)

    names = inventory_hosts(3)
    fleet = SimulatedFleet([h.name for h in names])
    journal = Journal(tmp_path / "journal.sqlite")
    with monkeypatch.context() as patched:
        patched.setattr(Runner, "crash_point", staticmethod(die_after_change))
        with Runner(names, journal, forks=4, connect=fleet.connect) as runner, pytest.raises(Died):
            runner.apply("plan.yaml", rollout_of(stages=(1, "100%")))
    (rollout_id,) = [r["id"] for r in journal.rollouts()]
    seen = []
    with Runner(names, journal, forks=4, bus=events.Bus([seen.append]), connect=fleet.connect) as runner:
        result = runner.resume(rollout_id, rollout_of(stages=(1, "100%")))
    assert result.status == RolloutStatus.COMPLETED, result.message
    assert seen[0].kind == "rollout_started" and seen[0].resumed_after == 0 and seen[0].rollout == rollout_id
    assert [e.stage for e in seen if isinstance(e, events.StageVerdict)] == [1, 2]


def test_webhooks_of_the_plan_the_config_and_the_command_line_are_all_told_once():
    import argparse

    from ccrollout.cli.common import command_output
    from ccrollout.config import Config
    configured = Config(notify=("http://127.0.0.1:1/config", "http://127.0.0.1:1/both"))
    args = argparse.Namespace(json=True, events=None, notify=["http://127.0.0.1:1/cli"], config=configured)
    with command_output(args, ("http://127.0.0.1:1/plan", "http://127.0.0.1:1/both")) as bus:
        (notifier,) = [s for s in bus.subscribers if isinstance(s, Notifier)]
        urls = notifier.urls
    assert urls == ["http://127.0.0.1:1/plan", "http://127.0.0.1:1/both", "http://127.0.0.1:1/config",
                    "http://127.0.0.1:1/cli"]


def test_an_interval_event_carries_goodput_and_rtt_figures_where_the_source_gives_them():
    from ccrollout.rollout.canary import interval_figures
    from ccrollout.rollout.judge import Window
    shown = interval_figures({"a": Window(100, 1, bytes_acked=144800, seconds=2.0, connections=3, srtt_ms=3.14159),
                              "b": Window(10, 0)})
    assert shown == {"a": {"sent": 100, "retransmitted": 1, "bytes_acked": 144800, "seconds": 2.0,
                           "connections": 3, "srtt_ms": 3.142},
                     "b": {"sent": 10, "retransmitted": 0}}
    event = events.IntervalSampled(phase="bake", index=1, intervals=4, elapsed=2.0, seconds=8.0, figures=shown,
                                   unreachable=[], outcome="inconclusive", reasons=[], needed=3)
    stamped = dataclasses.replace(event, rollout="r1", stage=1, time=1.0)
    assert not list(VALIDATOR.iter_errors(stamped.as_dict()))
