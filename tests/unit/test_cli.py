"""The command line's own promises: one line per error, and exit codes that mean one thing."""

from ccrollout import cli, errors


def test_a_bug_is_one_line_and_exit_70_never_1(monkeypatch, capsys):
    def broken(args):
        return {}["missing"]
    monkeypatch.setitem(cli.COMMANDS, "history", broken)
    monkeypatch.delenv("CCROLLOUT_DEBUG", raising=False)
    assert cli.main(["history"]) == errors.EXIT_SOFTWARE == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error, a bug in ccrollout: KeyError: 'missing' (at test_cli.py:" in err


def test_ccrollout_debug_adds_the_traceback(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "history", lambda args: 1 / 0)
    monkeypatch.setenv("CCROLLOUT_DEBUG", "1")
    assert cli.main(["history"]) == errors.EXIT_SOFTWARE
    assert "Traceback" in capsys.readouterr().err


def test_exit_70_is_documented_in_the_epilog_and_the_readme():
    assert "70 a bug in ccrollout" in cli.EXIT_CODES
    readme = (cli.__file__.rsplit("/ccrollout/", 1)[0] + "/README.md")
    assert "| 70 | a bug in ccrollout" in open(readme).read()


# -- the journal through the commands ----------------------------------------------------------

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from ccrollout.journal import Journal  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DIGEST = "ab" * 32


def run(*argv, home, user=None):
    """The CLI in a process of its own (as USER, a uid, when given)."""
    def become():
        os.setgid(user)
        os.setuid(user)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home), "CCROLLOUT_HOME": str(home / "state")}
    return subprocess.run([sys.executable, "-m", "ccrollout.cli", *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, preexec_fn=become if user else None)


@pytest.fixture
def world():
    """A journal with a held rollout that changed lab1, and an inventory whose lab1 refuses
    connections at once: a command that reaches for it says so, and exits 5 or 6, not 3."""
    # Not tmp_path: another user (nobody) must be able to reach it.
    home = Path(tempfile.mkdtemp(prefix="ccrollout-cli-"))
    home.chmod(0o755)
    journal = Journal(home / "journal.sqlite")
    rollout = journal.start_rollout("/p.yaml", "r1", "ccr_reno", DIGEST, ["lab1"])
    journal.mark(journal.intend(rollout, ["lab1"], 1, "ccr_reno", DIGEST)["lab1"], "done", "cubic")
    journal.finish_rollout(rollout, "held")
    journal.close()
    (home / "inventory").write_text("lab1 ansible_host=127.0.0.1 ansible_port=1\n")
    yield home
    shutil.rmtree(home)


def test_rollback_over_a_read_only_journal_touches_no_host(world):
    (world / "journal.sqlite").chmod(0o444)
    user = 65534 if os.geteuid() == 0 else None  # root writes whatever the mode says: be nobody
    result = run("rollback", "-T", "1", "-i", world / "inventory", "--journal", world / "journal.sqlite",
                 home=world, user=user)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"ccrollout: error: journal {world}/journal.sqlite is read-only here")
    assert "lab1" not in result.stderr + result.stdout


def test_rollback_over_a_tampered_row_sends_nothing(world):
    import sqlite3
    db = sqlite3.connect(world / "journal.sqlite")
    db.execute("UPDATE changes SET previous_default = 'x; reboot'")
    db.commit()
    db.close()
    result = run("rollback", "-T", "1", "-i", world / "inventory", "--journal", world / "journal.sqlite", home=world)
    assert result.returncode == 3 and result.stderr.count("\n") == 1, result.stderr
    assert "changes row 1: previous_default 'x; reboot' is not a congestion-control name" in result.stderr
    assert "rollback failed" not in result.stdout


def test_reading_commands_never_write_and_need_the_journal_they_name(world):
    path = world / "journal.sqlite"
    before = path.read_bytes()
    assert run("history", "--journal", path, home=world).returncode == 0
    refused = run("promote", "--journal", path, home=world)  # held, not paused
    assert refused.returncode == 3 and "is held, not paused" in refused.stderr
    assert path.read_bytes() == before
    missing = run("history", "--journal", world / "nope.sqlite", home=world)
    assert missing.returncode == 3 and "nope.sqlite: not found" in missing.stderr
    assert not (world / "nope.sqlite").exists()
    assert run("history", "--json", home=world).stdout == "[]\n"  # nothing recorded at the default yet
    assert not (world / "state").exists()


def test_history_is_strict_json_and_printed_whole(tmp_path, capsys):
    journal = Journal(tmp_path / "journal.sqlite")
    first = journal.start_rollout("/p.yaml", "r1", "ccr_reno", DIGEST, ["lab1"])
    journal.event(first, 1, "verdict", {"stage": 1, "hosts": ["lab1"], "outcome": "pass",
                                        "figures": {"lab1": {"retransmit_ratio": 0.01, "sent": 10,
                                                             "baseline": {"p_value": float("nan")}}}})
    second = journal.start_rollout("/p.yaml", "r2", "ccr_reno", DIGEST, ["lab2"])
    journal.close()
    from ccrollout import cli
    assert cli.main(["history", "--json", "--journal", str(tmp_path / "journal.sqlite")]) == 0
    import json
    listed = json.loads(capsys.readouterr().out, parse_constant=lambda constant: 1 / 0)
    assert listed[0]["verdicts"][0]["figures"]["lab1"]["baseline"]["p_value"] == "NaN"
    import sqlite3
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    db.execute("INSERT INTO events VALUES (?, 1, 1, 'verdict', '{oops')", (second,))
    db.commit()
    db.close()
    assert cli.main(["history", "--journal", str(tmp_path / "journal.sqlite")]) == 3
    assert capsys.readouterr().out == ""  # not the first rollout, then an error
