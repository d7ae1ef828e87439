"""`ccrollout report`: a rollout's evidence, drawn. evidence.py reads the journal's events,
summary.py words the verdict, figure.py draws (matplotlib, Agg), page.py writes the HTML."""

from .evidence import StageEvidence, stages

__all__ = ["StageEvidence", "render", "stages"]


def render(kind: str, heading: str, story: str, events: list[dict]) -> bytes:
    """The report of a rollout's EVENTS as KIND ("png": every stage stacked in one image;
    "html": one page, a PNG per stage embedded, with the verdicts' reasons and figures)."""
    from . import figure, page  # matplotlib loads only when a report is drawn
    evidence = stages(events)
    if kind == "png":
        return figure.png(figure.draw_rollout(evidence, heading))
    images = [figure.png(figure.draw_one_stage(stage)) for stage in evidence]
    return page.page(heading, story, evidence, images).encode()
