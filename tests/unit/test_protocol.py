"""The host protocol: every request is checked before anything runs; a bad one is refused in
JSON and changes nothing. Run in-process through the agent's own handler, without root."""

import json
import os

import pytest

from ccrollout import fleet
from ccrollout.host import agent, protocol


def call(state_dir, *actions):
    return agent.handle({"id": 7, "state_dir": str(state_dir), "actions": list(actions)})


@pytest.mark.parametrize("action, refusal", [
    ({"op": "deactivate", "name": "../../../../victim"}, "name must be a congestion-control name"),
    ({"op": "deactivate", "name": "/etc"}, "name must be a congestion-control name"),
    ({"op": "deactivate", "name": "reno", "restore": "x; reboot"}, "restore must be a congestion-control name"),
    ({"op": "install", "name": "ccr_reno", "digest": "abc"}, "digest must be a sha256 digest"),
    ({"op": "lock", "rollout": "r1", "controller": "c", "lease": "inf"}, "lease must be a number"),
    ({"op": "lock", "rollout": "r1", "controller": "c", "lease": float("inf")}, "lease must be a finite number"),
    ({"op": "lock", "rollout": "r1", "controller": "c", "lease": float("nan")}, "lease must be a finite number"),
    ({"op": "watch_start", "lifetime": 1e12}, "lifetime must be a finite number"),
    ({"op": "activate", "name": "x", "digest": "a" * 64, "routes": ["10.0.0.0/33"]}, "is not an IP prefix"),
    ({"op": "activate", "name": "x", "digest": "a" * 64, "default": "yes"}, "default must be true or false"),
    ({"op": "facts", "surprise": 1}, "unknown field 'surprise'"),
    ({"op": "reboot"}, "unknown operation 'reboot'"),
    ("facts", "an action must be an object"),
])
def test_a_malformed_action_is_refused_and_runs_nothing(tmp_path, action, refusal):
    victim = tmp_path / "victim"
    victim.mkdir()
    answer = call(tmp_path / "state", action)
    (result,) = answer["results"]
    assert answer["id"] == 7 and result["ok"] is False and refusal in result["error"]
    assert result["error"].startswith("refused: ")
    assert victim.is_dir() and not (tmp_path / "state").exists()


@pytest.mark.parametrize("message, refusal", [
    ([{"op": "facts"}], "a message must be a JSON object"),
    ({"actions": [{"op": "facts"}]}, "state_dir must be an absolute"),
    ({"state_dir": "relative/dir", "actions": []}, "state_dir must be an absolute"),
    ({"state_dir": "/var/lib/../../etc", "actions": []}, "state_dir must be an absolute"),
    ({"state_dir": "/var/lib/ccrollout", "actions": "facts"}, "actions must be a list"),
])
def test_a_malformed_message_is_refused(message, refusal):
    (result,) = agent.handle(message)["results"]
    assert result["ok"] is False and refusal in result["error"]


def test_the_first_failure_ends_the_message(tmp_path):
    answer = call(tmp_path, {"op": "reboot"}, {"op": "facts"})
    assert len(answer["results"]) == 1


def test_the_controller_builds_only_what_the_host_accepts():
    with pytest.raises(protocol.ProtocolError, match="name must be"):
        protocol.action("deactivate", name="../x")
    built = protocol.action("activate", name="ccr_reno", digest="0" * 64)
    assert protocol.parse_action(built)[1] == {"name": "ccr_reno", "digest": "0" * 64, "default": True,
                                               "routes": [], "ecn": False, "persist": True}


def test_every_operation_has_a_handler_and_an_answer_shape():
    assert set(agent.HANDLERS) == set(protocol.OPERATIONS)
    answer = protocol.answer({"op": "counters", "ok": True, "time": 1.5, "counters": {"OutSegs": 3},
                              "by_control": None, "seconds": 0.01})
    assert (answer.time, answer.counters, answer.by_control) == (1.5, {"OutSegs": 3}, None)
    with pytest.raises(AttributeError):
        answer.facts  # noqa: B018  (not a counters answer's field)


def test_the_agent_serves_json_lines_until_stdin_closes(tmp_path, capsys):
    import io
    lines = [json.dumps({"id": n, "state_dir": str(tmp_path), "actions": [{"op": "watch_stop"}]}) for n in (1, 2)]
    assert agent.serve(io.BytesIO(("\n".join(lines) + "\nnot json\n").encode())) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["id"] for a in answers] == [1, 2, None]
    assert answers[0]["results"][0]["ok"] and not answers[2]["results"][0]["ok"]


def test_a_local_session_speaks_the_same_protocol(tmp_path):
    session = fleet.LocalSession(fleet.Target("here", "localhost", state_dir=str(tmp_path)), agent.handle)
    (answer,) = session.call([protocol.action("watch_stop")])
    assert answer.ok and answer.stopped is False
    (facts,) = session.call([protocol.action("facts")])
    assert facts.ok and "problems" in facts.facts
    if os.geteuid() != 0:
        assert any("root" in problem for problem in facts.facts["problems"])
