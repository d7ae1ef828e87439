"""Drawing a stage's evidence with matplotlib (Agg, no display), as Kayenta's canary report
does: per metric, the canary hosts against their own baseline and against the control hosts
over the stage's time, the change marked, and the verdict's figures in the titles."""

import io
import statistics

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .evidence import BAKE, BASELINE, CANARY, CONTROL, Points, StageEvidence
from .summary import metric_title, plain, stage_title

MAX_CANARY_LINES = 8   # beyond it the canaries are drawn as their median, or no one could read it
ROW_INCHES, TITLE_INCHES, WIDTH_INCHES = 2.6, 0.5, 10.0
DPI = 80               # small enough for a README, sharp enough to read
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
CONTROL_COLOR = "dimgray"


def stage_inches(stage: StageEvidence) -> float:
    return TITLE_INCHES + ROW_INCHES * max(1, len(stage.metrics()))


def draw_rollout(stages: list[StageEvidence], heading: str) -> Figure:
    """Every stage, stacked in one figure under HEADING."""
    heights = [stage_inches(stage) for stage in stages] or [1.0]
    figure = Figure(figsize=(WIDTH_INCHES, sum(heights) + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(plain(heading), fontsize=12, fontweight="bold")
    if not stages:
        figure.text(0.5, 0.5, "no stage was baked: nothing to draw", ha="center")
        return figure
    for part, stage in zip(figure.subfigures(len(stages), 1, height_ratios=heights, squeeze=False)[:, 0], stages):
        draw_stage(part, stage)
    return figure


def draw_one_stage(stage: StageEvidence) -> Figure:
    figure = Figure(figsize=(WIDTH_INCHES, stage_inches(stage)), layout="constrained")
    FigureCanvasAgg(figure)
    draw_stage(figure, stage)
    return figure


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def draw_stage(target, stage: StageEvidence) -> None:
    """The stage on TARGET (a Figure or SubFigure): one row of axes per metric with data."""
    canaries, controls = stage.hosts(CANARY), stage.hosts(CONTROL)
    if stage.verdict and not canaries:
        canaries = [host for host in stage.verdict.get("hosts", []) if isinstance(host, str)]
    target.suptitle(stage_title(stage.number, stage.verdict, canaries, controls), fontsize=11)
    metrics = stage.metrics()
    if not metrics:
        axes = target.subplots()
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no intervals recorded for this stage", ha="center", va="center")
        return
    rows = target.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for axes, metric in zip(rows, metrics):
        _draw_metric(axes, stage, metric, canaries)
    rows[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    rows[-1].set_xlabel("seconds from the stage's start (baseline, change, then bake)")


def _draw_metric(axes, stage: StageEvidence, metric, canaries: list[str]) -> None:
    factor, unit = metric.shown_as

    def scaled(points: Points) -> tuple[list[float], list[float]]:
        return [x for x, _ in points], [value * factor for _, value in points]

    for label, color, phase_points in _canary_series(stage, metric, canaries):
        if phase_points[BASELINE]:
            axes.plot(*scaled(phase_points[BASELINE]), color=color, linestyle="--", marker=".", alpha=0.8,
                      label=f"{label}: baseline", zorder=3)  # over the controls, which it often matches
        if phase_points[BAKE]:
            axes.plot(*scaled(phase_points[BAKE]), color=color, linewidth=2, marker="o", label=f"{label}: bake",
                      zorder=3)
    median, low, high = stage.control_points(metric)
    if median:
        axes.fill_between(scaled(low)[0], scaled(low)[1], scaled(high)[1], color=CONTROL_COLOR, alpha=0.15,
                          label="controls: range")
        axes.plot(*scaled(median), color=CONTROL_COLOR, linewidth=1.5, marker="s", markersize=3,
                  label=f"controls: median of {len(stage.hosts(CONTROL))}")
    if stage.baseline_end is not None and stage.bake_start is not None:
        axes.axvspan(stage.baseline_end, stage.bake_start, color="gold", alpha=0.15, label="change, settle")
    if stage.bake_start is not None:
        axes.axvline(stage.bake_start, color="crimson", linestyle=":", linewidth=1.5, label="bake begins")
    axes.set_ylabel(unit.strip())
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.set_title(metric_title(metric, stage.verdict, canaries), fontsize=8, loc="left")


def _canary_series(stage: StageEvidence, metric, canaries: list[str]):
    """(label, color, {phase: points}) per canary host, or for their median when many."""
    if len(canaries) <= MAX_CANARY_LINES:
        for index, host in enumerate(canaries):
            yield (plain(host), COLORS[index % len(COLORS)],
                   {phase: stage.host_points(metric, host, phase) for phase in (BASELINE, BAKE)})
        return
    merged = {}
    for phase in (BASELINE, BAKE):
        by_x: dict[float, list[float]] = {}
        for host in canaries:
            for x, value in stage.host_points(metric, host, phase):
                by_x.setdefault(x, []).append(value)
        merged[phase] = [(x, statistics.median(values)) for x, values in sorted(by_x.items())]
    yield f"canaries: median of {len(canaries)}", COLORS[0], merged
