"""The Prometheus source without a Prometheus: templates and their escaping, the plan's
checks, reading the HTTP API's answers (canned, from a local HTTP server too), and what
missing figures make of a stage."""

import http.server
import json
import re
import textwrap
import threading
import urllib.parse
from pathlib import Path

import pytest
import requests
from hypothesis import given, strategies as st
from prometheus_api_client import PrometheusApiClientException

from ccrollout.errors import InvalidInput
from ccrollout.metrics import promql
from ccrollout.metrics.prometheus import NoSeries, PrometheusSampler, value_of
from ccrollout.plan import load_plan
from ccrollout.rollout import canary, judge
from ccrollout.schedule import Schedule

REPO = Path(__file__).resolve().parents[2]
SOURCE = promql.PrometheusSource("http://127.0.0.1:9090")


def vector(value, stamp=1700000000.5, **labels):
    return [{"metric": labels, "value": [stamp, str(value)]}]


# -- templates ---------------------------------------------------------------------------------


def test_the_built_in_queries_read_node_exporters_counters_of_the_host():
    assert SOURCE.query("sent", "lab1", "10.199.0.11") == 'node_netstat_Tcp_OutSegs{instance="10.199.0.11:9100"}'
    assert SOURCE.query("retransmitted", "lab1", "10.199.0.11") == \
        'node_netstat_Tcp_RetransSegs{instance="10.199.0.11:9100"}'
    assert not SOURCE.per_window("sent")


def test_an_operator_query_gets_the_host_and_the_window():
    source = promql.PrometheusSource.from_plan({
        "url": "http://prom:9090/", "instance": "{{host}}.example:9100",
        "queries": {"retransmitted": 'increase(tcp_retrans{host="{{ host }}", i="{{instance}}"}[{{window}}])'}})
    assert source.url == "http://prom:9090"
    assert source.query("retransmitted", "web-1", "10.0.0.1", 2.0) == \
        'increase(tcp_retrans{host="web-1", i="web-1.example:9100"}[2000ms])'
    assert source.per_window("retransmitted") and not source.per_window("sent")


HOSTILE = ['a"} or vector(1) or {x="', "a'} or vector(1)", "a\\", "a\nb", "a`b", "lab{1}", "läb 1", "a\U0001F600"]


def _unescape(text: str) -> str:
    return re.sub(r"\\u([0-9a-f]{4})|\\U([0-9a-f]{8})", lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


@pytest.mark.parametrize("name", HOSTILE)
def test_a_host_name_never_leaves_the_string_it_stands_in(name):
    query = SOURCE.query("sent", name, name)
    inside = query[len('node_netstat_Tcp_OutSegs{instance="'):-len('"}')]
    assert query.startswith('node_netstat_Tcp_OutSegs{instance="') and query.endswith('"}')
    assert re.fullmatch(r"[A-Za-z0-9._:@/\\-]*", inside)   # no quote, brace, space or newline
    assert _unescape(inside) == f"{name}:9100"


@given(st.text())
def test_escaped_values_hold_only_plain_characters_and_decode_back(text):
    escaped = promql.escape(text)
    assert re.fullmatch(r"(?:[A-Za-z0-9._:@/-]|\\u[0-9a-f]{4}|\\U[0-9a-f]{8})*", escaped)
    assert _unescape(escaped) == text


# -- the plan ---------------------------------------------------------------------------------------

PLAN = """
algorithms:
  - name: ccr_reno
    source: ../bpf/ccr_reno.bpf.c
rollouts:
  - name: reno
    algorithm: ccr_reno
    hosts: lab
    stages: [1]
    bake: 8s
    interval: 2s
    health:
{health}
"""


def plan_with(tmp_path, health: str) -> Path:
    (tmp_path / "bpf").mkdir(exist_ok=True)
    (tmp_path / "bpf" / "ccr_reno.bpf.c").write_text("/* reno */\n")
    (tmp_path / "plans").mkdir(exist_ok=True)
    path = tmp_path / "plans" / "plan.yaml"
    path.write_text(textwrap.dedent(PLAN).lstrip().format(health=textwrap.indent(textwrap.dedent(health), " " * 6)))
    return path


def test_a_plan_names_its_prometheus(tmp_path):
    (rollout,) = load_plan(plan_with(tmp_path, """
        source: prometheus
        prometheus:
          url: https://prom.example/prometheus
          queries:
            bytes_acked: 'sum(increase(acked{instance="{{instance}}"}[{{window}}]))'
        """)).rollouts
    assert rollout.health_source == "prometheus"
    assert rollout.prometheus.url == "https://prom.example/prometheus"
    assert rollout.prometheus.instance == promql.DEFAULT_INSTANCE
    assert set(rollout.prometheus.queries) == {"sent", "retransmitted", "bytes_acked"}


def test_other_sources_have_no_prometheus(tmp_path):
    (rollout,) = load_plan(plan_with(tmp_path, "source: sockets")).rollouts
    assert rollout.prometheus is None


@pytest.mark.parametrize("health, expected", [
    ("source: prometheus", r"plan.yaml:\d+:\d+: rollouts\[0\].health.source: source: prometheus needs health.prometheus"),
    ("source: prometheus\nprometheus: {url: 'ftp://prom:9090'}", r"plan.yaml:\d+:\d+: .*prometheus.url.*http"),
    ("source: prometheus\nprometheus: {url: 'http://user:secret@prom:9090'}", r"must not hold a user or password"),
    ("source: prometheus\nprometheus: {url: 'http://prom', instance: '{{hostname}}:9100'}",
     r"prometheus.instance: unknown template value \{\{hostname\}\}; known: \{\{host\}\}, \{\{address\}\}"),
    ("source: prometheus\nprometheus: {url: 'http://prom', queries: {sent: 'x{a=\"{{ip}}\"}'}}",
     r"prometheus.queries.sent: unknown template value \{\{ip\}\}"),
    ("source: prometheus\nprometheus: {url: 'http://prom', queries: {goodput: 'x'}}", r"queries.*goodput"),
    ("source: sockets\nprometheus: {url: 'http://prom'}", r"health.prometheus is read only with source: prometheus"),
    ("prometheus: {url: 'http://prom'}", r"health.prometheus is read only with source: prometheus"),
])
def test_a_bad_prometheus_source_is_one_clear_message(tmp_path, health, expected):
    with pytest.raises(InvalidInput) as caught:
        load_plan(plan_with(tmp_path, health))
    assert re.search(expected, str(caught.value)), str(caught.value)


def test_the_bundled_prometheus_playbook():
    (rollout,) = load_plan(REPO / "playbooks" / "lab-reno-prometheus.yaml").rollouts
    assert rollout.health_source == "prometheus" and rollout.prometheus.url == "http://127.0.0.1:9090"


# -- reading answers ----------------------------------------------------------------------------------


def test_an_instant_vector_of_one_series_is_a_value():
    assert value_of(vector(42, instance="a"), "q") == (1700000000.5, 42.0)


@pytest.mark.parametrize("result, problem", [
    ([], "no series for q"),
    (vector(1) + vector(2), "returned 2 series"),
    (vector("NaN"), "returned NaN"),
    ([1700000000, "3"], "did not return an instant vector"),
    ([{"metric": {}}], "something other than a sample"),
    ({"x": 1}, "did not return an instant vector"),
])
def test_anything_but_one_finite_number_is_no_figure(result, problem):
    with pytest.raises(NoSeries, match=problem):
        value_of(result, "q")


class CannedClient:
    """PrometheusConnect's custom_query over a function of the query."""

    def __init__(self, answer):
        self.answer, self.queries = answer, []

    def custom_query(self, query):
        self.queries.append(query)
        return self.answer(query)


def test_counters_are_read_as_they_stand():
    counters = {"OutSegs": 1000, "RetransSegs": 10}
    client = CannedClient(lambda q: vector(counters[re.search(r"Tcp_(\w+)", q).group(1)]))
    sampler = PrometheusSampler(SOURCE, {"lab1": "10.199.0.11"}, client=client)
    samples, errors = sampler(["lab1"])
    assert errors == {} and samples["lab1"].total == judge.Window(1000, 10)
    assert samples["lab1"].time == 1700000000.5
    assert all('instance="10.199.0.11:9100"' in q for q in client.queries)


def test_per_window_answers_add_up_to_a_counter():
    source = promql.PrometheusSource.from_plan({"url": "http://p", "queries": {
        "sent": 'increase(out{i="{{instance}}"}[{{window}}])', "retransmitted": 'increase(re{i="{{instance}}"}[{{window}}])'}})
    clock = iter([100.0, 102.0, 104.5])
    client = CannedClient(lambda q: vector(500.4 if q.startswith("increase(out") else 4.6))
    sampler = PrometheusSampler(source, {}, client=client, clock=lambda: next(clock))
    first = sampler(["web1"])[0]["web1"].total
    assert first == judge.Window(0, 0) and client.queries == []   # no window yet
    second = sampler(["web1"])[0]["web1"].total
    third = sampler(["web1"])[0]["web1"].total
    assert (second.sent, second.retransmitted) == (500, 5)
    assert (third.sent, third.retransmitted) == (1001, 9)
    assert client.queries[0] == 'increase(out{i="web1:9100"}[2000ms])' and client.queries[-1].endswith("[2500ms])")


def test_a_prometheus_that_does_not_answer_leaves_every_host_without_figures():
    def refuse(query):
        raise requests.ConnectionError("Connection refused")
    samples, errors = PrometheusSampler(SOURCE, {}, client=CannedClient(refuse))(["lab1", "lab2"])
    assert samples == {} and set(errors) == {"lab1", "lab2"}
    assert all(isinstance(error, canary.NoFigures) for error in errors.values())
    assert "Prometheus at http://127.0.0.1:9090 did not answer: Connection refused" in errors["lab1"]


def test_a_refused_query_or_a_missing_series_is_that_hosts_alone():
    def answer(query):
        if "lab2" in query:
            raise PrometheusApiClientException('HTTP Status Code 400 (b\'{"error":"parse error"}\')')
        return [] if "lab3" in query else vector(7)
    source = promql.PrometheusSource("http://p", instance="{{host}}:9100")
    samples, errors = PrometheusSampler(source, {}, client=CannedClient(answer))(["lab1", "lab2", "lab3"])
    assert set(samples) == {"lab1"}
    assert "refused" in errors["lab2"] and "parse error" in errors["lab2"]
    assert errors["lab3"] == 'Prometheus has no series for node_netstat_Tcp_OutSegs{instance="lab3:9100"}'


class FakePrometheus(http.server.BaseHTTPRequestHandler):
    """/api/v1/query as Prometheus answers it, from canned counters."""

    counters = {"10.0.0.1:9100": {"OutSegs": 5000, "RetransSegs": 50}}

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)["query"][0]
        found = re.fullmatch(r'node_netstat_Tcp_(\w+)\{instance="([^"]*)"\}', query)
        series = self.counters.get(found.group(2), {}) if found else {}
        result = vector(series[found.group(1)], instance=found.group(2)) if found.group(1) in series else []
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_prometheus():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_client_library_reads_the_http_api(fake_prometheus):
    sampler = PrometheusSampler(promql.PrometheusSource(fake_prometheus), {"web1": "10.0.0.1", "web2": "10.0.0.2"})
    samples, errors = sampler(["web1", "web2"])
    assert samples["web1"].total == judge.Window(5000, 50)
    assert set(errors) == {"web2"} and "no series" in errors["web2"]


# -- what a stage makes of missing figures -------------------------------------------------------------


def _steady_sampler(missing: set):
    readings = {"count": 0}

    def sample(hosts):
        readings["count"] += 1
        sent = 1000 * readings["count"]
        samples = {h: canary.Sample(h, 0.0, judge.Window(sent, sent // 100)) for h in hosts if h not in missing}
        return samples, {h: canary.NoFigures("Prometheus has no series for q") for h in hosts if h in missing}
    return sample


@pytest.mark.parametrize("on_inconclusive", ["fail", "pass"])
def test_a_changed_host_without_figures_is_inconclusive_never_passed(on_inconclusive):
    limits = judge.Limits(0.15, 0.10, 100, on_inconclusive=on_inconclusive, min_intervals=2)
    schedule = Schedule(baseline=0, settle=0, bake=0.2, interval=0.05, max_extend=0)
    verdict = canary.bake(_steady_sampler({"lab2"}), canary.Bake(["lab1", "lab2"], ["lab3"], {}), limits, schedule)
    assert verdict.outcome == judge.INCONCLUSIVE and not verdict.passed
    assert verdict.reasons[0] == "lab2: inconclusive: Prometheus has no series for q"


def test_a_control_without_figures_is_only_left_out():
    limits = judge.Limits(0.15, 0.10, 100, min_intervals=2)
    schedule = Schedule(baseline=0, settle=0, bake=0.2, interval=0.05, max_extend=0)
    verdict = canary.bake(_steady_sampler({"lab3"}), canary.Bake(["lab1"], ["lab3"], {}), limits, schedule)
    assert verdict.outcome == judge.PASS


# -- the runner with a Prometheus source ----------------------------------------------------------


def test_a_rollout_judged_from_prometheus_never_reaches_its_controls(tmp_path, monkeypatch):
    """Stage 1's host retransmits half its segments by Prometheus's counters: it fails there,
    and the controls it was compared with were read from Prometheus alone."""
    import hashlib
    from ccrollout import build
    from ccrollout.inventory import Host
    from ccrollout.journal import Journal
    from ccrollout.metrics import prometheus
    from ccrollout.plan import Algorithm, Rollout, Scope, Stage
    from ccrollout.rollout.runner import Runner
    from ccrollout.simulation import SimulatedFleet
    from ccrollout.status import RolloutStatus

    path = tmp_path / "ccr_sim.bpf.o"
    path.write_bytes(b"not really an ELF object")
    built = build.BuiltObject("ccr_sim", tmp_path / "ccr_sim.bpf.c", path,
                              hashlib.sha256(path.read_bytes()).hexdigest(), 1, (), True)
    monkeypatch.setattr(Runner, "build_control", lambda self, rollout: built)
    readings: dict[str, int] = {}

    def counters(query):
        host = re.search(r'instance="(\w+):9100"', query).group(1)
        readings[query] = readings.get(query, 0) + 1
        per_reading = 1000 if "OutSegs" in query else (500 if host == "h0" else 10)
        return vector(per_reading * readings[query])
    monkeypatch.setattr(prometheus, "connect", lambda source: CannedClient(counters))

    hosts = [Host(f"h{index}", {}, ("all",)) for index in range(4)]
    fleet = SimulatedFleet([h.name for h in hosts], ratios={"reno": 0.01, "ccr_sim": 0.01})
    rollout = Rollout(name="sim", algorithm=Algorithm("ccr_sim", build.Path("/dev/null")), hosts="all",
                      stages=(Stage(1), Stage(100, percent=True)),
                      schedule=Schedule(baseline=0.3, settle=0, bake=0.4, interval=0.1),
                      limits=judge.Limits(0.15, 0.10, 50), on_failure="rollback", scope=Scope(), control=Stage(2),
                      health_source="prometheus", prometheus=SOURCE)
    with Runner(hosts, Journal(tmp_path / "journal.sqlite"), progress=lambda text: None,
                connect=fleet.connect) as runner:
        result = runner.apply("plan.yaml", rollout)
    assert result.status == RolloutStatus.ROLLED_BACK, result.message
    (verdict,) = result.verdicts
    assert verdict["outcome"] == "fail" and verdict["source"] == "prometheus" and len(verdict["controls"]) == 2
    assert all(not fleet.hosts[name].calls for name in verdict["controls"])
