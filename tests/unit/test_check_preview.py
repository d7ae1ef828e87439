"""`check` helps: it warns of comparisons the judge can never make significant, says what
would fix them, and with an inventory shows each stage's hosts and control hosts."""

import textwrap
from pathlib import Path

import pytest

from ccrollout import cli, errors
from ccrollout.plan import load_plan
from ccrollout.rollout import controls, sensitivity

REPO = Path(__file__).resolve().parents[2]


def test_the_smallest_p_value_is_one_rank_order_of_all():
    assert sensitivity.smallest_p_value(4, 2) == pytest.approx(1 / 15)
    assert sensitivity.smallest_p_value(4, 3) == pytest.approx(1 / 35)
    assert sensitivity.reaches(3, 3, 0.05)  # exactly 1/20: reached, as the judge counts it
    assert not sensitivity.reaches(4, 2, 0.05)
    assert sensitivity.fewest_reference_intervals(4, 0.05) == 3
    assert sensitivity.fewest_reference_intervals(2, 0.01) == 13  # C(15, 2) = 105
    assert sensitivity.fewest_reference_intervals(1, 1e-9) is None  # beyond any plan


@pytest.fixture
def tree(tmp_path):
    """A plan's world: playbooks/ beside bpf/, and an inventory of six hosts in two groups."""
    (tmp_path / "bpf").mkdir()
    (tmp_path / "bpf" / "ccr_reno.bpf.c").write_text("/* reno */\n")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "hosts.ini").write_text("[web]\nw[1:4] ansible_connection=local\n"
                                        "[db]\nd[1:2] ansible_connection=local\n")
    return tmp_path


def write_plan(tree: Path, **rollout) -> Path:
    fields = {"baseline": "4s", "bake": "8s", "interval": "2s", "stages": "[1, 2, \"100%\"]", **rollout}
    text = textwrap.dedent("""
        algorithms:
          - {name: ccr_reno, source: ../bpf/ccr_reno.bpf.c}
        rollouts:
          - name: reno
            algorithm: ccr_reno
            hosts: web:db
        """).lstrip("\n") + "".join(f"    {key}: {value}\n" for key, value in fields.items())
    path = tree / "playbooks" / "plan.yaml"
    path.write_text(text)
    return path


def check(capsys, *argv) -> tuple[str, list[str]]:
    assert cli.main(["check", *map(str, argv)]) == errors.EXIT_OK
    captured = capsys.readouterr()
    assert all(line.startswith("ccrollout: warning: ") for line in captured.err.splitlines())
    return captured.out, [line.removeprefix("ccrollout: warning: ") for line in captured.err.splitlines()]


def test_a_short_baseline_is_a_warning_with_its_fix_not_a_failure(tree, capsys):
    out, warnings = check(capsys, write_plan(tree))
    assert out.endswith(": ok (1 rollouts, 1 algorithms)\n")
    assert warnings == [
        "rollout reno, every stage: baseline 4s gives 2 intervals of 2s against a 4-interval bake: the smallest "
        "p is 0.067, above significance 0.05, so the judge can compare with its baseline by effect size only; "
        "baseline: 6s (3 intervals) or more reaches 0.05, or bake: 10s (5 intervals) against this baseline"]


def test_a_plan_that_can_reach_its_level_checks_without_a_word(tree, capsys):
    out, warnings = check(capsys, "-i", tree / "hosts.ini", write_plan(tree, baseline="6s"))
    assert warnings == []


def test_the_significance_of_the_plan_is_the_one_checked(tree, capsys):
    _, warnings = check(capsys, write_plan(tree, baseline="6s", health="{significance: 0.01}"))
    assert len(warnings) == 1 and "above significance 0.01" in warnings[0]
    assert "baseline: 10s (5 intervals) or more reaches 0.01" in warnings[0]


def test_too_few_control_hosts_are_a_warning_per_stage_with_a_fix(tree, capsys):
    _, warnings = check(capsys, "-i", tree / "hosts.ini",
                        write_plan(tree, baseline="10s", bake="4s", control=1, health="{min_intervals: 2}"))
    # 2 bake intervals against 1 control host's 2: p >= 1/6; 3 hosts (6 intervals) reach 1/28.
    assert warnings[:2] == [
        f"rollout reno, stage {stage}: 1 control host x 2 bake intervals give 2 against a 2-interval bake: the "
        "smallest p is 0.167, above significance 0.05, so the judge can compare with the control hosts by "
        "effect size only; control: 3 (3 hosts x 2 intervals) reaches 0.05, or bake: 6s (3 intervals) "
        "against 1 control host" for stage in (1, 2)]
    assert len(warnings) == 2  # the baseline (5 intervals against 2) is testable, so no stage is blind


def test_a_stage_where_nothing_can_reach_significance_says_so(tree, capsys):
    _, warnings = check(capsys, "-i", tree / "hosts.ini", write_plan(tree))
    assert warnings[0].startswith("rollout reno, every stage: baseline 4s gives 2 intervals")
    assert warnings[1] == ("rollout reno, stage 3: no comparison can reach significance 0.05 (too short a "
                           "baseline, and too few control hosts or none), so a rise fails a host only when "
                           "every bake interval is above every reference interval")


def test_with_an_inventory_each_stage_shows_its_hosts_and_controls(tree, capsys):
    out, _ = check(capsys, "-i", tree / "hosts.ini", write_plan(tree, baseline="6s", stages="[1, 3]"))
    assert out.splitlines()[1:] == [
        "rollout reno: 6 hosts (web:db) in 3 stages",
        "  stage 1: w1 (control: 2 of w2, w3, w4, d1, d2, drawn by the built object's digest "
        "(`apply --check` names them))",
        "  stage 2: w2, w3, w4 (control: d1, d2)",
        "  stage 3: d1, d2 (no control hosts: no later stage)"]
    # Where the draw does not depend on the seed, it is the one apply makes.
    planned = controls.plan_stages(load_plan(tree / "playbooks" / "plan.yaml").rollouts[0],
                                   ["w1", "w2", "w3", "w4", "d1", "d2"], seed="any")
    assert [chosen for _, chosen in planned[1:]] == [["d1", "d2"], []]


def test_control_zero_is_said(tree, capsys):
    out, warnings = check(capsys, "-i", tree / "hosts.ini", write_plan(tree, baseline="6s", control=0))
    assert "  stage 1: w1 (no control hosts: control: 0)" in out.splitlines()
    assert warnings == []


def test_the_bundled_playbooks_check_without_warnings(capsys):
    for playbook in sorted((REPO / "playbooks").glob("*.yaml")):
        _, warnings = check(capsys, "-i", REPO / "inventory" / "example.ini", playbook)
        assert warnings == [], playbook
