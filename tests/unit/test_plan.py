"""The plan language: schema, errors with positions, semantics, stages."""

import copy
import json
import re
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from ccrollout import units
from ccrollout.errors import EXIT_INVALID_INPUT, InvalidInput
from ccrollout.rollout.judge import Limits
from ccrollout.schedule import Schedule
from ccrollout.inventory import load_inventory
from ccrollout.plan import (
    SCHEMA_PATH,
    Scope,
    Stage,
    check_plan_against_inventory,
    load_plan,
    plan_schema,
    stage_batches,
)
from fuzzgen import value_paths

REPO = Path(__file__).resolve().parents[2]

VALID = """
version: 1
algorithms:
  - name: ccr_reno
    source: ../bpf/ccr_reno.bpf.c
    cflags: ["-DFOO=1", "-UBAR", "-Iinclude"]
rollouts:
  - name: reno-to-lab
    algorithm: ccr_reno
    hosts: lab
    stages: [1, "50%", "100%"]
    baseline: 5s
    bake: 10s
    interval: 2s
    health:
      max_retransmit_ratio: "5%"
      max_increase: "2%"
      min_segments: 1000
      on_inconclusive: fail
    max_fail_percentage: 0
    on_failure: rollback
"""


@pytest.fixture
def tree(tmp_path):
    """A repository-like tree: playbooks/ for plans, bpf/ for sources."""
    (tmp_path / "bpf").mkdir()
    (tmp_path / "bpf" / "ccr_reno.bpf.c").write_text("/* reno */\n")
    (tmp_path / "playbooks" / "include").mkdir(parents=True)
    return tmp_path


def write_plan(tree: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tree / "playbooks" / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_plan(path)
    assert caught.value.exit_code == EXIT_INVALID_INPUT
    return str(caught.value).splitlines()


# -- valid plans --------------------------------------------------------------------------------


def test_valid_plan(tree):
    plan = load_plan(write_plan(tree, VALID))
    algorithm = plan.algorithms["ccr_reno"]
    assert algorithm.source == tree / "bpf" / "ccr_reno.bpf.c"
    assert algorithm.source.is_absolute()
    assert algorithm.cflags == ("-DFOO=1", "-UBAR", f"-I{tree / 'playbooks' / 'include'}")
    (rollout,) = plan.rollouts
    assert rollout.algorithm is algorithm
    assert rollout.hosts == "lab"
    assert rollout.stages == (Stage(1), Stage(50, percent=True), Stage(100, percent=True))
    assert (rollout.schedule.baseline, rollout.schedule.bake, rollout.schedule.interval) == (5, 10, 2)
    assert rollout.limits == Limits(0.05, 0.02, 1000, on_inconclusive="fail")
    assert rollout.limits.max_fail_fraction == 0.0
    assert rollout.on_failure == "rollback"
    assert plan.path.is_absolute() and plan.version == 1


def test_defaults_come_from_the_schema(tree):
    plan = load_plan(write_plan(tree, """
        algorithms: [{name: ccr_reno, source: ../bpf/ccr_reno.bpf.c}]
        rollouts:
          - {name: r, algorithm: ccr_reno, hosts: all, stages: ["100%"], bake: 1m, max_fail_percentage: "25%"}
    """))
    rollout = plan.rollouts[0]
    assert rollout.schedule == Schedule(baseline=60, settle=0, bake=60, interval=1.0, max_extend=0)
    assert rollout.limits == Limits(0.05, 0.02, 1000, max_fail_fraction=0.25, on_inconclusive="fail")
    assert rollout.health_source == "sockets" and rollout.control is None
    assert rollout.on_failure == "rollback"
    assert plan.algorithms["ccr_reno"].cflags == ()
    assert rollout.persist is True  # hosts restore the control at boot unless the plan says not
    assert plan.algorithms["ccr_reno"].root == tree  # what its source may include from


def test_a_rollout_may_opt_out_of_the_restore_at_boot(tree):
    plan = load_plan(write_plan(tree, """
        algorithms: [{name: ccr_reno, source: ../bpf/ccr_reno.bpf.c}]
        rollouts:
          - {name: r, algorithm: ccr_reno, hosts: all, stages: ["100%"], bake: 1m, persist: false}
    """))
    assert plan.rollouts[0].persist is False
    assert any("persist: expected true or false" in line for line in errors_of(write_plan(tree, """
        algorithms: [{name: ccr_reno, source: ../bpf/ccr_reno.bpf.c}]
        rollouts:
          - {name: r, algorithm: ccr_reno, hosts: all, stages: ["100%"], bake: 1m, persist: sometimes}
    """, "bad.yaml")))


@pytest.mark.parametrize("name", ["lab-reno.yaml", "lab-broken.yaml"])
def test_repository_playbooks(name):
    plan = load_plan(REPO / "playbooks" / name)
    (rollout,) = plan.rollouts
    assert rollout.hosts == "lab"
    assert [str(s) for s in rollout.stages] == ["1", "50%", "100%"]
    schedule = rollout.schedule
    assert (schedule.baseline, schedule.settle, schedule.bake, schedule.interval) == (6, 2, 8, 2)
    assert rollout.limits == Limits(0.15, 0.10, 500, on_inconclusive="fail")
    assert rollout.on_failure == "rollback" and rollout.limits.max_fail_fraction == 0
    assert rollout.algorithm.source.parent.name in ("bpf", "fixtures")


# -- the schema ----------------------------------------------------------------------------------


def _object_schemas(node):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield node
        for value in node.values():
            yield from _object_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _object_schemas(value)


def test_schema_is_valid_2020_12_and_documents_every_property():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    objects = list(_object_schemas(schema))
    assert len(objects) >= 4
    for node in objects:
        assert node.get("additionalProperties") is False, node.get("description")
        for name, prop in node["properties"].items():
            assert prop.get("description"), f"property {name!r} has no description"


def test_schema_patterns_agree_with_units():
    defs = plan_schema()["$defs"]
    assert defs["duration"]["pattern"] == units.DURATION_PATTERN
    assert defs["percentage"]["pattern"] == units.PERCENT_PATTERN


# -- errors ------------------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_and_column(tree):
    path = write_plan(tree, "rollouts:\n  - name: [unclosed\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:3:1: YAML syntax error")


def test_misspelt_key_is_suggested(tree):
    path = write_plan(tree, VALID.replace("    stages:", "    stagse:"))
    lines = errors_of(path)
    assert f"{path}:10:5: rollouts[0].stagse: unknown key 'stagse'; did you mean 'stages'?" in lines
    assert f"{path}:7:5: rollouts[0]: missing required key 'stages' (Batch sizes, as Ansible's `serial`)" in lines


def test_unknown_key_without_near_miss_lists_allowed_keys(tree):
    path = write_plan(tree, VALID.replace("  - name: ccr_reno\n", "  - name: ccr_reno\n    zzz: 1\n"))
    (line,) = errors_of(path)
    assert line == f"{path}:4:5: algorithms[0].zzz: unknown key 'zzz'; allowed keys: name, source, cflags, ecn"


def test_wrong_type(tree):
    path = write_plan(tree, VALID.replace('stages: [1, "50%", "100%"]', 'stages: [1, "50%", [2]]'))
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:10:24: rollouts[0].stages[2]: expected a batch size")
    assert line.endswith("got a list")


def test_unknown_algorithm_is_suggested(tree):
    path = write_plan(tree, VALID.replace("algorithm: ccr_reno", "algorithm: ccr_rneo"))
    (line,) = errors_of(path)
    assert line == f"{path}:8:16: rollouts[0].algorithm: unknown algorithm 'ccr_rneo'; did you mean 'ccr_reno'?"


def test_kernel_name_too_long_or_bad_characters(tree):
    path = write_plan(tree, VALID.replace("  - name: ccr_reno", "  - name: ccr_reno_is_too_long")
                                 .replace("algorithm: ccr_reno", "algorithm: ccr-reno"))
    lines = errors_of(path)
    assert lines[0].startswith(f"{path}:3:11: algorithms[0].name: 'ccr_reno_is_too_long' is 20 characters, "
                               "at most 15 are allowed")
    assert "TCP_CA_NAME_MAX" in lines[0]
    # the rollout names an algorithm that does not exist either
    assert lines[1].startswith(f"{path}:8:16: rollouts[0].algorithm: unknown algorithm 'ccr-reno'")
    bad_chars = write_plan(tree, VALID.replace("  - name: ccr_reno", "  - name: ccr-reno"), "chars.yaml")
    assert "expected a kernel congestion-control name" in errors_of(bad_chars)[0]


def test_patterns_match_the_whole_string(tree):
    # JSON Schema's '$' is the end of the string; Python's also matches before a final newline.
    path = write_plan(tree, VALID.replace("  - name: ccr_reno", '  - name: "ccr_reno\\n"')
                                 .replace('[1, "50%", "100%"]', '[1, "50%\\n"]'))
    lines = errors_of(path)
    assert lines[0].startswith(f"{path}:3:11: algorithms[0].name: expected a kernel congestion-control name")
    assert lines[-1].startswith(f"{path}:10:17: rollouts[0].stages[1]: expected a batch size")


def test_missing_source(tree):
    path = write_plan(tree, VALID.replace("ccr_reno.bpf.c", "ccr_nope.bpf.c"))
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:4:13: algorithms[0].source: file not found: '../bpf/ccr_nope.bpf.c'")


@pytest.mark.parametrize("source, problem", [
    ("/etc/passwd", "must be a path relative to the plan's directory"),
    ("../../etc/passwd", "outside"),
    ("../bpf/../../x.c", "outside"),
])
def test_sources_must_stay_in_the_tree(tree, source, problem):
    path = write_plan(tree, VALID.replace("../bpf/ccr_reno.bpf.c", source))
    (line,) = errors_of(path)
    assert problem in line and line.startswith(f"{path}:4:13: algorithms[0].source:")


def test_symlink_out_of_the_tree_is_rejected(tree, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "evil.bpf.c"
    outside.write_text("")
    (tree / "bpf" / "link.bpf.c").symlink_to(outside)
    path = write_plan(tree, VALID.replace("ccr_reno.bpf.c", "link.bpf.c"))
    assert "outside" in errors_of(path)[0]


def test_cflags_are_limited(tree):
    path = write_plan(tree, VALID.replace('"-UBAR"', '"-O2", "-I../../"'))
    lines = errors_of(path)
    assert lines[0].startswith(f"{path}:5:25: algorithms[0].cflags[1]: expected a compiler flag")
    assert lines[1].startswith(f"{path}:5:32: algorithms[0].cflags[2]:") and "outside" in lines[1]


@pytest.mark.parametrize("stages, problem", [
    ('[5, "50%", 2]', "stage 2 is smaller than the earlier stage 5 (stages[0])"),
    ('["50%", 1, "10%"]', "stage '10%' is smaller than the earlier stage '50%' (stages[0])"),
    ('[1, "150%"]', "a percentage stage must be from 1% to 100%, got '150%'"),
    ('[0]', "expected a batch size"),
    ('["2.5%"]', "expected a batch size"),
    ('[]', "expected at least 1 item, got 0"),
])
def test_bad_stages(tree, stages, problem):
    path = write_plan(tree, VALID.replace('[1, "50%", "100%"]', stages))
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:10:") and problem in line


def test_increasing_stages_of_mixed_units_are_fine(tree):
    plan = load_plan(write_plan(tree, VALID.replace('[1, "50%", "100%"]', '[1, "10%", 2, "10%", 5]')))
    assert [str(s) for s in plan.rollouts[0].stages] == ["1", "10%", "2", "10%", "5"]


def test_interval_longer_than_bake(tree):
    path = write_plan(tree, VALID.replace("interval: 2s", "interval: 1m"))
    (line,) = errors_of(path)
    assert line == (f"{path}:13:15: rollouts[0].interval: interval (1m) is longer than bake (10s); "
                    "a bake needs at least one sample")


def test_default_interval_longer_than_bake_is_explained(tree):
    path = write_plan(tree, VALID.replace("    interval: 2s\n", "").replace("bake: 10s", "bake: 500ms"))
    assert "interval (1s, the default) is longer than bake (500ms)" in errors_of(path)[0]


def test_durations_and_percentages(tree):
    path = write_plan(tree, VALID.replace("baseline: 5s", "baseline: 0s").replace("bake: 10s", "bake: soon")
                                 .replace('max_increase: "2%"', 'max_increase: "200%"'))
    lines = errors_of(path)
    assert lines[0] == f"{path}:11:15: rollouts[0].baseline: expected a duration longer than 0, got '0s'"
    assert lines[1].startswith(f"{path}:12:11: rollouts[0].bake: expected a duration of at most a week, such as")
    assert lines[2].startswith(f"{path}:16:21: rollouts[0].health.max_increase: a percentage here can be at most")


def test_duplicates(tree):
    text = VALID + textwrap.indent(VALID.split("rollouts:\n")[1], "") + "    bake: 20s\n"
    text = text.replace("  - name: ccr_reno\n", "  - name: ccr_reno\n    source: ../bpf/ccr_reno.bpf.c\n", 1)
    lines = errors_of(write_plan(tree, text))
    assert any("source: key given twice in one mapping (first at line 4)" in line for line in lines)
    assert any("rollouts[1].name: rollout 'reno-to-lab' is defined twice (first at line 8)" in line for line in lines)
    assert any("bake: key given twice" in line for line in lines)


def test_all_errors_are_reported_at_once_sorted_by_line(tree):
    path = write_plan(tree, """
        version: 2
        algorithms:
          - name: ccr_reno
            source: ../bpf/missing.bpf.c
        rollouts:
          - name: r1
            algorithm: ccr_renoo
            hosts: lab
            stages: [3, 1]
            bake: 10s
            interval: 20s
            on_failure: rolback
          - "not a rollout"
    """)
    lines = errors_of(path)
    assert [int(re.match(rf"{re.escape(str(path))}:(\d+):\d+: ", line).group(1)) for line in lines] == \
        [1, 4, 7, 9, 11, 12, 13]
    assert "did you mean 'rollback'?" in lines[5]


def test_empty_and_non_mapping_plans(tree):
    assert errors_of(write_plan(tree, "")) == [
        f"{tree / 'playbooks' / 'plan.yaml'}:1:1: the plan file is empty; it needs 'algorithms' and 'rollouts'"]
    assert "must be a mapping" in errors_of(write_plan(tree, "- 1\n"))[0]


def test_missing_plan_file(tree):
    with pytest.raises(InvalidInput, match="plan file not found"):
        load_plan(tree / "nope.yaml")


def test_unsafe_yaml_is_refused(tree):
    path = write_plan(tree, "!!python/object/apply:os.system ['true']\n")
    assert "could not determine a constructor" in errors_of(path)[0]


# -- stages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stages, total, sizes", [
    ([1, "50%", "100%"], 10, [1, 5, 4]),
    ([1, "50%", "100%"], 3, [1, 1, 1]),
    ([1, "50%", "100%"], 1, [1]),
    ([1, "50%", "100%"], 0, []),
    ([2], 5, [2, 2, 1]),
    (["30%"], 10, [3, 3, 3, 1]),
    (["10%"], 5, [1, 1, 1, 1, 1]),    # int(0.5) or 1
    (["29%"], 100, [28, 28, 28, 16]),  # Ansible's float arithmetic: int(0.29 * 100) == 28
    ([1, 5, 10], 30, [1, 5, 10, 10, 4]),
    ([Stage(2), Stage(50, True)], 4, [2, 2]),
    ([], 3, [3]),
    ([0], 3, [3]),
])
def test_stage_batches_follow_ansible_serial(stages, total, sizes):
    hosts = [f"h{i}" for i in range(total)]
    batches = stage_batches(stages, hosts)
    assert [len(b) for b in batches] == sizes
    assert [h for batch in batches for h in batch] == hosts


def _ansible_serial(serial, hosts):
    """Ansible's PlaybookExecutor._get_serialized_batches, restated for comparison."""
    all_hosts, total, batches, item = list(hosts), len(hosts), [], 0
    while all_hosts:
        value = serial[item]
        size = (int((int(value[:-1]) / 100.0) * total) or 1) if isinstance(value, str) else int(value)
        batches.append(all_hosts[:size])
        all_hosts = all_hosts[size:]
        item = min(item + 1, len(serial) - 1)
    return batches


@given(st.lists(st.one_of(st.integers(1, 20), st.integers(1, 100).map(lambda p: f"{p}%")), min_size=1, max_size=5),
       st.integers(0, 60))
def test_stage_batches_property(stages, total):
    hosts = list(range(total))
    assert stage_batches(stages, hosts) == _ansible_serial(stages, hosts)


# -- against an inventory ---------------------------------------------------------------------------


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("[lab]\nlab1\nlab2\n[canary]\nlab1\n[empty]\n")
    return load_inventory([str(path)])


@pytest.mark.parametrize("pattern, problem", [
    ("lba", "'lba' in host pattern 'lba' names no group or host in the inventory; did you mean group 'lab'?"),
    ("lab:!canray", "'!canray' in host pattern 'lab:!canray' names no group or host in the inventory; "
                    "did you mean group 'canary'?"),
    ("empty", "host pattern 'empty' selects no host in the inventory"),
    ("lab:&empty", "host pattern 'lab:&empty' selects no host in the inventory"),
])
def test_check_plan_against_inventory(tree, inventory, pattern, problem):
    path = write_plan(tree, VALID.replace("hosts: lab", f"hosts: '{pattern}'"))
    plan = load_plan(path)
    with pytest.raises(InvalidInput) as caught:
        check_plan_against_inventory(plan, inventory)
    assert str(caught.value) == f"{path}:9:12: rollouts[0].hosts: {problem}"


def test_check_plan_against_inventory_passes(tree, inventory):
    plan = load_plan(write_plan(tree, VALID.replace("hosts: lab", "hosts: 'lab:!canary'")))
    check_plan_against_inventory(plan, inventory)


# -- never anything but a Plan or InvalidInput ------------------------------------------------------

_VALID_DOC = yaml.safe_load(VALID)

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=12),
    st.sampled_from(["10s", "0s", "1m30s", "5%", "150%", "2.5%", "ccr_reno", "../bpf/ccr_reno.bpf.c",
                     "/etc/passwd", "../../x", "-Iinclude", "-I../..", "-Ix\x00", "~[", "lab:!x", "rollback",
                     "5%\n", "ccr_reno\n", "10s\n"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def _mutated_plans(draw):
    document = copy.deepcopy(_VALID_DOC)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(value_paths(document))))
        if not path:
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        operation = draw(st.sampled_from(["replace", "delete", "rename", "add"]))
        if operation == "replace":
            parent[path[-1]] = draw(_values)
        elif operation == "delete":
            del parent[path[-1]]
        elif operation == "rename" and isinstance(parent, dict) and isinstance(path[-1], str):
            parent[path[-1][:-1] or "x"] = parent.pop(path[-1])
        elif operation == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(_values)
        elif operation == "add":
            parent.append(draw(_values))
    return document


@pytest.fixture(scope="module")
def fuzz_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "bpf").mkdir()
    (root / "bpf" / "ccr_reno.bpf.c").write_text("")
    (root / "playbooks" / "include").mkdir(parents=True)
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_mutated_plans())
def test_mutated_plans_give_a_plan_or_invalid_input(fuzz_tree, document):
    path = fuzz_tree / "playbooks" / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        load_plan(path)
    except InvalidInput as error:
        assert all(re.match(r".+:\d+:\d+: ", line) for line in str(error).splitlines()), str(error)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.sampled_from(VALID.splitlines()).flatmap(
    lambda line: st.lists(st.sampled_from(VALID.splitlines() + [line + ":", "  - [", "{", "&a *a", "\t"]),
                          max_size=25).map("\n".join))))
def test_arbitrary_text_gives_a_plan_or_invalid_input(fuzz_tree, text):
    path = fuzz_tree / "playbooks" / "text.yaml"
    path.write_text(text)
    try:
        load_plan(path)
    except InvalidInput:
        pass


# -- activation scope ---------------------------------------------------------------------------

SCOPED = """
algorithms:
  - name: ccr_reno
    source: ../bpf/ccr_reno.bpf.c
rollouts:
  - name: r
    algorithm: ccr_reno
    hosts: lab
    stages: [1]
    bake: 3s
    scope: SCOPE
"""


def test_scope_defaults_to_the_namespace_default(tree):
    plan = load_plan(write_plan(tree, SCOPED.replace("    scope: SCOPE\n", "")))
    assert plan.rollouts[0].scope == Scope(default=True, routes=())


def test_scope_with_routes(tree):
    plan = load_plan(write_plan(tree, SCOPED.replace("SCOPE", '{default: false, routes: ["10.0.0.0/8", "192.0.2.7/32"]}')))
    assert plan.rollouts[0].scope == Scope(default=False, routes=("10.0.0.0/8", "192.0.2.7/32"))


def test_scope_with_ipv6_routes_normalised(tree):
    routes = '["2001:DB8:0:0::/64", "fd63:6372:0:1::1/128", "10.0.0.0/8"]'
    plan = load_plan(write_plan(tree, SCOPED.replace("SCOPE", f"{{default: false, routes: {routes}}}")))
    assert plan.rollouts[0].scope.routes == ("2001:db8::/64", "fd63:6372:0:1::1/128", "10.0.0.0/8")


def test_a_route_prefix_that_is_none_is_explained_not_matched_against_a_regex(tree):
    routes = '["2001:db8::1/64", "fe80::/200", "web/8", "2001:db8::/64", "2001:DB8::/64"]'
    lines = errors_of(write_plan(tree, SCOPED.replace("SCOPE", f"{{routes: {routes}}}")))
    assert any("scope.routes[0]: '2001:db8::1/64' is not an IPv4 or IPv6 prefix" in line and "host bits set" in line
               for line in lines), lines
    assert any("scope.routes[1]: 'fe80::/200' is not an IPv4 or IPv6 prefix" in line for line in lines), lines
    assert any(line.endswith("scope.routes[2]: expected an IPv4 or IPv6 prefix such as \"10.0.0.0/8\" or "
                             "\"2001:db8::/32\", got the string 'web/8'") for line in lines), lines
    assert any("scope.routes[4]: '2001:DB8::/64' is routes[3] again (2001:db8::/64)" in line for line in lines), lines
    assert not any("does not match" in line for line in lines), lines


def test_scope_errors_name_the_prefix_and_the_empty_scope(tree):
    lines = errors_of(write_plan(tree, SCOPED.replace("SCOPE", '{default: false, routes: ["10.1.2.3/8"]}')))
    assert any("rollouts[0].scope.routes[0]" in line and "host bits set" in line for line in lines)
    lines = errors_of(write_plan(tree, SCOPED.replace("SCOPE", "{default: false}")))
    assert any("activates the control nowhere" in line and ":10:" in line for line in lines)


def test_a_bake_too_short_for_the_judge_is_explained(tree):
    path = write_plan(tree, VALID.replace("bake: 10s", "bake: 4s"))  # 2 intervals of 2s
    assert errors_of(path)[0].endswith("rollouts[0].bake: bake (4s) holds 2 intervals of 2s; "
                                       "the judge needs at least 3 (health.min_intervals)")


def test_extend_needs_a_limit(tree):
    path = write_plan(tree, VALID.replace("on_inconclusive: fail", "on_inconclusive: extend"))
    assert "on_inconclusive: extend needs max_extend" in errors_of(path)[0]
    path = write_plan(tree, VALID.replace("on_inconclusive: fail", "on_inconclusive: extend\n      max_extend: 6s"))
    rollout = load_plan(path).rollouts[0]
    assert (rollout.limits.on_inconclusive, rollout.schedule.max_extend, rollout.limits.min_intervals) == \
        ("extend", 6.0, 3)
    assert rollout.limits.max_extend_intervals == 3  # 6 s of 2 s intervals



# -- health: the metrics and their limits ---------------------------------------------------------


def test_an_old_plan_judges_the_default_metrics_with_the_schemas_limits(tree):
    limits = load_plan(write_plan(tree, VALID)).rollouts[0].limits
    assert limits.metrics == ("retransmit_ratio", "goodput", "srtt")
    assert (limits.max_goodput_drop, limits.max_rtt_increase) == (0.5, 1.0)


def test_a_plan_names_its_metrics_and_their_limits(tree):
    path = write_plan(tree, VALID.replace('max_increase: "2%"', 'max_increase: "2%"\n      max_goodput_drop: "30%"\n'
                                          '      max_rtt_increase: "250%"\n      metrics: [goodput, min_rtt]'))
    limits = load_plan(path).rollouts[0].limits
    assert limits.metrics == ("goodput", "min_rtt")
    assert (limits.max_goodput_drop, limits.max_rtt_increase, limits.limit_of("min_rtt")) == (0.3, 2.5, 2.5)
    assert limits.limit_of("retransmit_ratio") == 0.02


@pytest.mark.parametrize("line, message", [
    ("metrics: [goodput, latency]", "metrics"),
    ("metrics: []", "metrics"),
    ("metrics: [goodput, goodput]", "metrics"),
    ('max_goodput_drop: "120%"', "at most 100%"),
    ("max_rtt_increase: 2", "max_rtt_increase"),
])
def test_bad_metrics_and_limits_are_one_clear_message_with_the_line(tree, line, message):
    path = write_plan(tree, VALID.replace('max_increase: "2%"', f'max_increase: "2%"\n      {line}'), "bad.yaml")
    lines = errors_of(path)
    assert lines[0].startswith(f"{path}:"), lines
    assert message in lines[0], lines
