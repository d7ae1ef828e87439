"""The plan against hostile input: numbers beyond any bound, paths out of the tree, names
that are Linux's own (from a fuzzing session: each was a traceback in check or apply, or
let a plan reach what it should not)."""

import os
import re
from pathlib import Path

import pytest

from ccrollout.errors import InvalidInput
from ccrollout.inventory import load_inventory
from ccrollout.plan import check_plan_against_inventory, load_plan, plan_schema
from test_plan import VALID, errors_of, tree, write_plan  # noqa: F401 (tree is a fixture)


def test_a_plan_directly_under_the_root_keeps_to_its_own_directory(tmp_path):
    import tempfile
    from ccrollout.diagnostics import load_marked_yaml
    from ccrollout.plan import _PlanReader
    with tempfile.NamedTemporaryFile("w", dir="/tmp", suffix=".yaml") as plan:
        plan.write(VALID.replace("../bpf/ccr_reno.bpf.c", "../etc/passwd").replace(', "-Iinclude"', ""))
        plan.flush()
        (line,) = errors_of(Path(plan.name))
    assert "algorithms[0].source: '../etc/passwd' resolves to /etc/passwd, outside /tmp" in line
    in_root = _PlanReader("/plan.yaml", Path("/plan.yaml"), load_marked_yaml(VALID))
    assert in_root.resolve("etc/passwd") == (None, "a plan in / may not name files; move it into a directory "
                                                   "of its own")
    deep = _PlanReader("p", tmp_path / "playbooks" / "plan.yaml", load_marked_yaml(VALID))
    assert deep.containment_root() == Path(os.path.realpath(tmp_path))


@pytest.mark.parametrize("name", ["reno", "cubic", "bbr", "dctcp", "vegas", "westwood", "htcp", "hybla",
                                  "illinois", "scalable", "lp", "veno", "yeah", "bic", "cdg", "nv", "highspeed"])
def test_the_names_of_linuxs_own_controls_are_refused(tree, name):
    path = write_plan(tree, VALID.replace("ccr_reno", name))
    lines = errors_of(path)
    assert f"{path}:3:11: algorithms[0].name: {name!r} is the name of a congestion control of Linux's own; " \
           f"give this one a name of its own (e.g. ccr_{name})" in lines


def _rollout_line(text: str) -> str:
    return VALID.replace("    bake: 10s\n", f"    bake: 10s\n{text}")


@pytest.mark.parametrize("change, where, expected", [
    (("    bake: 10s\n", "    bake: 1" + "0" * 400 + "\n"), "12:11: rollouts[0].bake", "of at most a week"),
    (("    interval: 2s\n", '    interval: "1' + "0" * 400 + '"\n'), "13:15: rollouts[0].interval", "of at most a week"),
    (("    stages: [1, \"50%\", \"100%\"]\n", '    stages: ["' + "1" * 5000 + '%"]\n'), "10:14: rollouts[0].stages[0]",
     "a whole percentage"),
    (("    max_fail_percentage: 0\n", "    max_fail_percentage: .nan\n"), "rollouts[0].max_fail_percentage",
     "got the number nan"),
    (("      on_inconclusive: fail\n", "      on_inconclusive: fail\n      significance: .nan\n"),
     "rollouts[0].health.significance", "got the number nan"),
    (("      on_inconclusive: fail\n", "      on_inconclusive: extend\n      max_extend: .inf\n"),
     "rollouts[0].health.max_extend", "got the number inf"),
    (("    bake: 10s\n", "    bake: 10s\n    settle: 9999999999s\n"), "rollouts[0].settle",
     "'9999999999s' is 2777777h46m39s, longer than a week (168h)"),
    (("    bake: 10s\n", "    bake: .inf\n"), "rollouts[0].bake", "got the number inf"),
], ids=["400-digit bake", "400-digit interval", "5000-digit stage", "nan max_fail_percentage",
        "nan significance", "infinite max_extend", "settle of 317 years", "infinite bake"])
def test_numbers_beyond_bounds_are_invalid_input_with_their_place(tree, change, where, expected):
    path = write_plan(tree, VALID.replace(*change))
    lines = errors_of(path)
    assert any(where in line and expected in line for line in lines), lines
    assert all(len(line) < 400 for line in lines)


def test_a_stage_lasts_at_most_a_week_and_samples_at_most_100000_times(tree):
    lines = errors_of(write_plan(tree, VALID.replace("    baseline: 5s\n", "    baseline: 100h\n")
                                 .replace("    bake: 10s\n", "    bake: 100h\n").replace("interval: 2s", "interval: 10s")))
    assert any("rollouts[0].bake: a stage could last 200h (baseline 100h + bake 100h); at most a week" in line
               for line in lines), lines
    (line,) = errors_of(write_plan(tree, VALID.replace("    bake: 10s\n", "    bake: 28h\n")
                                   .replace("interval: 2s", "interval: 1s")))
    assert "rollouts[0].interval: sampling every 1s takes 100800 samples of each host in a stage; at most 100000" in line
    assert "100000 times" in plan_schema()["$defs"]["rollout"]["properties"]["interval"]["description"]


def test_a_host_pattern_subscript_of_thousands_of_digits_is_no_traceback(tree, tmp_path):
    path = write_plan(tree, VALID.replace("    hosts: lab\n", f"    hosts: \"lab[{'1' * 5000}]\"\n"))
    (line,) = errors_of(path)
    assert "rollouts[0].hosts" in line and "at most 1000 characters" in line
    (tmp_path / "inv").write_text("[lab]\nh1\n")
    inventory = load_inventory([str(tmp_path / "inv")])
    assert inventory.select(f"lab[{'1' * 5000}]") == []


def test_at_most_256_routes_as_a_host_takes_in_one_request(tree):
    routes = ", ".join(f'"10.{i // 256}.{i % 256}.0/24"' for i in range(257))
    (line,) = errors_of(write_plan(tree, VALID.replace("    on_failure: rollback\n",
                                                       f"    on_failure: rollback\n    scope: {{routes: [{routes}]}}\n")))
    assert "rollouts[0].scope.routes: expected at most 256 items, got 257" in line


def test_a_long_value_is_named_not_repeated(tree):
    (line,) = errors_of(write_plan(tree, VALID.replace("    hosts: lab\n", f"    hosts: {'x' * 5000}\n")))
    assert "is 5000 characters, at most 1000 are allowed" in line and len(line) < 400


def test_a_backtracking_host_pattern_is_reported_at_its_line(tree, tmp_path, monkeypatch):
    from ccrollout.inventory import patterns
    monkeypatch.setattr(patterns, "MATCH_SECONDS", 0.2)
    (tmp_path / "inv").write_text("a" * 40 + "b\n")
    plan = load_plan(write_plan(tree, VALID.replace("    hosts: lab\n", "    hosts: '~(a+)+$'\n")))
    with pytest.raises(InvalidInput) as caught:
        check_plan_against_inventory(plan, load_inventory([str(tmp_path / "inv")]))
    assert re.match(r".*plan.yaml:9:12: rollouts\[0\].hosts: host pattern '~\(a\+\)\+\$' took more than 0.2s to "
                    r"match 1 name: ", str(caught.value))


def test_the_longest_stage_a_plan_allows_is_one_a_host_accepts(tree):
    """The stage's watcher lives as long as the stage can last (plus a minute), and a claim as
    long as the rest of the rollout: at the plan's bounds both stay within the protocol's."""
    from ccrollout.host import protocol
    from ccrollout.rollout.runner import Runner
    plan = load_plan(write_plan(tree, VALID.replace("    baseline: 5s\n", "    baseline: 1s\n")
                                .replace("    bake: 10s\n", "    bake: 604798s\n    settle: 1s\n")
                                .replace("interval: 2s", "interval: 7s")))
    (rollout,) = plan.rollouts
    assert rollout.schedule.longest_stage == 604800
    protocol.action("watch_start", lifetime=rollout.schedule.longest_stage + 60)
    protocol.action("lock", rollout="r-1", controller="c:1", lease=Runner.lease(None, rollout, 1000))
