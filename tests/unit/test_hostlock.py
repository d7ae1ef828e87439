"""A host's own claim: one rollout at a time even across controllers with separate journals,
and never forever: a claim that is not renewed runs out."""

import time

import pytest

from ccrollout.host import actions, state


def test_a_claim_keeps_other_rollouts_out_until_it_is_released(tmp_path):
    actions.lock(str(tmp_path), "r1", "controller-a:1", 60)
    assert actions.lock(str(tmp_path), "r1", "controller-a:1", 60)["renewed"]
    with pytest.raises(actions.ActionError, match="locked by rollout r1 of controller-a:1"):
        actions.lock(str(tmp_path), "r2", "controller-b:2", 60)
    actions.unlock(str(tmp_path), "r2")  # not its claim: nothing happens
    with pytest.raises(actions.ActionError):
        actions.lock(str(tmp_path), "r2", "controller-b:2", 60)
    actions.unlock(str(tmp_path), "r1")
    actions.lock(str(tmp_path), "r2", "controller-b:2", 60)


def test_a_claim_nobody_renews_runs_out(tmp_path):
    actions.lock(str(tmp_path), "r1", "dead-controller:1", 0.05)
    time.sleep(0.1)
    assert not actions.lock(str(tmp_path), "r2", "controller-b:2", 60)["renewed"]
    assert state.load(str(tmp_path)).lock.rollout == "r2"
