"""Entry point on a host: one JSON request on stdin, one JSON answer on stdout.

Request:  {"state_dir": "...", "actions": [{"op": "facts"}, {"op": "install", ...}, ...]}
Answer:   {"results": [{"op": ..., "ok": true, "changed": ..., "seconds": ..., ...}, ...]}
Actions run in order; the first failure stops the batch and is the last result.
Long operations (trace) may write lines {"progress": {...}} before the answer.
"""

import json
import sys
import time
import traceback

from . import actions, facts, sockdiag, watch


def _emit(progress: dict) -> None:
    """A progress line ahead of the answer, for operations that report as they go."""
    sys.stdout.write(json.dumps({"progress": progress}) + "\n")
    sys.stdout.flush()


def _trace(action: dict) -> dict:
    from . import tracer  # bcc is only needed here
    try:
        return {"changed": False, **tracer.trace_for(float(action["seconds"]), float(action["interval"]),
                                                     int(action.get("top", 5)), _emit)}
    except tracer.TracerError as exc:
        raise actions.ActionError(f"cannot trace here: {exc}") from None


def _tracer_status() -> dict:
    from . import tracer
    return tracer.bcc_status()


def _watch(state_dir: str, op: str, action: dict) -> dict:
    try:
        if op == "watch_start":
            return watch.start(state_dir, float(action["lifetime"]), action.get("source", "sockets"))
        if op == "watch_run":
            return watch.run(state_dir, float(action["lifetime"]), action.get("source", "sockets"))
        return watch.stop(state_dir)
    except sockdiag.SockDiagError as exc:
        raise actions.ActionError(str(exc)) from None


def _run_one(state_dir: str, action: dict) -> dict:
    op = action.get("op")
    if op == "facts":
        summary = facts.summary(state_dir)
        if action.get("tracer"):  # importing bcc costs a fifth of a second: only when asked
            summary["tracer"] = _tracer_status()
        return {"changed": False, "facts": summary}
    if op == "trace":
        return _trace(action)
    if op == "counters":
        ledger = watch.read(state_dir)
        return {"changed": False, **actions.counters(),
                "by_control": ledger and {name: {"sent": sent, "retransmitted": retransmitted}
                                          for name, (sent, retransmitted) in ledger["totals"].items()}}
    if op in ("watch_start", "watch_run", "watch_stop"):
        return _watch(state_dir, op, action)
    if op == "drift":
        return actions.drift(state_dir)
    if op == "install":
        return actions.install(state_dir, action["name"], action["digest"], action.get("object"))
    if op == "activate":
        return actions.activate(state_dir, action["name"], action["digest"], action.get("default", True),
                                action.get("routes", ()), action.get("ecn", False))
    if op == "deactivate":
        return actions.deactivate(state_dir, action["name"], action.get("digest"), action.get("restore"))
    if op == "lock":
        return actions.lock(state_dir, action["rollout"], action["controller"], float(action["lease"]))
    if op == "unlock":
        return actions.unlock(state_dir, action["rollout"])
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
