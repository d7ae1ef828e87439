"""Entry point on a host: one JSON request on stdin, one JSON answer on stdout.

Request:  {"state_dir": "...", "actions": [{"op": "facts"}, {"op": "install", ...}, ...]}
Answer:   {"results": [{"op": ..., "ok": true, "changed": ..., "seconds": ..., ...}, ...]}
Actions run in order; the first failure stops the batch and is the last result.
"""

import json
import sys
import time
import traceback

from . import actions, facts


def _run_one(state_dir: str, action: dict) -> dict:
    op = action.get("op")
    if op == "facts":
        return {"changed": False, "facts": facts.summary(state_dir)}
    if op == "counters":
        return {"changed": False, **actions.counters()}
    if op == "drift":
        return actions.drift(state_dir)
    if op == "install":
        return actions.install(state_dir, action["name"], action["digest"], action.get("object"))
    if op == "activate":
        return actions.activate(state_dir, action["name"], action["digest"], action.get("default", True),
                                action.get("routes", ()), action.get("ecn", False))
    if op == "deactivate":
        return actions.deactivate(state_dir, action["name"], action.get("digest"), action.get("restore"))
    if op == "withdraw_all":
        return actions.withdraw_all(state_dir)
    raise actions.ActionError(f"unknown action {op!r}")


def handle(request: dict) -> dict:
    state_dir = request["state_dir"]
    results = []
    for action in request.get("actions", []):
        started = time.monotonic()
        try:
            result = {"op": action.get("op"), "ok": True, **_run_one(state_dir, action)}
        except actions.ActionError as exc:
            result = {"op": action.get("op"), "ok": False, "changed": False,
                      "error": str(exc), "log": exc.log}
        except Exception as exc:  # a bug here must still answer in JSON, never hang the controller
            result = {"op": action.get("op"), "ok": False, "changed": False,
                      "error": f"internal error: {exc!r}", "log": traceback.format_exc()}
        result["seconds"] = round(time.monotonic() - started, 6)
        results.append(result)
        if not result["ok"]:
            break
    return {"results": results}


def main() -> int:
    request = json.load(sys.stdin)
    json.dump(handle(request), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
