"""The HTML report: one page, each stage's figure embedded as a PNG (base64, so the page is
one file to send), with the verdict's reasons and each canary host's figures per metric.
Everything the journal says is escaped."""

import base64
import html

from ..rollout.metrics import METRICS
from .evidence import CANARY, StageEvidence
from .summary import host_figures, number, p_value, shown

STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
.pass{color:#1a7f37}.fail,.inconclusive{color:#cf222e}img{max-width:100%}"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def page(heading: str, story: str, stages: list[StageEvidence], pngs: list[bytes]) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(heading)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{_e(heading)}</h1><p>{_e(story)}</p>"]
    if not stages:
        parts.append("<p>No stage was baked: nothing to draw.</p>")
    for stage, image in zip(stages, pngs):
        outcome = str((stage.verdict or {}).get("outcome", "no verdict"))
        parts.append(f"<h2>Stage {stage.number}: <span class='{_e(outcome)}'>{_e(outcome)}</span></h2>")
        parts.append(f"<img alt='stage {stage.number}' src='data:image/png;base64,"
                     f"{base64.b64encode(image).decode()}'>")
        parts.append(_reasons(stage))
        parts.append(_figures(stage))
    parts.append("</body></html>")
    return "\n".join(parts)


def _reasons(stage: StageEvidence) -> str:
    reasons = (stage.verdict or {}).get("reasons")
    if not isinstance(reasons, list) or not reasons:
        return "<p>The verdict gives no reasons.</p>"
    rows = "".join(f"<tr><td>{_e(reason)}</td></tr>" for reason in reasons)
    return f"<table><tr><th>the verdict's reasons</th></tr>{rows}</table>"


def _figures(stage: StageEvidence) -> str:
    canaries = stage.hosts(CANARY) or [h for h in (stage.verdict or {}).get("hosts", []) if isinstance(h, str)]
    rows = []
    for metric in METRICS:
        for host in canaries:
            judged = host_figures(metric, stage.verdict, host)
            if judged is None:
                continue
            cells = [host, metric.title, judged["outcome"] or "?", shown(metric, judged["median"]),
                     shown(metric, judged["limit"]) if number(judged["limit"]) is not None else "-"]
            for reference in ("baseline", "control"):
                figures = judged[reference] if isinstance(judged[reference], dict) else {}
                cells += [shown(metric, figures.get("median")) if figures else "-",
                          p_value(figures.get("p_value")) if figures else "-"]
            rows.append("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in cells) + "</tr>")
    if not rows:
        return ""
    head = ("<tr><th>canary</th><th>metric</th><th>outcome</th><th>median</th><th>limit</th>"
            "<th>baseline median</th><th>vs baseline</th><th>controls median</th><th>vs controls</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"
