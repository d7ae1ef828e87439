"""The words and numbers of a report: each metric in units people read, and what a stage's
verdict says of each canary host (per metric when the judge recorded metrics, else its
retransmit figures). The verdict's figures beyond those journalrows checks may be anything
an edited journal holds, so every number here is taken only if it is one."""

import math

from ..rollout.metrics import Metric

MAX_HOST_LINES = 3  # per metric in a figure; the HTML page's table has them all


def number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def shown(metric: Metric, value) -> str:
    value = number(value)
    if value is None:
        return "?"
    return metric.for_people(value, ".3g")


def limit_shown(metric: Metric, value) -> str:
    """How much worse than a reference the judge allowed: points of the ratio, a share of the
    reference's median for every other metric (judge.Limits.limit_of)."""
    value = number(value)
    if value is None:
        return "?"
    if metric.name == "retransmit_ratio":
        return f"+{value * 100:.3g} points"
    return f"{value * 100:.3g}% {metric.worse}"


def p_value(value) -> str:
    if value is None:  # the judge runs no test when the rise is within the limit
        return "no test needed"
    value = number(value)
    return "p=?" if value is None else f"p={value:.3g}"


def _reference(metric: Metric, name: str, figures) -> str | None:
    if not isinstance(figures, dict):
        return None
    return f"{name} {shown(metric, figures.get('median'))} {p_value(figures.get('p_value'))}"


def host_figures(metric: Metric, verdict: dict | None, host: str) -> dict | None:
    """What the verdict says of HOST for METRIC: {outcome, median, limit, baseline, control}
    (the references as dicts with median and p_value), or None when it says nothing."""
    figures = ((verdict or {}).get("figures") or {}).get(host)
    if not isinstance(figures, dict):
        return None
    per_metric = figures.get("metrics")
    if isinstance(per_metric, dict) and isinstance(per_metric.get(metric.name), dict):
        judged = per_metric[metric.name]
        return {"outcome": judged.get("outcome"), "median": judged.get("canary_median"),
                "limit": judged.get("limit"), "baseline": judged.get("baseline"), "control": judged.get("control")}
    if metric.name == "retransmit_ratio":  # a verdict from before per-metric figures
        return {"outcome": figures.get("outcome"), "median": figures.get("retransmit_ratio"), "limit": None,
                "baseline": figures.get("baseline"), "control": figures.get("control")}
    return None


def host_line(metric: Metric, verdict: dict | None, host: str) -> str:
    """One canary host's figures for METRIC, on one line."""
    judged = host_figures(metric, verdict, host)
    if judged is None:
        return f"{plain(host)}: not judged on this metric"
    parts = [f"{plain(host)} {plain(judged['outcome'] or '?')}: median {shown(metric, judged['median'])}"]
    if judged["limit"] is not None:
        parts.append(f"limit {limit_shown(metric, judged['limit'])}")
    parts += [text for text in (_reference(metric, "baseline", judged["baseline"]),
                                _reference(metric, "controls", judged["control"])) if text]
    return ", ".join(parts)


def metric_title(metric: Metric, verdict: dict | None, canaries: list[str]) -> str:
    unit = metric.shown_as[1]
    lines = [f"{metric.title} ({unit.strip()}, worse when {metric.worse})"]
    lines += [host_line(metric, verdict, host) for host in canaries[:MAX_HOST_LINES]]
    if len(canaries) > MAX_HOST_LINES:
        lines.append(f"and {len(canaries) - MAX_HOST_LINES} more canary hosts (see the HTML report)")
    return "\n".join(lines)


def stage_title(number: int, verdict: dict | None, canaries: list[str], controls: list[str]) -> str:
    outcome = plain(verdict.get("outcome", "?")).upper() if verdict else "NO VERDICT"
    who = f"canaries: {_names(canaries)}" + (f"; controls: {_names(controls)}" if controls else "")
    return f"stage {number}: {outcome} ({who})"


def _names(hosts: list[str], most: int = 6) -> str:
    return ", ".join(plain(host) for host in hosts[:most]) + (f" and {len(hosts) - most} more" if len(hosts) > most else "")


def plain(value) -> str:
    """Journal text for a figure: bounded, and no '$' (matplotlib reads $...$ as math)."""
    return str(value)[:200].replace("$", r"\$")
