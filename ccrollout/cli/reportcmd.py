"""`ccrollout report`: draw a rollout's evidence from the journal, as PNG or HTML."""

from pathlib import Path

from .. import errors
from ..errors import UserError
from .common import open_journal
from .rollouts import named_rollout

KINDS = {".png": "png", ".html": "html", ".htm": "html"}


def cmd_report(args) -> int:
    from .. import report, story
    from ..host.osutil import write_atomically
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() not in KINDS:
        raise UserError(f"report -o {args.output}: give a file ending in .png or .html", errors.EXIT_USAGE)
    journal = open_journal(args.journal, "read")  # a --journal that does not exist is an error, never made
    recorded = named_rollout(journal, args.rollout)
    events = journal.events(recorded["id"])
    journal.close()
    output = output or Path(f"report-{recorded['id']}.html")
    told = story.tell(recorded, [event for event in events if event["kind"] in story.STORY_KINDS])
    heading = f"rollout {recorded['id']}: {recorded['algorithm']} ({recorded['status']})"
    kind = KINDS[output.suffix.lower()]
    drawn = report.render(kind, heading + ("\n" + told.text if kind == "png" else ""), told.text, events)
    try:
        write_atomically(output, drawn, mode=0o644)
    except OSError as exc:
        raise UserError(f"report -o {output}: cannot be written: {exc.strerror or exc}", errors.EXIT_USAGE) from None
    print(output)
    return errors.EXIT_OK
