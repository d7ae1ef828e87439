"""Controls that survive a reboot, without root: the boot units (checked by systemd-analyze),
where they are written and where not, the record's new fields, the restore's entry point,
and the inventory's ccrollout_boot_unit. The lab test restores for real."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccrollout.errors import InvalidInput
from ccrollout.host import agent, boot, facts, state
from ccrollout.host.state import ControlRecord, HostState
from ccrollout.rollout.hosts import boot_unit_choice

REPO = Path(__file__).resolve().parents[2]
DIGEST = "a" * 64


@pytest.fixture
def systemd_host(tmp_path, monkeypatch):
    """A host whose init is systemd, seen from its initial network namespace, with its unit
    directory under tmp_path; the host side runs from a zip (a stand-in here)."""
    running = tmp_path / "run-systemd"
    running.mkdir()
    monkeypatch.setattr(boot, "SYSTEMD_RUNNING", str(running))
    monkeypatch.setattr(facts, "initial_netns_id", facts.netns_id)
    code = tmp_path / "ccrollout-host-0123.pyz"
    code.write_bytes(b"PK the host side")
    monkeypatch.setattr(boot, "running_zip", lambda: str(code))
    units = tmp_path / "units"
    units.mkdir()
    return units


def keep(state_dir: Path, routes=None, persist=True) -> None:
    record = ControlRecord(digests=[DIGEST], previous_default="reno", since=1.0, routes=routes or {},
                           persist=persist)
    state.save(str(state_dir), HostState(controls={"ccr_reno": record}))


@pytest.mark.skipif(not shutil.which("systemd-analyze") and os.environ.get("CI") != "true",
                    reason="systemd-analyze is not installed (Debian: systemd)")
@pytest.mark.parametrize("phase", boot.PHASES)
def test_the_boot_units_pass_systemd_analyze_verify(tmp_path, phase):
    path = tmp_path / boot.unit_name("/var/lib/ccrollout", phase)
    path.write_text(boot.unit_text("/var/lib/ccrollout", phase, sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    text = path.read_text()
    if phase == "controls":  # before the network, after the file systems it needs
        for line in ("DefaultDependencies=no", "Before=network-pre.target shutdown.target",
                     "Wants=network-pre.target", "RequiresMountsFor=/var/lib/ccrollout"):
            assert line in text.splitlines()
    assert (f"ExecStart={sys.executable} /var/lib/ccrollout/boot/ccrollout-host.pyz restore --phase {phase} "
            "/var/lib/ccrollout") in text


def test_persist_keeps_the_zip_and_writes_and_enables_the_units_once(tmp_path, systemd_host):
    state_dir = tmp_path / "state"
    keep(state_dir, routes={"10.9.0.0/16": None})
    first = boot.persist(str(state_dir), "auto", str(systemd_host))
    assert first["changed"] and first["note"] is None
    assert (state_dir / "boot" / "ccrollout-host.pyz").read_bytes() == b"PK the host side"
    assert [Path(unit).name for unit in first["unit"]] == [boot.unit_name(str(state_dir), p) for p in boot.PHASES]
    for unit in first["unit"]:
        link = systemd_host / "multi-user.target.wants" / Path(unit).name
        assert link.is_symlink() and os.path.realpath(link) == unit
    assert [command[2:5] for command in first["commands"]] == [["restore", "--phase", "controls"],
                                                               ["restore", "--phase", "routes"]]
    again = boot.persist(str(state_dir), "auto", str(systemd_host))
    assert not again["changed"] and again["unit"] == first["unit"]


def test_the_routes_unit_only_when_a_kept_control_has_routes(tmp_path, systemd_host):
    state_dir = tmp_path / "state"
    keep(state_dir)
    answer = boot.persist(str(state_dir), "yes", str(systemd_host))
    assert [Path(unit).name for unit in answer["unit"]] == [boot.unit_name(str(state_dir), "controls")]


@pytest.mark.parametrize("choice, netns_initial, systemd, note", [
    ("no", True, True, "ccrollout_boot_unit is false"),
    ("auto", False, True, "not the initial network namespace"),
    ("auto", True, False, "systemd is not this machine's init"),
    ("yes", True, False, "systemd is not this machine's init"),
])
def test_no_unit_where_the_inventory_or_the_host_says_no(tmp_path, systemd_host, monkeypatch, choice,
                                                         netns_initial, systemd, note):
    if not netns_initial:
        monkeypatch.setattr(facts, "initial_netns_id", lambda: "another namespace")
    if not systemd:
        monkeypatch.setattr(boot, "SYSTEMD_RUNNING", str(tmp_path / "absent"))
    state_dir = tmp_path / "state"
    keep(state_dir)
    answer = boot.persist(str(state_dir), choice, str(systemd_host))
    assert answer["unit"] is None and note in answer["note"]
    assert answer["commands"] and (state_dir / "boot" / "ccrollout-host.pyz").exists()  # restore by hand
    assert not any(systemd_host.iterdir())


def test_a_yes_writes_the_unit_outside_the_initial_namespace(tmp_path, systemd_host, monkeypatch):
    monkeypatch.setattr(facts, "initial_netns_id", lambda: "another namespace")
    state_dir = tmp_path / "state"
    keep(state_dir)
    assert boot.persist(str(state_dir), "yes", str(systemd_host))["unit"]


def test_nothing_kept_means_no_unit_and_no_zip(tmp_path, systemd_host):
    state_dir = tmp_path / "state"
    keep(state_dir)
    boot.persist(str(state_dir), "auto", str(systemd_host))
    keep(state_dir, persist=False)  # the plan said persist: false
    answer = boot.persist(str(state_dir), "auto", str(systemd_host))
    assert answer["changed"] and answer["unit"] is None and answer["note"] == "nothing to restore at boot"
    assert not (state_dir / "boot" / "ccrollout-host.pyz").exists()
    assert not [path for path in systemd_host.rglob("*") if path.is_file() or path.is_symlink()]


def test_forget_if_idle_leaves_the_units_of_a_record_that_still_keeps_something(tmp_path, systemd_host):
    state_dir = tmp_path / "state"
    keep(state_dir)
    boot.persist(str(state_dir), "auto", str(systemd_host))
    assert not boot.forget_if_idle(str(state_dir), str(systemd_host))
    state.save(str(state_dir), HostState())  # a rollback took the last control
    assert boot.forget_if_idle(str(state_dir), str(systemd_host))
    assert not (systemd_host / boot.unit_name(str(state_dir), "controls")).exists()


def test_the_record_keeps_persist_maps_and_the_last_restore(tmp_path):
    host = HostState(controls={"ccr_pair_beta75": ControlRecord(digests=[DIGEST], persist=False)},
                     maps={"ccr_pair_beta75": {DIGEST: "pair_beta75"}},
                     restored=state.Restored(at=5.0, boot_id="b", controls=["x"], problems=["y: z"]))
    state.save(str(tmp_path), host)
    document = json.loads((tmp_path / "state.json").read_text())
    assert document["controls"]["ccr_pair_beta75"]["persist"] is False
    assert state.load(str(tmp_path)) == host
    # An older record (no persist, no maps, no restored) reads as kept at boot.
    (tmp_path / "state.json").write_text(json.dumps({"controls": {"ccr_reno": {"digests": [DIGEST]}}}))
    older = state.load(str(tmp_path))
    assert older.controls["ccr_reno"].persist and older.maps == {} and older.restored is None


@pytest.mark.parametrize("maps", [{"ccr_x": {DIGEST: "../../etc"}}, {"ccr_x": {"short": "m"}}, {"a/b": {}}])
def test_a_record_with_a_malformed_map_choice_is_refused(tmp_path, maps):
    (tmp_path / "state.json").write_text(json.dumps({"controls": {}, "maps": maps}))
    with pytest.raises(state.StateError, match="record.maps"):
        state.load(str(tmp_path))


@pytest.mark.parametrize("action, refusal", [
    ({"op": "install", "name": "ccr_x", "digest": DIGEST, "map": "../x"}, "map must be a struct_ops map name"),
    ({"op": "install", "name": "ccr_x", "digest": DIGEST, "map": "m" * 129}, "map must be a struct_ops map name"),
    ({"op": "activate", "name": "ccr_x", "digest": DIGEST, "persist": "no"}, "persist must be true or false"),
    ({"op": "persist", "boot_unit": True}, "boot_unit must be one of auto, yes, no"),
    ({"op": "restore", "phase": "everything"}, "phase must be one of all, controls, routes"),
    ({"op": "vmlinux", "path": "/etc/shadow"}, "unknown field 'path'"),
])
def test_the_new_request_fields_are_checked(tmp_path, action, refusal):
    (result,) = agent.handle({"id": 1, "state_dir": str(tmp_path / "state"), "actions": [action]})["results"]
    assert not result["ok"] and refusal in result["error"]
    assert not (tmp_path / "state").exists()


def test_a_restore_of_an_empty_record_changes_nothing_and_says_so(tmp_path):
    (result,) = agent.handle({"id": 1, "state_dir": str(tmp_path), "actions": [{"op": "restore"}]})["results"]
    assert result["ok"] and not result["changed"] and result["restored"] == [] and result["problems"] == []
    assert state.load(str(tmp_path)).restored.boot_id == facts.boot_id()


def test_the_restore_entry_point_runs_a_checked_request(tmp_path):
    def run(*arguments):
        return subprocess.run([sys.executable, "-m", "ccrollout.host", "restore", *arguments], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    usage = run()
    assert usage.returncode == 2 and "usage:" in usage.stderr
    refused = run("--phase", "sometime", str(tmp_path))
    assert refused.returncode == 1 and "phase must be one of" in json.loads(refused.stdout)["error"]
    done = run("--phase", "controls", str(tmp_path))
    assert done.returncode == 0 and json.loads(done.stdout)["restored"] == []


@pytest.mark.parametrize("value, choice", [(None, "auto"), ("auto", "auto"), (True, "yes"), ("yes", "yes"),
                                           (False, "no"), ("False", "no"), ("0", "no")])
def test_the_inventory_says_where_boot_units_go(value, choice):
    host_vars = {} if value is None else {"ccrollout_boot_unit": value}
    assert boot_unit_choice("web1", host_vars) == choice


def test_a_boot_unit_setting_that_is_none_of_them_is_refused():
    with pytest.raises(InvalidInput, match="web1: ccrollout_boot_unit must be auto, true or false"):
        boot_unit_choice("web1", {"ccrollout_boot_unit": "sometimes"})
