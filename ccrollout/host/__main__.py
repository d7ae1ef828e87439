"""Entry point on a host: the agent, answering JSON-line messages until stdin closes; or,
as `python3 ZIP restore [--phase all|controls|routes] STATE_DIR`, the restore a boot unit
runs (host/restore.py), sent through the agent as one checked request."""

import json
import sys

from . import agent, protocol

USAGE = "usage: python3 ccrollout-host.pyz restore [--phase all|controls|routes] STATE_DIR"


def restore_main(argv: list) -> int:
    """One restore action; its answer on stdout; 0 when everything came back."""
    phase = "all"
    if len(argv) == 3 and argv[0] == "--phase":
        phase, argv = argv[1], argv[2:]
    if len(argv) != 1:
        sys.stderr.write(USAGE + "\n")
        return 2
    answer = agent.handle(protocol.message(0, argv[0], [{"op": "restore", "phase": phase}]))
    (result,) = answer["results"]
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["ok"] and not result.get("problems") else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["restore"]:
        sys.exit(restore_main(sys.argv[2:]))
    sys.exit(agent.serve())
