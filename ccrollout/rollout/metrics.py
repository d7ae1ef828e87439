"""The figures a canary is judged on, each with the direction in which it is worse.

One descriptor per metric, shared by the judge, the journal, the Prometheus source and the
report, so a metric is named and computed in one place.
"""

from dataclasses import dataclass
from typing import Callable

from .window import Window

HIGHER, LOWER = "higher", "lower"  # which way a metric is worse


@dataclass(frozen=True)
class Metric:
    name: str                               # the key in plans, the journal and reports
    title: str                              # for people
    unit: str
    worse: str                              # HIGHER or LOWER
    value: Callable[[Window], float | None]  # None: this window does not carry the metric


def _retransmit_ratio(window: Window) -> float | None:
    return window.retransmit_ratio if window.sent else None


def _goodput(window: Window) -> float | None:
    return window.bytes_acked / window.seconds if window.seconds > 0 and window.bytes_acked else None


def _goodput_per_connection(window: Window) -> float | None:
    rate = _goodput(window)
    return rate / window.connections if rate is not None and window.connections else None


METRICS = (
    Metric("retransmit_ratio", "retransmitted segments", "share of segments sent", HIGHER, _retransmit_ratio),
    Metric("goodput", "goodput", "bytes acked per second", LOWER, _goodput),
    Metric("goodput_per_connection", "goodput per connection", "bytes acked per second", LOWER,
           _goodput_per_connection),
    Metric("srtt", "smoothed RTT", "ms", HIGHER, lambda window: window.srtt_ms),
    Metric("min_rtt", "minimum RTT", "ms", HIGHER, lambda window: window.min_rtt_ms),
)
BY_NAME = {metric.name: metric for metric in METRICS}
