"""ccrollout.cfg and CCROLLOUT_*: found as Ansible finds ansible.cfg, and the command line wins."""

import os

import pytest

from ccrollout import cli, config, errors


@pytest.fixture
def places(tmp_path):
    """A current directory and a home directory, neither world-writable."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(mode=0o755)
    home.mkdir(mode=0o755)
    return cwd, home


def load(places, environ=None, warnings=None):
    cwd, home = places
    return config.load(environ or {}, str(cwd), str(home), (warnings if warnings is not None else []).append)


def test_without_a_file_or_variables_the_defaults_hold(places):
    settings = load(places)
    assert (settings.forks, settings.timeout, settings.command_timeout) == (5, 10.0, 120.0)
    assert settings.inventory is None and settings.journal is None and settings.notify == ()
    assert settings.path is None and settings.origin("forks") == config.DEFAULT


def test_the_built_in_defaults_are_the_fleets():
    from ccrollout.fleet import Timeouts
    assert (config.Config().timeout, config.Config().command_timeout) == (Timeouts().connect, Timeouts().command)
    assert {setting.key for setting in config.SETTINGS} == set(config.Config.__dataclass_fields__) - {"path", "origins"}


def test_the_first_file_found_wins_and_no_other_is_read(places, tmp_path):
    cwd, home = places
    (home / ".ccrollout.cfg").write_text("[defaults]\nforks = 7\ntimeout = 3\n")
    assert load(places).forks == 7
    (cwd / "ccrollout.cfg").write_text("[defaults]\nforks = 9\n")
    settings = load(places)
    assert settings.forks == 9 and settings.timeout == 10.0  # home's file is not read at all
    assert settings.origin("forks") == f"{cwd / 'ccrollout.cfg'}:2"
    named = tmp_path / "elsewhere.cfg"
    named.write_text("[defaults]\nforks = 11\n")
    assert load(places, {"CCROLLOUT_CONFIG": str(named)}).forks == 11


def test_ccrollout_config_may_name_a_directory_but_not_a_missing_file(places, tmp_path):
    (tmp_path / "ccrollout.cfg").write_text("[defaults]\nforks = 4\n")
    assert load(places, {"CCROLLOUT_CONFIG": str(tmp_path)}).forks == 4
    with pytest.raises(config.BadVariable, match="CCROLLOUT_CONFIG=.*missing.cfg: no such file") as raised:
        load(places, {"CCROLLOUT_CONFIG": str(tmp_path / "missing.cfg")})
    assert raised.value.exit_code == errors.EXIT_USAGE


def test_a_file_in_a_world_writable_directory_is_ignored_with_a_warning(places):
    cwd, home = places
    (cwd / "ccrollout.cfg").write_text("[defaults]\nforks = 9\n")
    (home / ".ccrollout.cfg").write_text("[defaults]\nforks = 7\n")
    os.chmod(cwd, 0o777)
    warnings = []
    assert load(places, warnings=warnings).forks == 7
    assert len(warnings) == 1 and "world-writable" in warnings[0] and str(cwd) in warnings[0]


def test_the_environment_beats_the_file(places):
    cwd, _ = places
    (cwd / "ccrollout.cfg").write_text("[defaults]\nforks = 9\ncommand_timeout = 30\n")
    settings = load(places, {"CCROLLOUT_FORKS": "3"})
    assert settings.forks == 3 and settings.origin("forks") == "CCROLLOUT_FORKS"
    assert settings.command_timeout == 30.0


def test_paths_in_the_file_are_relative_to_it_and_in_the_environment_to_the_cwd(places, tmp_path):
    cwd, home = places
    (home / ".ccrollout.cfg").write_text("[defaults]\ninventory = hosts.ini, ~/more\njournal = state/j.sqlite\n")
    settings = load(places)
    assert settings.inventory == (str(home / "hosts.ini"), os.path.expanduser("~/more"))
    assert settings.journal == str(home / "state/j.sqlite")
    assert load(places, {"CCROLLOUT_INVENTORY": "lab.ini"}).inventory == (str(cwd / "lab.ini"),)


def test_the_readme_example_reads_as_documented(places):
    cwd, _ = places
    readme = (config.__file__.rsplit("/ccrollout/", 1)[0] + "/README.md")
    text = open(readme).read()
    example = text[text.index("```ini\n[defaults]") + len("```ini\n"):]
    (cwd / "ccrollout.cfg").write_text(example[:example.index("```")])
    settings = load(places)
    assert settings.inventory == (str(cwd / "inventory/prod.ini"), str(cwd / "inventory/extra"))
    assert (settings.forks, settings.timeout, settings.command_timeout) == (20, 5.0, 300.0)
    assert settings.journal == os.path.expanduser("~/rollouts/journal.sqlite")
    assert settings.notify == ("https://chat.example/hooks/ccrollout",)


def test_notify_takes_commas_and_lines(places):
    cwd, _ = places
    (cwd / "ccrollout.cfg").write_text("[defaults]\nnotify = https://a.example/hook,\n"
                                       "    http://b.example/x?y=%20#top\n")
    assert load(places).notify == ("https://a.example/hook", "http://b.example/x?y=%20#top")


@pytest.mark.parametrize("line, named", [
    ("forks = 0", "forks must be a whole number"),
    ("forks = many", "forks must be a whole number"),
    ("timeout = -1", "timeout must be seconds"),
    ("timeout = nan", "timeout must be seconds"),
    ("command_timeout = 100000", "command_timeout must be seconds"),
    ("notify = ftp://x", "notify must be http:// or https:// URLs"),
    ("inventory = ,", "inventory names no path"),
])
def test_a_bad_value_in_the_file_names_the_file_line_and_key(places, line, named):
    cwd, _ = places
    (cwd / "ccrollout.cfg").write_text(f"# settings\n[defaults]\n{line}\n")
    with pytest.raises(config.BadConfigFile) as raised:
        load(places)
    assert str(raised.value).startswith(f"{cwd / 'ccrollout.cfg'}:3: {named}")
    assert raised.value.exit_code == errors.EXIT_INVALID_INPUT


def test_a_bad_variable_names_the_variable(places):
    with pytest.raises(config.BadVariable, match="^CCROLLOUT_FORKS: must be a whole number") as raised:
        load(places, {"CCROLLOUT_FORKS": "-2"})
    assert raised.value.exit_code == errors.EXIT_USAGE


@pytest.mark.parametrize("text, named", [("forks = 3\n", "no section headers"),
                                         ("[defaults]\nforks = 1\nforks = 2\n", "already exists"),
                                         ("[defaults]\n\x00", "")])
def test_a_file_that_is_not_ini_is_one_message_naming_it(places, text, named):
    cwd, _ = places
    (cwd / "ccrollout.cfg").write_text(text)
    with pytest.raises(config.BadConfigFile, match=str(cwd / "ccrollout.cfg")) as raised:
        load(places)
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_unknown_keys_and_other_sections_are_not_errors(places):
    cwd, _ = places
    (cwd / "ccrollout.cfg").write_text("[defaults]\nfork = 3\n[ssh]\nwhatever = 1\n")
    warnings = []
    assert load(places, warnings=warnings).forks == 5
    assert warnings == [f"{cwd / 'ccrollout.cfg'}:2: [defaults] fork is not a ccrollout setting "
                        "(known: inventory, forks, timeout, command_timeout, journal, notify); ignored"]


def test_a_directory_or_fifo_in_place_of_the_file_is_refused(places):
    cwd, _ = places
    os.mkfifo(cwd / "ccrollout.cfg")
    with pytest.raises(config.BadConfigFile, match="not a regular file"):
        load(places)


# -- through the command line -----------------------------------------------------------------

@pytest.fixture
def configured(tmp_path, monkeypatch):
    """A ccrollout.cfg named by CCROLLOUT_CONFIG, and an inventory beside it."""
    (tmp_path / "hosts.ini").write_text("[web]\nw1 ansible_connection=local\nw2 ansible_connection=local\n")
    cfg = tmp_path / "ccrollout.cfg"
    cfg.write_text("[defaults]\ninventory = hosts.ini\nforks = 7\njournal = j.sqlite\n")
    monkeypatch.setenv("CCROLLOUT_CONFIG", str(cfg))
    for setting in config.SETTINGS:
        monkeypatch.delenv(setting.variable, raising=False)
    return tmp_path


def parsed(argv):
    """What the command would be called with, without calling it."""
    seen = {}
    original = dict(cli.COMMANDS)
    try:
        for name in cli.COMMANDS:
            cli.COMMANDS[name] = lambda args: seen.setdefault("args", args) and 0
        assert cli.main(argv) == 0
    finally:
        cli.COMMANDS.update(original)
    return seen["args"]


def test_the_file_gives_the_defaults_and_the_command_line_wins(configured, monkeypatch):
    args = parsed(["status"])
    assert args.inventory == [str(configured / "hosts.ini")] and args.journal == str(configured / "j.sqlite")
    args = parsed(["facts", "-i", "other.ini", "-f", "2"])
    assert args.inventory == ["other.ini"] and args.forks == 2  # -i replaces the configured inventory
    monkeypatch.setenv("CCROLLOUT_FORKS", "4")
    assert parsed(["status"]).forks == 4
    assert parsed(["status", "--forks", "1"]).forks == 1


def test_the_configured_inventory_is_used_by_a_command(configured, capsys):
    assert cli.main(["inventory", "--hosts", "web"]) == 0
    assert capsys.readouterr().out.split() == ["w1", "w2"]


def test_a_bad_configuration_is_one_line_and_its_exit_code(configured, monkeypatch, capsys):
    (configured / "ccrollout.cfg").write_text("[defaults]\nforks = lots\n")
    assert cli.main(["history"]) == errors.EXIT_INVALID_INPUT
    err = capsys.readouterr().err
    assert err == f"ccrollout: error: {configured / 'ccrollout.cfg'}:2: forks must be a whole number " \
                  "of hosts from 1 to 1000, not 'lots'\n"
    (configured / "ccrollout.cfg").write_text("[defaults]\nforks = 2\n")
    monkeypatch.setenv("CCROLLOUT_TIMEOUT", "soon")
    assert cli.main(["history"]) == errors.EXIT_USAGE
    assert "CCROLLOUT_TIMEOUT: must be seconds" in capsys.readouterr().err


def test_help_and_version_work_whatever_the_configuration(configured, capsys):
    (configured / "ccrollout.cfg").write_text("not ini at all\n")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("ccrollout ")


def test_config_shows_each_setting_and_where_it_came_from(configured, monkeypatch, capsys):
    monkeypatch.setenv("CCROLLOUT_TIMEOUT", "4")
    assert cli.main(["config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"forks = 7  ({configured / 'ccrollout.cfg'}:3)" in lines
    assert "timeout = 4  (CCROLLOUT_TIMEOUT)" in lines
    assert "command_timeout = 120  (default)" in lines
    assert cli.main(["config", "--only-changed"]) == 0
    assert "command_timeout" not in capsys.readouterr().out


def test_a_configured_journal_not_made_yet_is_an_empty_history(configured, capsys):
    assert cli.main(["history", "--json"]) == errors.EXIT_OK
    assert capsys.readouterr().out == "[]\n"
    assert cli.main(["history", "--journal", str(configured / "other.sqlite")]) == errors.EXIT_INVALID_INPUT
