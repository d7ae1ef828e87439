"""Sources as people write them, through the lab; and controls that survive a reboot.

Each fixture of bpf/fixtures (UAPI headers, the older SEC(".struct_ops"), two controls in
one object, a vmlinux.h written by `ccrollout vmlinux`) is built and rolled out to every lab
host, checked from outside ccrollout (bpftool, the sysctl in the host's namespace, `ss -ti`
of a new connection, the pins), and rolled back leaving nothing.

A reboot is simulated as a reboot looks to the hosts: the pins go (which unregisters the
controls), the sysctls and routes are reset; then each host runs what its boot unit would run
(the lab's hosts are namespaces of this machine, so the inventory says ccrollout_boot_unit=false
and no unit is written) and everything is back, with the same digests. A control a rollback
removed never comes back.
"""

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ccrollout import lab
from kernelview import registered_controls, struct_ops_links
from labkit import (HOSTS, LAB_HEALTH, assert_gone, ccrollout, default_of, host_state, pin_dir,
                    roll_back_every_rollout, ss_congestion, struct_ops_named, write_plan)

# These tests are about sources and restores, not the judge: a BPF control's occasional burst
# of losses on the lab's small queue (see the README) must not fail a one-stage rollout
# whose baseline holds a single interval.
ONE_STAGE = {"stages": ["100%"], "health": {**LAB_HEALTH, "max_retransmit_ratio": "60%", "max_increase": "60%"}}
UNIT_DIR = Path("/etc/systemd/system")


def units_of_ccrollout() -> list[str]:
    return sorted(str(path) for path in UNIT_DIR.rglob("ccrollout-*")) if UNIT_DIR.is_dir() else []


@pytest.fixture(scope="module", autouse=True)
def machine_units_untouched():
    """Nothing a lab host does may write this machine's systemd units."""
    before = units_of_ccrollout()
    yield
    assert units_of_ccrollout() == before


def in_host(host: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", host, *command], capture_output=True, text=True, timeout=60)


def sysctl(host: str, key: str) -> str:
    return in_host(host, "sysctl", "-n", key).stdout.strip()


def route_of(host: str, prefix: str) -> str:
    return in_host(host, "ip", "-4", "route", "show", "exact", prefix).stdout.strip()


def map_of(name: str) -> dict:
    """The kernel's live struct_ops map of a control, the one a link holds (bpftool names a map
    after its C variable). An unlinked map of the same name may still be listed: it lives on
    while connections opened under it are open, as after simulate_reboot."""
    linked = {link.get("map_id") for link in struct_ops_links()}
    found = [entry for entry in struct_ops_named(name) if entry["id"] in linked]
    assert len(found) == 1, (found, struct_ops_named(name))
    return found[0]


def assert_serves(name: str, map_name: str, new_connections: str | None = None) -> None:
    """NAME runs on every lab host, as an observer outside ccrollout sees it; a new connection
    to the sink runs NEW_CONNECTIONS (by default NAME; a route's congctl comes first)."""
    for host in HOSTS:
        assert default_of(host) == name
    assert name in registered_controls()
    loaded = map_of(map_name)
    assert loaded.get("kernel_struct_ops") == "tcp_congestion_ops"
    assert len([link for link in struct_ops_links() if link.get("map_id") == loaded["id"]]) == 1
    assert (pin_dir(name) / "link").exists() and len(os.listdir(pin_dir(name) / "users")) == len(HOSTS)
    assert ss_congestion("lab2") == (new_connections or name)


CASES = {
    # name: (source under bpf/, its struct_ops map, plan options of the algorithm)
    "ccr_uapi": ("fixtures/ccr_uapi.bpf.c", "ccr_uapi", {}),
    "ccr_legacy": ("fixtures/ccr_legacy.bpf.c", "ccr_legacy", {}),
    "ccr_pair_beta75": ("fixtures/ccr_pair.bpf.c", "pair_beta75", {}),
    "ccr_vmlinux": ("fixtures/ccr_vmlinux.bpf.c", "ccr_vmlinux", {"cflags": ["-I../include"]}),
}


def write_vmlinux_h(journal_home: Path, fleet: str, tmp_path: Path) -> Path:
    target = tmp_path / "include" / "vmlinux.h"
    target.parent.mkdir(parents=True, exist_ok=True)
    several = ccrollout(journal_home, "vmlinux", "-i", fleet, "lab", "-o", str(target))
    assert several.returncode == 3 and "selects 3 hosts" in several.stderr
    written = ccrollout(journal_home, "vmlinux", "-i", fleet, "lab1", "-o", str(target))
    assert written.returncode == 0, written.stderr
    assert f"lab1: wrote {target}" in written.stderr and os.uname().release in written.stderr
    assert target.read_text().startswith("#ifndef __VMLINUX_H__")
    return target


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_source_as_people_write_it_rolls_through_the_lab(fleet, journal_home, tmp_path, name):
    source, map_name, options = CASES[name]
    before = {host: default_of(host) for host in HOSTS}
    if name == "ccr_vmlinux":
        write_vmlinux_h(journal_home, fleet, tmp_path)
    plan = write_plan(tmp_path, name, source, options, **ONE_STAGE)
    try:
        applied = ccrollout(journal_home, "apply", "--json", "-i", fleet, str(plan))
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert "no boot unit: ccrollout_boot_unit is false" in applied.stderr
        assert_serves(name, map_name)
        if name == "ccr_pair_beta75":  # the other control of the object was never created
            assert "ccr_pair_beta50" not in registered_controls() and not struct_ops_named("pair_beta50")
    finally:
        rolled = ccrollout(journal_home, "rollback", "-i", fleet)
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    assert {host: default_of(host) for host in HOSTS} == before
    assert_gone(name)


def test_a_control_in_the_older_section_is_pinned_and_upgraded_in_place(fleet, journal_home, tmp_path):
    """Loaded as a link (BPF_F_LINK), so a new version swaps in behind the same pinned link."""
    first = write_plan(tmp_path, "ccr_legacy", "fixtures/ccr_legacy.bpf.c", **ONE_STAGE)
    plan = yaml.safe_load(first.read_text())
    plan["algorithms"][0]["cflags"] = ["-DLEGACY_MIN_CWND=3U"]
    plan["rollouts"][0]["name"] = "test-ccr_legacy-v2"
    second = first.with_name("legacy-v2.yaml")
    second.write_text(yaml.safe_dump(plan, sort_keys=False))
    try:
        assert ccrollout(journal_home, "apply", "-i", fleet, str(first)).returncode == 0
        (link,) = struct_ops_links()
        upgraded = ccrollout(journal_home, "apply", "-i", fleet, str(second))
        assert upgraded.returncode == 0, upgraded.stderr + upgraded.stdout
        assert "upgraded in place" in upgraded.stdout
        (after,) = struct_ops_links()
        assert after["id"] == link["id"] and after["map_id"] != link["map_id"]  # same link, new program
        assert map_of("ccr_legacy")["id"] == after["map_id"]
    finally:
        roll_back_every_rollout(journal_home, fleet)
    assert all(default_of(host) == "reno" for host in HOSTS)
    assert_gone("ccr_legacy")


# -- a reboot -----------------------------------------------------------------------------------

CONNECTED, ADDED = "10.199.0.0/24", "10.199.0.254/32"


def two_rollouts_plan(tmp_path: Path) -> Path:
    """beta75 of the pair as every host's default, with ECN and a route of its own; the legacy
    control on the connected route only."""
    path = write_plan(tmp_path, "ccr_pair_beta75", "fixtures/ccr_pair.bpf.c", {"ecn": True},
                      scope={"default": True, "routes": [ADDED]}, **ONE_STAGE)
    plan = yaml.safe_load(path.read_text())
    plan["algorithms"].append({"name": "ccr_legacy", "source": "../bpf/fixtures/ccr_legacy.bpf.c"})
    plan["rollouts"].append({**plan["rollouts"][0], "name": "test-ccr_legacy", "algorithm": "ccr_legacy",
                             "scope": {"default": False, "routes": [CONNECTED]}})
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def simulate_reboot(before: dict) -> None:
    """What a reboot leaves: no pins (so no controls), sysctls and routes as at boot."""
    pins = lab.lab_dir() / "bpffs" / "ccrollout"
    for top, directories, files in os.walk(pins, topdown=False):
        for entry in files:
            os.unlink(os.path.join(top, entry))  # a link's pin: its control unregisters
        for entry in directories:
            os.rmdir(os.path.join(top, entry))
    deadline = time.monotonic() + 5
    while {"ccr_pair_beta75", "ccr_legacy"} & registered_controls() and time.monotonic() < deadline:
        time.sleep(0.05)
    for host, (default, ecn, connected, added) in before.items():
        assert in_host(host, "sysctl", "-qw", f"net.ipv4.tcp_congestion_control={default}").returncode == 0
        assert in_host(host, "sysctl", "-qw", f"net.ipv4.tcp_ecn={ecn}").returncode == 0
        assert in_host(host, "ip", "route", "replace", *connected.split()).returncode == 0
        if not added:
            in_host(host, "ip", "route", "del", ADDED)


def run_boot_units(boot: dict, expect_changed: bool) -> list[dict]:
    """On each host, what its boot units would run, in their order, with the host's bpffs."""
    answers = []
    for host in HOSTS:
        assert boot[host]["units"] == [] and boot[host]["commands"], boot[host]
        for command in boot[host]["commands"]:
            script = f"mount --bind {shlex.quote(str(lab.lab_dir() / 'bpffs'))} /sys/fs/bpf && exec {shlex.join(command)}"
            done = in_host(host, "sh", "-c", script)
            assert done.returncode == 0, done.stdout + done.stderr
            answers.append(json.loads(done.stdout))
    assert all(answer["ok"] and answer["changed"] == expect_changed for answer in answers), answers
    return answers


def boot_facts(journal_home: Path, fleet: str) -> dict:
    facts = ccrollout(journal_home, "facts", "--json", "-i", fleet)
    assert facts.returncode == 0, facts.stderr
    return {host: value["boot"] for host, value in json.loads(facts.stdout).items()}


def test_controls_come_back_after_a_reboot_and_a_rolled_back_one_never_does(fleet, journal_home, tmp_path):
    before = {host: (default_of(host), sysctl(host, "net.ipv4.tcp_ecn"), route_of(host, CONNECTED),
                     route_of(host, ADDED)) for host in HOSTS}
    try:
        applied = ccrollout(journal_home, "apply", "-i", fleet, str(two_rollouts_plan(tmp_path)))
        assert applied.returncode == 0, applied.stderr + applied.stdout
        recorded = {host: {name: record["digests"][-1] for name, record in host_state(host)["controls"].items()}
                    for host in HOSTS}
        boot = boot_facts(journal_home, fleet)
        assert all(boot[host]["kept"] == ["ccr_legacy", "ccr_pair_beta75"] for host in HOSTS)
        assert [command[2:5] for command in boot["lab1"]["commands"]] == [["restore", "--phase", "controls"],
                                                                          ["restore", "--phase", "routes"]]

        simulate_reboot(before)
        assert not {"ccr_pair_beta75", "ccr_legacy"} & registered_controls() and not struct_ops_links()
        assert "drifted" in ccrollout(journal_home, "status", "-i", fleet).stdout
        run_boot_units(boot, expect_changed=True)
        assert_serves("ccr_pair_beta75", "pair_beta75", new_connections="ccr_legacy")  # the sink's route
        assert "ccr_pair_beta50" not in registered_controls()  # the object's other control stays out
        assert len(struct_ops_links()) == 2 and map_of("ccr_legacy") and (pin_dir("ccr_legacy") / "link").exists()
        for host in HOSTS:
            digests = {name: record["digests"][-1] for name, record in host_state(host)["controls"].items()}
            assert digests == recorded[host]  # the same versions came back
            for name, digest in digests.items():
                assert (pin_dir(name) / f"object-{digest}").is_dir()
            assert sysctl(host, "net.ipv4.tcp_ecn") == "1"
            assert "congctl ccr_pair_beta75" in route_of(host, ADDED)
            assert "congctl ccr_legacy" in route_of(host, CONNECTED)
            assert host_state(host)["restored"]["controls"] == ["ccr_pair_beta75", "ccr_legacy"]
        status = ccrollout(journal_home, "status", "-i", fleet)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("restored at boot") == len(HOSTS) and "(this boot)" in status.stdout
        links = struct_ops_links()
        run_boot_units(boot, expect_changed=False)  # again: nothing to do
        assert struct_ops_links() == links

        history = json.loads(ccrollout(journal_home, "history", "--json").stdout)
        beta75 = next(r["id"] for r in history if r["algorithm"] == "ccr_pair_beta75")
        assert ccrollout(journal_home, "rollback", "-i", fleet, beta75).returncode == 0
        simulate_reboot(before)
        run_boot_units(boot_facts(journal_home, fleet), expect_changed=True)
        assert "ccr_pair_beta75" not in registered_controls() and not struct_ops_named("pair_beta75")
        for host in HOSTS:
            assert default_of(host) == before[host][0] and sysctl(host, "net.ipv4.tcp_ecn") == before[host][1]
            assert route_of(host, ADDED) == before[host][3]
            assert "congctl ccr_legacy" in route_of(host, CONNECTED)
            assert list(host_state(host)["controls"]) == ["ccr_legacy"]
    finally:
        roll_back_every_rollout(journal_home, fleet)
    for host in HOSTS:
        assert (default_of(host), sysctl(host, "net.ipv4.tcp_ecn"), route_of(host, CONNECTED),
                route_of(host, ADDED)) == before[host]
        assert host_state(host)["controls"] == {}
        assert not (lab.lab_dir() / "hosts" / host / "boot" / "ccrollout-host.pyz").exists()
    assert_gone("ccr_pair_beta75")
    assert_gone("ccr_legacy")
