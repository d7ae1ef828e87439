"""The host's own record (host/state.py): read as earlier versions wrote it, written so that
they can still read it, and refused in one sentence when it is not a record at all."""

import json
import os
import stat

import pytest

from ccrollout.host import agent
from ccrollout.host import facts, layout, state
from ccrollout.host.state import Claim, ControlRecord, HostState

# What the host side wrote up to now (both "digest" and "digests"; the last of "digests" counted).
WRITTEN_BEFORE = {
    "controls": {
        "ccr_reno": {"previous_default": "cubic", "digests": ["a" * 64, "b" * 64], "digest": "a" * 64,
                     "since": 1764000000.5, "routes": {"10.0.0.0/24": {"previous": None},
                                                       "10.1.0.0/24": {"previous": "10.1.0.0/24 via 10.0.0.1 dev eth0"}},
                     "default": False, "link_id": 7, "previous_ecn": 2, "allowed_added": True},
        "ccr_eager": {"previous_default": "ccr_reno", "digests": ["c" * 64], "digest": "c" * 64,
                      "since": 1764000001, "routes": {}, "default": True, "link_id": None},
    },
    "lock": {"rollout": "r1", "controller": "controller:42", "expires": 1764000600.0},
}


def write_record(state_dir, document) -> None:
    os.makedirs(state_dir, exist_ok=True)
    with open(layout.state_file(str(state_dir)), "w") as handle:
        handle.write(document if isinstance(document, str) else json.dumps(document))


def test_a_record_written_before_is_read_whole(tmp_path):
    write_record(tmp_path, WRITTEN_BEFORE)
    host = state.load(str(tmp_path))
    reno = host.controls["ccr_reno"]
    assert reno == ControlRecord(digests=["a" * 64, "b" * 64], previous_default="cubic", since=1764000000.5,
                                 default=False, link_id=7, previous_ecn=2, allowed_added=True,
                                 routes={"10.0.0.0/24": None, "10.1.0.0/24": "10.1.0.0/24 via 10.0.0.1 dev eth0"})
    assert reno.digest == "b" * 64   # the last of "digests", as before
    assert host.controls["ccr_eager"].previous_ecn is None and not host.controls["ccr_eager"].allowed_added
    assert host.lock == Claim("r1", "controller:42", 1764000600.0)


def test_a_record_before_0_2_kept_one_version(tmp_path):
    write_record(tmp_path, {"controls": {"ccr_reno": {"previous_default": "cubic", "digest": "a" * 64,
                                                      "since": 1.0, "routes": {}}}})
    record = state.load(str(tmp_path)).controls["ccr_reno"]
    assert record.digests == ["a" * 64] and record.default and record.link_id is None


def test_saving_writes_what_earlier_versions_read(tmp_path):
    write_record(tmp_path, WRITTEN_BEFORE)
    state.save(str(tmp_path), state.load(str(tmp_path)))
    path = layout.state_file(str(tmp_path))
    written = json.loads(open(path).read())
    expected = json.loads(json.dumps(WRITTEN_BEFORE))
    for record in expected["controls"].values():
        del record["digest"]   # redundant with the last of "digests", which earlier versions read first
    assert written == expected
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert state.load(str(tmp_path)) == state.load(str(tmp_path))


def test_no_record_yet_is_an_empty_one(tmp_path):
    assert state.load(str(tmp_path / "nowhere")) == HostState()
    state.save(str(tmp_path / "new"), HostState(controls={"x": ControlRecord(digests=["d" * 64])}))
    assert state.load(str(tmp_path / "new")).controls["x"].digest == "d" * 64


@pytest.mark.parametrize("document, expected", [
    ("{not json", "is not JSON"),
    ([], "record is \\[\\], not an object"),
    ({"controls": []}, "record.controls is \\[\\], not an object"),
    ({"controls": {"x": {"digests": "abc"}}}, "record.controls\\['x'\\].digests is \"abc\", not a list of strings"),
    ({"controls": {"x": {"since": "yesterday"}}}, "since is \"yesterday\", not a number or null"),
    ({"controls": {"x": {"default": 1}}}, "default is 1, not true or false"),
    ({"controls": {"x": {"routes": {"10.0.0.0/24": "via"}}}}, "routes\\['10.0.0.0/24'\\] is \"via\", not an object"),
    ({"controls": {"x": {"flags": 1}}}, "has 'flags', unknown to this version"),
    ({"controls": {}, "lock": {"rollout": "r1"}}, "record.lock has no 'controller'"),
])
def test_a_record_of_another_shape_is_refused_in_one_sentence(tmp_path, document, expected):
    write_record(tmp_path, document)
    with pytest.raises(state.StateError, match=expected):
        state.load(str(tmp_path))


def test_an_action_on_a_broken_record_answers_with_the_reason_and_facts_still_answer(tmp_path):
    write_record(tmp_path, {"controls": {"x": {"digests": 5}}})
    answer = agent.handle({"state_dir": str(tmp_path), "actions": [
        {"op": "lock", "rollout": "r1", "controller": "c:1", "lease": 60}]})
    (result,) = answer["results"]
    assert not result["ok"] and "not one this version reads" in result["error"]
    assert "internal error" not in result["error"] and "nothing was changed" in result["error"]
    assert facts.records(str(tmp_path)) == {}


@pytest.mark.parametrize("record", [
    {"controls": {"../../../../victim": {"digests": []}}},
    {"controls": {"/etc": {"digests": []}}},
    {"controls": {"ccr_reno": {"digests": ["../x"]}}},
    {"controls": {"ccr_reno": {"digests": [], "previous_default": "x; reboot"}}},
    {"controls": {}, "lock": {"rollout": "r", "controller": "c", "expires": float("inf")}},
    {"controls": {}, "lock": {"rollout": "r", "controller": "c", "expires": float("nan")}},
])
def test_a_record_naming_paths_or_endless_leases_is_refused(tmp_path, record):
    (tmp_path / "state.json").write_text(json.dumps(record))
    with pytest.raises(state.StateError, match="not one this version reads"):
        state.load(str(tmp_path))


def test_withdraw_all_never_reaches_outside_its_roots(tmp_path):
    from ccrollout.host import actions
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "state.json").write_text(json.dumps({"controls": {"../../../../" + str(victim): {"digests": []}}}))
    with pytest.raises(actions.ActionError):
        actions.withdraw_all(str(tmp_path))
    assert victim.is_dir()
