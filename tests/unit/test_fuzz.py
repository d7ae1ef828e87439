"""Hostile and broken input, through the command line as an operator would give it.

Plans (`check`, with and without -i), inventories (`inventory --list`, `--hosts`), damaged
journals (`history`, `promote`, `rollback`) and host requests (the agent's `handle`, with
its actions stubbed so that nothing here changes this machine). Every command runs in a
worker process limited to 1 GiB of address space and 20 s a command (tests/unit/fuzzkit.py),
and must end with a documented exit code and its own message, never a traceback.

FUZZ_EXAMPLES=3000 makes a long run (README, Security); FUZZ_REPORT=PATH keeps its tally.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzgen
import fuzzkit
from ccrollout.host import agent
from ccrollout.journal import Journal

FUZZ = settings(max_examples=fuzzkit.EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example, HealthCheck.filter_too_much])
PLAN_EXITS, INVENTORY_EXITS, JOURNAL_EXITS = {0, 3}, {0, 3}, {0, 3, 5, 6}


@pytest.fixture(scope="module")
def worker():
    running = fuzzkit.Worker()
    yield running
    running.close()
    if os.environ.get("FUZZ_REPORT"):
        fuzzkit.write_tally(os.environ["FUZZ_REPORT"])


@pytest.fixture(scope="module")
def tree():
    """A plan's world: playbooks/ beside bpf/, and an inventory. Not under pytest's tmp_path,
    so that a generated inventory's links and depths never meet pytest's own clean-up."""
    root = Path(tempfile.mkdtemp(prefix="ccrollout-fuzz-"))
    (root / "bpf").mkdir()
    (root / "bpf" / "ccr_fuzz.bpf.c").write_text("/* a plan's source; never compiled by check */\n")
    (root / "playbooks").mkdir()
    (root / "inventory").write_text(fuzzgen.INVENTORY_INI)
    yield root
    shutil.rmtree(root)


# -- plans ---------------------------------------------------------------------------------------

@FUZZ
@given(text=fuzzgen.plans)
def test_check_survives_any_plan(worker, tree, text):
    plan = tree / "playbooks" / "fuzz.yaml"
    plan.write_text(text, encoding="utf-8", errors="surrogatepass")
    fuzzkit.check(worker.run("plans", ["check", plan]), PLAN_EXITS)
    fuzzkit.check(worker.run("plans", ["check", "-i", tree / "inventory", plan]), PLAN_EXITS)


# -- inventories ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inventory_home():
    home = Path(tempfile.mkdtemp(prefix="ccrollout-fuzz-inventory-"))
    yield home
    shutil.rmtree(home)


@FUZZ
@given(inventory=fuzzgen.inventories, variables=st.none() | fuzzgen.group_vars, pattern=fuzzgen.patterns)
def test_inventory_survives_any_inventory_and_pattern(worker, inventory_home, inventory, variables, pattern):
    shutil.rmtree(inventory_home)
    (inventory_home / "group_vars").mkdir(parents=True)
    name, text = inventory
    (inventory_home / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    if variables is not None:
        (inventory_home / "group_vars" / "lab.yml").write_text(variables, encoding="utf-8", errors="surrogatepass")
    listed = worker.run("inventories", ["inventory", "-i", inventory_home / name, "--list"])
    fuzzkit.check(listed, INVENTORY_EXITS)
    if listed.code == 0:
        assert listed.stdout_size == len(listed.stdout)
        assert set(fuzzkit.strict_json(listed.stdout)) >= {"_meta", "all"}
    # --hosts=PATTERN: a pattern that starts with '-' is otherwise an option to argparse
    fuzzkit.check(worker.run("inventories", ["inventory", "-i", inventory_home / name, f"--hosts={pattern}"]),
                  INVENTORY_EXITS)


# -- journals ------------------------------------------------------------------------------------

DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def journal_world():
    """A good journal to damage (a held rollout that changed lab1, then a paused one), and an
    inventory whose lab1 refuses connections at once."""
    home = Path(tempfile.mkdtemp(prefix="ccrollout-fuzz-journal-"))
    journal = Journal(home / "good.sqlite")
    held = journal.start_rollout("/nowhere/plan.yaml", "r1", "ccr_fuzz", DIGEST, ["lab1"])
    journal.event(held, None, "plan", {"stages": [{"hosts": ["lab1"], "controls": ["lab2"]}]})
    journal.mark(journal.intend(held, ["lab1"], 1, "ccr_fuzz", DIGEST)["lab1"], "done", "cubic")
    for phase, sent in (("baseline", 1000), ("bake", 900)):  # the evidence `report` draws
        journal.event(held, 1, "interval", {"phase": phase, "index": 1, "elapsed": 2.0, "hosts": {
            "lab1": {"role": "canary", "sent": sent, "retransmitted": 9, "bytes_acked": 10**6, "seconds": 2.0,
                     "connections": 2, "srtt_ms": 1.5, "min_rtt_ms": None},
            "lab2": {"role": "control", "sent": 1000, "retransmitted": 10}}})
    journal.event(held, 1, "verdict", {"stage": 1, "hosts": ["lab1"], "outcome": "fail", "reasons": ["x"],
                                       "figures": {"lab1": {"retransmit_ratio": 0.2, "sent": 1000}}})
    journal.finish_rollout(held, "held")
    paused = journal.start_rollout("/nowhere/plan.yaml", "r2", "ccr_fuzz", DIGEST, ["lab2"])
    journal.set_status(paused, "paused")
    journal.close()
    (home / "inventory").write_text("lab1 ansible_host=127.0.0.1 ansible_port=1\nlab2 ansible_host=127.0.0.1 "
                                    "ansible_port=1\n")
    yield home, held
    shutil.rmtree(home)


@FUZZ
@given(data=st.data())
def test_journal_commands_survive_any_damage(worker, journal_world, data):
    home, held = journal_world
    path = home / "journal.sqlite"
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if leftover.is_dir():
            leftover.rmdir()
        elif leftover.exists() or leftover.is_symlink():
            leftover.unlink()
    shutil.copyfile(home / "good.sqlite", path)
    fuzzgen.damage(path, data.draw(fuzzgen.journal_damage(path.stat().st_size)))
    inventory = home / "inventory"
    for argv in (["history"], ["history", "--json"], ["promote"], ["rollback", "-T", "1", "-i", inventory],
                 ["rollback", "-T", "1", "-i", inventory, held], ["report", "-o", home / "report.png", held]):
        outcome = worker.run("journals", [*argv, "--journal", path])
        fuzzkit.check(outcome, JOURNAL_EXITS)
        if argv == ["history", "--json"] and outcome.code == 0:
            fuzzkit.strict_json(outcome.stdout)


# -- host requests -------------------------------------------------------------------------------

def _stubbed_handlers():
    """The agent's dispatch with every action replaced: what is fuzzed is the checking."""
    return {name: (lambda state_dir, args, emit: {"changed": False}) for name in agent.HANDLERS}


@settings(max_examples=max(200, fuzzkit.EXAMPLES), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=fuzzgen.host_messages)
def test_the_agent_answers_any_request_with_a_refusal_or_a_result(message):
    real = agent.HANDLERS
    agent.HANDLERS = _stubbed_handlers()
    try:
        started = fuzzkit.wall_clock()
        answer = agent.handle(message)
        fuzzkit.TALLY["host requests"]["commands"] += 1
        fuzzkit.TALLY["host requests"]["max_seconds"] = max(fuzzkit.TALLY["host requests"]["max_seconds"],
                                                            fuzzkit.wall_clock() - started)
    finally:
        agent.HANDLERS = real
    assert isinstance(answer, dict) and isinstance(answer.get("results"), list)
    assert answer["results"] or message.get("actions") == []  # a message of no action has no answer
    for result in answer["results"]:
        assert isinstance(result["ok"], bool) and (result["ok"] or result["error"].startswith("refused: "))
        fuzzkit.TALLY["host requests"]["exits"]["result" if result["ok"] else "refusal"] += 1
    json.dumps(answer)  # what serve() writes


@settings(max_examples=max(100, fuzzkit.EXAMPLES), deadline=None)
@given(lines=st.lists(st.one_of(st.binary(max_size=200), fuzzgen.host_messages.map(
    lambda message: json.dumps(message).encode())), max_size=5))
def test_the_agent_serves_any_bytes_with_one_json_line_each(lines):
    import contextlib
    import io
    stream = io.BytesIO(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))
    written = io.StringIO()
    real = agent.HANDLERS
    agent.HANDLERS = _stubbed_handlers()
    try:
        with contextlib.redirect_stdout(written):
            assert agent.serve(stream) == 0
    finally:
        agent.HANDLERS = real
    answers = [json.loads(line) for line in written.getvalue().splitlines()]
    assert len(answers) == sum(1 for line in lines if line.replace(b"\n", b" ").strip())
