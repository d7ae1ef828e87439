"""Figures for more than retransmissions, from a host's answer to the journal: readings,
interval deltas (canary.growth), the verdict record's metrics, and its check when read back."""

import json

import pytest

from ccrollout import journalrows
from ccrollout.host import protocol
from ccrollout.rollout import judge
from ccrollout.rollout.canary import growth
from ccrollout.rollout.hosts import control_reading, namespace_reading
from ccrollout.rollout.stage import figures
from ccrollout.rollout.window import Window


def reading(sent, acked, srtt_sum=0.0, readings=0, connections=3, **more) -> Window:
    return Window(sent, sent // 100, bytes_acked=acked, connections=connections, srtt_ms_sum=srtt_sum,
                  min_rtt_ms_sum=srtt_sum / 2, rtt_readings=readings, **more)


def test_growth_makes_counter_deltas_over_the_readings_seconds_and_keeps_gauges():
    window = growth(reading(1000, 1_000_000, 40.0, 10), reading(3000, 4_000_000, 100.0, 25, connections=2), 2.0)
    assert (window.sent, window.retransmitted, window.bytes_acked) == (2000, 20, 3_000_000)
    assert (window.seconds, window.connections) == (2.0, 2)
    assert window.srtt_ms == pytest.approx(4.0) and window.min_rtt_ms == pytest.approx(2.0)  # 60 ms over 15 reads


def test_growth_of_a_reset_counts_nothing_and_an_interval_without_reads_has_no_rtt():
    window = growth(reading(3000, 4_000_000, 100.0, 25), reading(10, 5000, 1.0, 1), 2.0)
    assert (window.sent, window.bytes_acked, window.srtt_ms) == (0, 0, None)
    idle = growth(reading(3000, 4_000_000, 100.0, 25), reading(3000, 4_000_000, 100.0, 25), 2.0)
    assert idle.srtt_ms is None and metric("goodput", idle) is None


def test_growth_takes_a_sources_rtt_gauge_where_it_keeps_no_sums():
    assert growth(Window(0, 0), Window(10, 0, srtt_ms=7.5), 1.0).srtt_ms == 7.5


def metric(name: str, window: Window):
    return next(m for m in judge.metrics.METRICS if m.name == name).value(window)


def test_goodput_of_an_interval_is_bytes_acked_per_second_per_connection_too():
    window = growth(reading(0, 0), reading(100, 10_000_000, connections=4), 2.0)
    assert metric("goodput", window) == 5_000_000 and metric("goodput_per_connection", window) == 1_250_000


def test_an_agents_answer_becomes_readings_per_control_and_for_the_namespace():
    figures_of = {"ccr_reno": protocol.control_figures((900, 9, 1_300_000), (40_000, 20_000, 10), 2),
                  "reno": protocol.control_figures((100, 1, 200_000), None, 1)}
    assert figures_of["reno"] == {"sent": 100, "retransmitted": 1, "bytes_acked": 200_000, "connections": 1,
                                  "srtt_us_sum": 0, "min_rtt_us_sum": 0, "rtt_readings": 0}
    by_control = {name: control_reading(entry) for name, entry in figures_of.items()}
    assert by_control["ccr_reno"] == Window(900, 9, bytes_acked=1_300_000, connections=2, srtt_ms_sum=40.0,
                                            min_rtt_ms_sum=20.0, rtt_readings=10)
    namespace = namespace_reading({"OutSegs": 5000, "RetransSegs": 50}, by_control)
    assert (namespace.sent, namespace.retransmitted, namespace.bytes_acked, namespace.connections) == \
        (5000, 50, 1_500_000, 3)  # segments from the namespace's counters, bytes from the watcher
    assert namespace_reading({"OutSegs": 5000, "RetransSegs": 50}, None) == Window(5000, 50)
    assert control_reading({"sent": 7, "retransmitted": 0}) == Window(7, 0)  # an older agent's answer


def flowing(rate: float, srtt: float, sent: int = 7000, intervals: int = 4) -> list[Window]:
    return [Window(sent, sent // 100 + index, bytes_acked=int(rate * 2) + index, seconds=2.0, connections=2,
                   srtt_ms=srtt + index / 100) for index in range(intervals)]


def test_the_verdict_record_keeps_the_old_keys_and_adds_every_metric():
    limits = judge.Limits(0.15, 0.10, 500)
    verdict = judge.judge({"lab1": flowing(40_000, 40.0, sent=90)}, {"lab1": flowing(5e6, 4.0, intervals=2)},
                          {"lab2": flowing(5.2e6, 3.5), "lab3": flowing(5.1e6, 3.6)}, limits)
    shown = figures(verdict)["lab1"]
    assert {"outcome", "retransmit_ratio", "sent", "intervals", "metrics"} <= set(shown)
    assert set(shown["metrics"]) == {"retransmit_ratio", "goodput", "srtt"}
    goodput = shown["metrics"]["goodput"]
    assert goodput["outcome"] == "fail" and goodput["limit"] == 0.5
    assert goodput["canary_median"] == pytest.approx(40_000.75)  # bytes acked per second, the median interval
    assert set(goodput["baseline"]) == {"median", "p_value", "intervals"} and goodput["control"]["intervals"] == 8
    assert shown["metrics"]["retransmit_ratio"] == {"canary_median": shown["retransmit_ratio"], "limit": 0.1,
                                                    "outcome": "unjudged"}  # 360 segments: too few for a ratio
    row = (1.0, 1, "verdict", json.dumps({"stage": 1, "outcome": "fail", "hosts": ["lab1"],
                                          "figures": figures(verdict)}))
    assert journalrows.event(row, "r1")["data"]["figures"]["lab1"]["metrics"]["goodput"]["outcome"] == "fail"


@pytest.mark.parametrize("metrics, message", [
    ([], "metrics"), ({"goodput": {"outcome": "great", "limit": 0.5}}, "goodput.outcome"),
    ({"goodput": {"outcome": "pass", "limit": "half"}}, "goodput.limit"),
    ({"goodput": {"outcome": "pass", "limit": 0.5, "canary_median": float("nan")}}, "goodput.canary_median"),
])
def test_a_verdict_records_metrics_are_checked_when_read_back(metrics, message):
    data = {"stage": 1, "outcome": "pass", "hosts": ["lab1"],
            "figures": {"lab1": {"outcome": "pass", "retransmit_ratio": 0.01, "sent": 10, "metrics": metrics}}}
    with pytest.raises(journalrows.TamperedRow, match=message):
        journalrows.event((1.0, 1, "verdict", json.dumps(data)), "r1")
