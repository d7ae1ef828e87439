"""Figures from Prometheus: a sampler for the canary that reads each host's series with
instant queries over the HTTP API, instead of asking the host.

It reads the same host-wide counters a host agent would (node_exporter's netstat
collector: TcpOutSegs, TcpRetransSegs), so it cannot tell the new control's connections
from the others; and it reaches no host, so control hosts cost nothing but queries.

A query without {{window}} reads a counter as it stands, and the canary takes the growth
between readings; a query with {{window}} answers for the time since this host's last
reading (e.g. increase(...[{{window}}])), and the sampler adds the answers up so the
canary sees a counter all the same. When Prometheus does not answer, or has no series for a
host, the host's figures are missing (canary.NoFigures): never a pass.
"""

from __future__ import annotations

import math
import time

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect

from ..rollout import canary, judge
from .promql import COUNTERS, FIGURES, PrometheusSource

_DETAIL_LIMIT = 300  # characters of Prometheus's own error text kept in a message


class Unanswered(Exception):
    """Prometheus itself did not answer: every host's figures are missing."""


class NoSeries(Exception):
    """Prometheus answered, but not with one number for this host."""


def connect(source: PrometheusSource) -> PrometheusConnect:
    return PrometheusConnect(url=source.url, timeout=source.timeout)


def value_of(result, query: str) -> tuple[float, float]:
    """(time, value) of the one series an instant query returned (the API's data.result); the
    time is the evaluation's, not the scrape's."""
    if not isinstance(result, list) or not all(isinstance(series, dict) for series in result):
        raise NoSeries(f"{query} did not return an instant vector (a scalar or a string?)")
    if not result:
        raise NoSeries(f"Prometheus has no series for {query}")
    if len(result) > 1:
        raise NoSeries(f"{query} returned {len(result)} series, not one (aggregate them, e.g. sum(...))")
    try:
        stamp, text = result[0]["value"]
        value = float(text)
        stamp = float(stamp)
    except (KeyError, TypeError, ValueError):
        raise NoSeries(f"{query} returned something other than a sample") from None
    if not math.isfinite(value):
        raise NoSeries(f"{query} returned {text}")
    return stamp, value


class PrometheusSampler:
    """A canary.Sampler over Prometheus, for the hosts of one rollout. ADDRESSES: each
    host's address ({{address}}); CLIENT: anything with PrometheusConnect's custom_query."""

    def __init__(self, source: PrometheusSource, addresses: dict[str, str], client=None, clock=time.time):
        self.source, self.addresses = source, addresses
        self.client = client if client is not None else connect(source)
        self.clock = clock
        self.sums: dict[str, dict[str, float]] = {}   # host -> figure -> answers so far, per-window queries
        self.read_at: dict[str, float] = {}            # host -> when its last per-window answers end

    def __call__(self, hosts: list[str]) -> tuple[dict[str, canary.Sample], dict[str, str]]:
        samples, errors = {}, {}
        for host in hosts:
            try:
                samples[host] = self.sample(host)
            except NoSeries as exc:
                errors[host] = canary.NoFigures(f"{exc}")
            except Unanswered as exc:
                why = canary.NoFigures(f"{exc}")
                errors.update({other: why for other in hosts if other not in samples})
                break
        return samples, errors

    def ask(self, query: str) -> list:
        try:
            return self.client.custom_query(query)
        except PrometheusApiClientException as exc:
            raise NoSeries(f"Prometheus at {self.source.url} refused {query}: {str(exc)[:_DETAIL_LIMIT]}") from None
        except (requests.RequestException, ValueError) as exc:
            raise Unanswered(f"Prometheus at {self.source.url} did not answer: "
                             f"{str(exc)[:_DETAIL_LIMIT]}") from None

    def sample(self, host: str) -> canary.Sample:
        """One reading of HOST's figures. Per-window queries start on a host's first reading."""
        now = self.clock()
        since = self.read_at.get(host)
        address = self.addresses.get(host, host)
        figures, newest = {}, 0.0
        for figure in FIGURES:
            if figure not in self.source.queries:
                continue
            if self.source.per_window(figure):
                answered = 0.0
                if since is not None:
                    query = self.source.query(figure, host, address, now - since)
                    answered = value_of(self.ask(query), query)[1]
                figures[figure] = self.sums.get(host, {}).get(figure, 0.0) + answered
            else:
                query = self.source.query(figure, host, address)
                stamp, figures[figure] = value_of(self.ask(query), query)
                newest = max(newest, stamp)
        # Only a complete reading moves the window on: a failed one leaves the next to cover it.
        self.sums[host] = {figure: value for figure, value in figures.items() if self.source.per_window(figure)}
        self.read_at[host] = now
        return canary.Sample(host, newest or now, window_of(figures))


def window_of(figures: dict[str, float]) -> judge.Window:
    """Counters rounded to whole numbers; a gauge not asked for stays unknown."""
    counts = {name: int(round(figures.get(name, 0.0))) for name in COUNTERS}
    return judge.Window(counts["sent"], counts["retransmitted"], bytes_acked=counts["bytes_acked"],
                        connections=int(round(figures.get("connections", 0.0))),
                        srtt_ms=figures.get("srtt_ms"), min_rtt_ms=figures.get("min_rtt_ms"))
