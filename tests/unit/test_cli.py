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
