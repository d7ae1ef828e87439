"""A Prometheus source as the plan gives it, and the PromQL it asks, filled in per host.

Pure: no I/O. Templates name values in double braces, in the manner of Argo Rollouts'
AnalysisTemplates: {{host}} (the inventory name), {{address}} (ansible_host, else the name),
{{instance}} (how the host's series are labelled, from the source's own template) and
{{window}} (the sampling interval, as a PromQL duration). Every value but {{window}} comes
from an inventory, so it is escaped for a PromQL string: a host name can never end the
string it stands in, whatever quote the template uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

# Figures a Window carries. Counters grow (a query reads the counter, or its growth over
# {{window}}); gauges are read as they are.
COUNTERS = ("sent", "retransmitted", "bytes_acked")
GAUGES = ("connections", "srtt_ms", "min_rtt_ms")
FIGURES = COUNTERS + GAUGES

# node_exporter's netstat collector exports these by default; its default port is 9100 and
# Prometheus labels a target's series with instance="ADDRESS:PORT".
DEFAULT_INSTANCE = "{{address}}:9100"
DEFAULT_QUERIES = MappingProxyType({
    "sent": 'node_netstat_Tcp_OutSegs{instance="{{instance}}"}',
    "retransmitted": 'node_netstat_Tcp_RetransSegs{instance="{{instance}}"}',
})
DEFAULT_TIMEOUT = 5.0

INSTANCE_VALUES = ("host", "address")
QUERY_VALUES = ("host", "address", "instance", "window")
WINDOW = "window"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Characters left as they are inside a PromQL string; anything else becomes a \u escape.
_PLAIN = re.compile(r"[A-Za-z0-9._:@/-]")


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def unknown_placeholders(template: str, allowed) -> list[str]:
    return sorted({name for name in placeholders(template) if name not in allowed})


def escape(value: str) -> str:
    """VALUE as the inside of a PromQL string literal in single or double quotes (PromQL
    follows Go's escapes): letters, digits and . _ : @ / - as they are, the rest \\u-escaped."""
    out = []
    for char in value:
        if _PLAIN.match(char):
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def render(template: str, values: Mapping[str, str], raw=(WINDOW,)) -> str:
    """TEMPLATE with each {{name}} replaced by its value, escaped unless named in RAW."""
    def replace(match: re.Match) -> str:
        name = match.group(1)
        value = str(values[name])
        return value if name in raw else escape(value)
    return _PLACEHOLDER.sub(replace, template)


def duration(seconds: float) -> str:
    """SECONDS as a PromQL duration, to the millisecond."""
    return f"{max(1, round(seconds * 1000))}ms"


@dataclass(frozen=True)
class PrometheusSource:
    """Where a rollout's figures come from when its health.source is prometheus."""

    url: str
    instance: str = DEFAULT_INSTANCE
    queries: Mapping[str, str] = field(default_factory=lambda: DEFAULT_QUERIES)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_plan(cls, entry: Mapping) -> "PrometheusSource":
        """From the plan's health.prometheus mapping (checked by then): its queries over the
        built-in ones."""
        return cls(url=entry["url"].rstrip("/"), instance=entry.get("instance", DEFAULT_INSTANCE),
                   queries=MappingProxyType({**DEFAULT_QUERIES, **entry.get("queries", {})}))

    def per_window(self, figure: str) -> bool:
        """Whether FIGURE's query answers for one interval ({{window}}) rather than reading
        a counter as it stands."""
        return WINDOW in placeholders(self.queries[figure])

    def instance_of(self, host: str, address: str) -> str:
        return render(self.instance, {"host": host, "address": address}, raw=INSTANCE_VALUES)

    def query(self, figure: str, host: str, address: str, window_seconds: float = 0.0) -> str:
        """The PromQL that reads FIGURE of one host, over the last WINDOW_SECONDS if it asks."""
        values = {"host": host, "address": address, "instance": self.instance_of(host, address),
                  WINDOW: duration(window_seconds)}
        return render(self.queries[figure], values)


def plan_problems(health) -> list[tuple[tuple, str]]:
    """What the schema cannot say about a plan's health mapping's Prometheus source:
    (path under health, message) for each problem."""
    if not isinstance(health, dict):
        return []
    problems = []
    wanted, given = health.get("source") == "prometheus", "prometheus" in health
    if wanted and not given:
        problems.append((("source",), "source: prometheus needs health.prometheus with a url"))
    if given and not wanted:
        problems.append((("prometheus",), "health.prometheus is read only with source: prometheus"))
    entry = health.get("prometheus")
    if not isinstance(entry, dict):
        return problems
    url = entry.get("url")
    if isinstance(url, str) and _has_credentials(url):
        problems.append((("prometheus", "url"), "the url must not hold a user or password (messages and "
                         "the journal show it)"))
    checks = [(("prometheus", "instance"), entry.get("instance"), INSTANCE_VALUES)]
    queries = entry.get("queries")
    if isinstance(queries, dict):
        checks += [(("prometheus", "queries", name), text, QUERY_VALUES) for name, text in queries.items()]
    for path, text, allowed in checks:
        if isinstance(text, str) and (unknown := unknown_placeholders(text, allowed)):
            problems.append((path, f"unknown template value {{{{{unknown[0]}}}}}; known: "
                             + ", ".join(f"{{{{{name}}}}}" for name in allowed)))
    return problems


def _has_credentials(url: str) -> bool:
    authority = url.split("://", 1)[-1].split("/", 1)[0]
    return "@" in authority
