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
    shown_as: tuple[float, str]             # (factor, unit) for people: fractions as %, bytes as Mbit/s

    def for_people(self, value: float, digits: str = ".2f") -> str:
        """VALUE in the unit people read, e.g. "1.05%", "42.10 Mbit/s", "3.05 ms"."""
        factor, unit = self.shown_as
        return f"{value * factor:{digits}}{unit}"


def _retransmit_ratio(window: Window) -> float | None:
    return window.retransmit_ratio if window.sent else None


def _goodput(window: Window) -> float | None:
    return window.bytes_acked / window.seconds if window.seconds > 0 and window.bytes_acked else None


def _goodput_per_connection(window: Window) -> float | None:
    rate = _goodput(window)
    return rate / window.connections if rate is not None and window.connections else None


PERCENT, MBIT_PER_SECOND, MILLISECONDS = (100.0, "%"), (8e-6, " Mbit/s"), (1.0, " ms")

METRICS = (
    Metric("retransmit_ratio", "retransmitted segments", "share of segments sent", HIGHER, _retransmit_ratio,
           PERCENT),
    Metric("goodput", "goodput", "bytes acked per second", LOWER, _goodput, MBIT_PER_SECOND),
    Metric("goodput_per_connection", "goodput per connection", "bytes acked per second", LOWER,
           _goodput_per_connection, MBIT_PER_SECOND),
    Metric("srtt", "smoothed RTT", "ms", HIGHER, lambda window: window.srtt_ms, MILLISECONDS),
    Metric("min_rtt", "minimum RTT", "ms", HIGHER, lambda window: window.min_rtt_ms, MILLISECONDS),
)
BY_NAME = {metric.name: metric for metric in METRICS}
