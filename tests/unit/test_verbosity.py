"""-v/-vv/-vvv, --version and -f as every command that reaches hosts takes them."""

import hashlib
import logging

import pytest

from ccrollout import build, cli, errors, fleet
from ccrollout.cli import verbosity
from ccrollout.inventory import Host
from ccrollout.journal import Journal
from ccrollout.plan import Algorithm, Rollout, Scope, Stage
from ccrollout.rollout.judge import Limits
from ccrollout.rollout.runner import Runner
from ccrollout.schedule import Schedule
from ccrollout.simulation import SimulatedFleet


@pytest.fixture(autouse=True)
def quiet_afterwards():
    yield
    verbosity.set_up(0)


@pytest.fixture
def no_config(monkeypatch, tmp_path):
    monkeypatch.setenv("CCROLLOUT_CONFIG", str(tmp_path / "ccrollout.cfg"))
    (tmp_path / "ccrollout.cfg").write_text("")


def test_version_prints_the_package_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"ccrollout {verbosity.package_version()}\n"


def test_v_counts_before_and_after_the_command(monkeypatch, no_config):
    seen = {}
    monkeypatch.setitem(cli.COMMANDS, "history", lambda args: seen.setdefault("args", args) and 0)
    cli.main(["-v", "history", "-vv"])
    assert verbosity.verbosity(seen["args"]) == 3
    assert logging.getLogger("ccrollout").level == verbosity.DETAIL
    assert [verbosity.level_for(n) for n in range(5)] == [logging.WARNING, logging.INFO, logging.DEBUG,
                                                          verbosity.DETAIL, verbosity.DETAIL]


@pytest.fixture
def local_inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(f"here ansible_connection=local ccrollout_state_dir={tmp_path / 'state'}\n"
                    "closed ansible_host=127.0.0.1 ansible_port=1\n")
    return path


def test_vv_shows_each_message_to_and_from_a_host(local_inventory, no_config, capsys):
    assert cli.main(["status", "-vv", "-i", str(local_inventory), "here"]) == errors.EXIT_OK
    err = capsys.readouterr().err
    assert "ccrollout.fleet.agent: to here: message 1: drift (" in err
    assert "ccrollout.fleet.agent: from here: answer 1 in " in err and "drift ok (" in err
    assert cli.main(["status", "-v", "-i", str(local_inventory), "here"]) == errors.EXIT_OK
    assert "message 1" not in capsys.readouterr().err


def test_vvv_shows_how_a_host_is_reached(local_inventory, no_config, capsys):
    assert cli.main(["status", "-vvv", "-T", "2", "-i", str(local_inventory), "closed"]) == errors.EXIT_HOST_FAILED
    err = capsys.readouterr().err
    assert "ccrollout.fleet.ssh: closed: ssh " in err and "@127.0.0.1 port 1, timeout 2s" in err


def test_vvv_gives_a_warning_its_traceback(capsys):
    verbosity.set_up(3)
    verbosity.warning("something odd")
    err = capsys.readouterr().err
    assert err.startswith("ccrollout: warning: something odd\n")
    assert "where that warning came from" in err and "test_vvv_gives_a_warning_its_traceback" in err
    verbosity.set_up(2)
    verbosity.warning("something odd")
    assert capsys.readouterr().err == "ccrollout: warning: something odd\n"


def test_v_shows_each_interval_and_the_judges_comparisons(tmp_path, monkeypatch, caplog):
    path = tmp_path / "ccr_sim.bpf.o"
    path.write_bytes(b"not an object")
    built = build.BuiltObject("ccr_sim", tmp_path / "ccr_sim.bpf.c", path,
                              hashlib.sha256(path.read_bytes()).hexdigest(), 1, (), True)
    monkeypatch.setattr(Runner, "build_control", lambda self, rollout: built)
    rollout = Rollout(name="sim", algorithm=Algorithm("ccr_sim", build.Path("/dev/null")), hosts="all",
                      stages=(Stage(1), Stage(100, percent=True)),
                      schedule=Schedule(baseline=0.3, settle=0, bake=0.3, interval=0.1),
                      limits=Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=50),
                      on_failure="rollback", scope=Scope())
    hosts = [Host(f"h{index}", {}, ("all",)) for index in range(3)]
    simulated = SimulatedFleet([host.name for host in hosts], ratios={"reno": 0.01, "ccr_sim": 0.012})
    caplog.set_level(logging.INFO, logger="ccrollout")
    with Runner(hosts, Journal(tmp_path / "journal.sqlite"), progress=lambda text: None,
                connect=simulated.connect) as runner:
        runner.apply("plan.yaml", rollout)
    lines = [record.getMessage() for record in caplog.records if record.name == "ccrollout.rollout.canary"]
    assert any(line.startswith("baseline interval 1: h0 sent ") for line in lines)
    assert any(line.startswith("bake interval 1: h1 sent ") for line in lines)  # a control host
    assert any(line.startswith("judge h0 retransmit_ratio: median ") and "against its baseline" in line
               and "n=3 vs 3" in line for line in lines)
    # every metric the plan judges, in its own unit
    assert any(line.startswith("judge h0 goodput: median ") and "Mbit/s against" in line for line in lines)


@pytest.mark.parametrize("argv", [["facts"], ["status"], ["trace", "--duration", "1s", "--interval", "1s"]])
def test_every_command_that_reaches_hosts_honours_forks(argv, local_inventory, no_config, monkeypatch):
    used = []
    monkeypatch.setattr(fleet, "fan_out", lambda sessions, work, forks: used.append(forks) or {})
    cli.main([*argv, "-f", "3", "-i", str(local_inventory)])
    assert used == [3]
