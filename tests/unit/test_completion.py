"""Shell completion, asked for the way bash's completion function asks (argcomplete's
protocol: _ARGCOMPLETE, COMP_LINE and COMP_POINT in, candidates out on a file named by
_ARGCOMPLETE_STDOUT_FILENAME, separated by _ARGCOMPLETE_IFS)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IFS = "\013"


def complete(line: str, tmp_path: Path, cwd: Path = REPO, **environ) -> list[str]:
    out = tmp_path / "completions"
    inherited = {name: value for name, value in os.environ.items() if name != "CCROLLOUT_CONFIG"}
    env = {**inherited, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": IFS, "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "COMP_TYPE": "9", "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
           "PYTHONPATH": str(REPO), **environ}
    finished = subprocess.run([sys.executable, "-m", "ccrollout.cli"], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    return out.read_text().split(IFS) if out.read_text() else []


def test_the_commands_are_offered(tmp_path):
    offered = complete("ccrollout ", tmp_path)
    for command in ("apply", "rollback", "check", "facts", "trace", "status", "history", "config", "lab"):
        assert command in offered


def test_a_commands_options_are_offered(tmp_path):
    offered = complete("ccrollout apply --", tmp_path)
    for option in ("--inventory", "--forks", "--timeout", "--check", "--diff", "--verbose", "--limit"):
        assert option in offered
    assert "--version" in complete("ccrollout --v", tmp_path)


def test_plans_complete_to_yaml_files_and_directories(tmp_path):
    assert "playbooks/" in complete("ccrollout check play", tmp_path)
    offered = complete("ccrollout apply -i x playbooks/lab-", tmp_path)
    assert sorted(offered) == sorted(f"playbooks/{plan.name}" for plan in (REPO / "playbooks").glob("lab-*.yaml"))
    assert "playbooks/lab-reno.yaml" in offered


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nweb1\nweb2\n[db]\ndb1\n")
    return path


def test_host_patterns_complete_from_the_inventory_on_the_line(tmp_path, inventory):
    assert sorted(complete(f"ccrollout facts -i {inventory} we", tmp_path)) == ["web", "web1", "web2"]
    # Only the last part of a pattern is completed; "!" comes back escaped for bash, as typed there.
    assert sorted(complete(f"ccrollout status -i {inventory} web:!d", tmp_path)) == ["web:\\!db", "web:\\!db1"]


def test_host_patterns_complete_from_the_configured_inventory(tmp_path, inventory):
    cfg = tmp_path / "ccrollout.cfg"
    cfg.write_text(f"[defaults]\ninventory = {inventory}\n")
    assert sorted(complete("ccrollout facts --limit d", tmp_path, CCROLLOUT_CONFIG=str(cfg))) == ["db", "db1"]
