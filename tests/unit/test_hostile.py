"""Hand-picked hostile files, one per finding of the fuzzing session that preceded the fuzz
suite, through the command line in the fuzz worker (1 GiB, 20 s a command): each ends in
its documented exit code and one message naming the file (and line) at fault."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

import fuzzkit
from ccrollout.journal import Journal

PLAN = """\
algorithms:
  - name: ccr_x
    source: ../bpf/ccr_x.bpf.c
rollouts:
  - name: r
    algorithm: ccr_x
    hosts: lab
    stages: [1]
    bake: 3s
"""
LAUGHS = "\n".join(["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                   + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]) + "\n"


@pytest.fixture(scope="module")
def worker():
    running = fuzzkit.Worker()
    yield running
    running.close()


@pytest.fixture
def world():
    root = Path(tempfile.mkdtemp(prefix="ccrollout-hostile-"))
    (root / "bpf").mkdir()
    (root / "bpf" / "ccr_x.bpf.c").write_text("")
    (root / "playbooks").mkdir()
    (root / "inventory").write_text("[lab]\nlab1\n")
    yield root
    shutil.rmtree(root)


def plan_with(world: Path, old: str, new: str) -> Path:
    path = world / "playbooks" / "plan.yaml"
    assert old in PLAN
    path.write_text(PLAN.replace(old, new))
    return path


PLANS = {
    "settle of 317 years": ("bake: 3s", "bake: 3s\n    settle: 9999999999s", "10:13: rollouts[0].settle"),
    "infinite bake": ("bake: 3s", "bake: .inf", "9:11: rollouts[0].bake: expected a duration"),
    "nan significance": ("bake: 3s", "bake: 3s\n    health: {significance: .nan}", "health.significance"),
    "infinite max_extend": ("bake: 3s", "bake: 3s\n    health: {on_inconclusive: extend, max_extend: .inf}",
                            "health.max_extend"),
    "bake of 401 digits": ("bake: 3s", "bake: 1" + "0" * 400, "9:11: rollouts[0].bake"),
    "interval of 400 digits": ("bake: 3s", 'bake: 3s\n    interval: "1' + "0" * 399 + '"', "rollouts[0].interval"),
    "nan max_fail_percentage": ("bake: 3s", "bake: 3s\n    max_fail_percentage: .nan",
                                "rollouts[0].max_fail_percentage"),
    "stage of 5000 digits": ("stages: [1]", 'stages: ["' + "1" * 5000 + '%"]', "8:14: rollouts[0].stages[0]"),
    "host index of 5000 digits": ("hosts: lab", 'hosts: "lab[' + "1" * 5000 + ']"', "7:12: rollouts[0].hosts"),
    "billion laughs": ("rollouts:", LAUGHS + "rollouts:", "8:5: YAML error: expanding its aliases"),
    "kernel name": ("ccr_x\n    source", "reno\n    source", "algorithms[0].name: 'reno' is the name of"),
    "deep nesting": ("bake: 3s", "bake: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
}


@pytest.mark.parametrize("case", sorted(PLANS))
def test_hostile_plans(worker, world, case):
    old, new, message = PLANS[case]
    path = plan_with(world, old, new)
    for argv in (["check", path], ["check", "-i", world / "inventory", path]):
        outcome = worker.run("hand-picked", argv)
        fuzzkit.check(outcome, {3})
        assert f"{path}:" in outcome.stderr and message in outcome.stderr, outcome.stderr[:2000]


@pytest.mark.parametrize("source", ["fifo", "/dev/zero", "/dev/urandom"])
@pytest.mark.parametrize("kind", ["plan", "inventory", "group_vars"])
def test_only_regular_files_are_read(worker, world, source, kind):
    special = fuzzkit.fifo(world, "pipe") if source == "fifo" else Path(source)
    if kind == "plan":
        argv, named = ["check", special], special
    elif kind == "inventory":
        argv, named = ["inventory", "-i", special, "--list"], special
    else:
        (world / "group_vars").mkdir()
        (world / "group_vars" / "lab.yml").symlink_to(special)
        argv, named = ["inventory", "-i", world / "inventory", "--list"], world / "group_vars" / "lab.yml"
    outcome = worker.run("hand-picked", argv)
    fuzzkit.check(outcome, {3})
    assert f"{named}: " in outcome.stderr and "not a regular file" in outcome.stderr


def test_a_plan_directly_in_tmp_cannot_reach_etc(worker):
    with tempfile.NamedTemporaryFile("w", dir="/tmp", suffix=".yaml") as plan:
        plan.write(PLAN.replace("../bpf/ccr_x.bpf.c", "../etc/shadow"))
        plan.flush()
        outcome = worker.run("hand-picked", ["check", plan.name])
    fuzzkit.check(outcome, {3})
    assert "'../etc/shadow' resolves to /etc/shadow, outside /tmp" in outcome.stderr


INVENTORIES = {
    "ungrouped children": ("[lab]\nh1\n[ungrouped:children]\nlab\n", None, 0),
    "unhashable key": ('h1 x="{(1,2): 3}"\n', None, 0),
    "infinity": ("h1 x=1e999\n", None, 0),
    "dates, binary, sets, mixed keys": ("h1\n", "d: 2020-01-02\nb: !!binary aGVsbG8=\ns: !!set {a, b}\n"
                                                "m: {1: a, b: c}\n", 0),
    "billion laughs in group vars": ("h1\n", LAUGHS, 3),
    "3000 chained children": ("".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(3000)) + "[g3000]\nh1\n", None, 0),
}


@pytest.mark.parametrize("case", sorted(INVENTORIES))
def test_hostile_inventories_list_as_strict_json(worker, world, case):
    text, variables, code = INVENTORIES[case]
    (world / "hosts.ini").write_text(text)
    if variables:
        (world / "group_vars").mkdir()
        (world / "group_vars" / "all.yml").write_text(variables)
    outcome = worker.run("hand-picked", ["inventory", "-i", world / "hosts.ini", "--list"])
    fuzzkit.check(outcome, {code})
    if code == 0:
        listed = fuzzkit.strict_json(outcome.stdout)
        assert "h1" in listed["_meta"]["hostvars"] or "h1" in json.dumps(listed)
    else:
        assert "all.yml:5:5: YAML error: expanding its aliases" in outcome.stderr


def test_links_to_the_directory_itself_are_followed_once(worker, world):
    (world / "inv" / "group_vars" / "all").mkdir(parents=True)
    (world / "inv" / "hosts").write_text("h1\n")
    (world / "inv" / "group_vars" / "all" / "v.yml").write_text("x: 1\n")
    for directory in (world / "inv", world / "inv" / "group_vars" / "all"):
        for link in "ab":
            (directory / link).symlink_to(".")
    outcome = worker.run("hand-picked", ["inventory", "-i", world / "inv", "--list"])
    fuzzkit.check(outcome, {0})
    assert fuzzkit.strict_json(outcome.stdout)["_meta"]["hostvars"] == {"h1": {"x": 1}}


def test_a_backtracking_pattern_ends_in_time(worker, world):
    (world / "inventory").write_text("a" * 40 + "b\n")
    outcome = worker.run("hand-picked", ["inventory", "-i", world / "inventory", "--hosts", "~(a+)+$"])
    fuzzkit.check(outcome, {3})
    assert "took more than 2s" in outcome.stderr and outcome.seconds < 10


DIGEST = "ab" * 32


def _journal_damage(world: Path, kind: str) -> Path:
    path = world / "journal.sqlite"
    if kind == "directory":
        path.mkdir()
        return path
    if kind == "fifo":
        return fuzzkit.fifo(world, "journal.sqlite")
    if kind == "parent is a file":
        (world / "file").write_text("")
        return world / "file" / "journal.sqlite"
    journal = Journal(path)
    rollout = journal.start_rollout("/p.yaml", "r1", "ccr_x", DIGEST, ["lab1"])
    journal.mark(journal.intend(rollout, ["lab1"], 1, "ccr_x", DIGEST)["lab1"], "done", "cubic")
    journal.event(rollout, 1, "verdict", {"stage": 1, "hosts": ["lab1"], "outcome": "fail"})
    journal.finish_rollout(rollout, "held")
    journal.close()
    if kind in ("truncated", "garbage", "empty"):
        data = path.read_bytes()
        path.write_bytes({"truncated": data[:len(data) // 3], "garbage": os.urandom(len(data)), "empty": b""}[kind])
    elif kind in ("foreign", "bad event", "tampered host"):
        db = sqlite3.connect(path)
        db.execute({"foreign": "PRAGMA application_id = 42", "bad event": "UPDATE events SET data = '{oops'",
                    "tampered host": "UPDATE changes SET host = 'lab1\x1b]0;owned\x07'"}[kind])
        db.commit()
        db.close()
    return path


# The commands that read the damaged part (a damaged row is found where it is read).
_READERS = {"bad event": ("history", "history --json"), "tampered host": ("history --json", "rollback")}


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "directory", "fifo", "parent is a file",
                                  "foreign", "bad event", "tampered host"])
def test_damaged_journals_are_one_message_and_exit_3(worker, world, kind):
    path = _journal_damage(world, kind)
    (world / "inventory").write_text("lab1 ansible_host=127.0.0.1 ansible_port=1\n")
    for command in ("history", "history --json", "promote", "rollback"):
        argv = command.split() + (["-T", "1", "-i", world / "inventory"] if command == "rollback" else [])
        outcome = worker.run("hand-picked", [*argv, "--journal", path])
        if command not in _READERS.get(kind, (command,)):
            fuzzkit.check(outcome, {0, 3, 6})
            continue
        fuzzkit.check(outcome, {3})
        assert outcome.stderr.startswith(f"ccrollout: error: journal {path}") and outcome.stderr.count("\n") == 1
        assert "lab1:" not in outcome.stdout  # no host was reached
