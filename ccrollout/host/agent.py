"""The host agent: lives for one controller session, answering JSON-line messages.

Started once per host per command over one SSH channel, it reads one message a line
from stdin and answers each with one line on stdout (see protocol.py). It ends when
stdin closes: when the controller is done, or dies and its SSH connection goes.
Every action is checked against the protocol before anything runs; a request that
does not follow it gets a refusal in JSON and changes nothing.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from typing import Any, Callable, Dict, Optional

from . import actions, boot, facts, protocol, restore, sockdiag, state, watch

Emit = Callable[[Dict[str, Any]], None]


def _facts(state_dir: str, args: dict, emit: Emit) -> dict:
    summary = facts.summary(state_dir)
    try:
        summary["boot"] = boot.status(state_dir, state.load(state_dir))
    except state.StateError:
        summary["boot"] = None  # the actions that need the record say what is wrong with it
    if args["tracer"]:  # importing bcc costs a fifth of a second: only when asked
        from . import tracer
        summary["tracer"] = tracer.bcc_status()
    return {"changed": False, "facts": summary}


def _counters(state_dir: str, args: dict, emit: Emit) -> dict:
    ledger = watch.read(state_dir)
    return {"changed": False, **actions.counters(),
            "by_control": ledger and {name: protocol.control_figures(totals, ledger["rtt"].get(name),
                                                                     ledger["connections"].get(name, 0))
                                      for name, totals in ledger["totals"].items()}}


def _trace(state_dir: str, args: dict, emit: Emit) -> dict:
    from . import tracer  # bcc is only needed here
    try:
        return {"changed": False, **tracer.trace_for(args["seconds"], args["interval"], args["top"], emit)}
    except tracer.TracerError as exc:
        raise actions.ActionError(f"cannot trace here: {exc}") from None


def _watching(call: Callable[..., dict]) -> Callable[[str, dict, Emit], dict]:
    def run(state_dir: str, args: dict, emit: Emit) -> dict:
        try:
            return call(state_dir, **args)
        except sockdiag.SockDiagError as exc:
            raise actions.ActionError(str(exc)) from None
    return run


def _plain(call: Callable[..., dict]) -> Callable[[str, dict, Emit], dict]:
    """An action whose arguments are exactly its protocol fields."""
    return lambda state_dir, args, emit: call(state_dir, **args)


HANDLERS: Dict[str, Callable[[str, dict, Emit], dict]] = {
    "facts": _facts,
    "counters": _counters,
    "trace": _trace,
    "drift": lambda state_dir, args, emit: actions.drift(state_dir),
    "install": lambda state_dir, args, emit: actions.install(state_dir, args["name"], args["digest"], args["object"],
                                                             args["map"]),
    "activate": lambda state_dir, args, emit: actions.activate(state_dir, args["name"], args["digest"], args["default"],
                                                               args["routes"], args["ecn"], args["persist"]),
    "persist": lambda state_dir, args, emit: boot.persist(state_dir, args["boot_unit"]),
    "restore": _plain(restore.restore),
    "vmlinux": lambda state_dir, args, emit: {"changed": False, "text": facts.vmlinux_header(),
                                              "kernel": platform.release()},
    "deactivate": _plain(actions.deactivate),
    "withdraw_all": lambda state_dir, args, emit: actions.withdraw_all(state_dir),
    "lock": lambda state_dir, args, emit: actions.lock(state_dir, args["rollout"], args["controller"], args["lease"]),
    "unlock": _plain(actions.unlock),
    "watch_start": _watching(watch.start),
    "watch_stop": _watching(lambda state_dir: watch.stop(state_dir)),
}
assert set(HANDLERS) == set(protocol.OPERATIONS), "every operation has exactly one handler"


def _refusal(op: Any, error: str, log: str = "") -> dict:
    return {"op": op if isinstance(op, str) else None, "ok": False, "changed": False, "error": error, "log": log}


def run_action(state_dir: str, raw: Any, emit: Emit) -> dict:
    started = time.monotonic()
    op = raw.get("op") if isinstance(raw, dict) else None
    try:
        operation, args = protocol.parse_action(raw)
        result = {"op": operation.name, "ok": True, **HANDLERS[operation.name](state_dir, args, emit)}
    except protocol.ProtocolError as exc:
        result = _refusal(op, f"refused: {exc}")
    except actions.ActionError as exc:
        result = _refusal(op, str(exc), exc.log)
    except Exception as exc:  # a bug here must still answer in JSON, never hang the controller
        result = _refusal(op, f"internal error: {exc!r}", traceback.format_exc())
    result["seconds"] = round(time.monotonic() - started, 6)
    return result


def handle(raw: Any, emit: Optional[Emit] = None) -> dict:
    """One message: its actions in order, stopping at the first that fails."""
    try:
        message = protocol.parse_message(raw)
    except protocol.ProtocolError as exc:
        message_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), int) else None
        return {"id": message_id, "results": [_refusal(None, f"refused: {exc}")]}
    results = []
    for raw_action in message.actions:
        result = run_action(message.state_dir, raw_action, emit or (lambda progress: None))
        results.append(result)
        if not result["ok"]:
            break
    return {"id": message.id, "results": results}


def _write_line(document: dict) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def serve(stream=None) -> int:
    """Answer messages until stdin closes."""
    stream = stream or sys.stdin.buffer
    while True:
        line = stream.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError:
            _write_line({"id": None, "results": [_refusal(None, "refused: a message must be one line of JSON")]})
            continue
        message_id = raw.get("id") if isinstance(raw, dict) else None

        def emit(progress: dict, message_id=message_id) -> None:
            _write_line({"id": message_id, "progress": progress})
        _write_line(handle(raw, emit))
