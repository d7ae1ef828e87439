"""The runner, stage and canary against a simulated fleet that speaks the host protocol
in-process: no root, no SSH, no kernel. The lab tests prove the same on real hosts."""

import hashlib

import pytest

from ccrollout import build
from ccrollout.inventory import Host
from ccrollout.journal import Access, Journal
from ccrollout.plan import Algorithm, Rollout, Scope, Stage
from ccrollout.rollout import controls
from ccrollout.rollout.judge import Limits
from ccrollout.rollout.runner import Runner
from ccrollout.schedule import Schedule
from ccrollout.simulation import SimulatedFleet
from ccrollout.status import ChangeState, HostStatus, RolloutStatus

FAST = Schedule(baseline=0.2, settle=0, bake=0.3, interval=0.1)
LIMITS = Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=50)


@pytest.fixture
def built(tmp_path, monkeypatch):
    """A stand-in for the compiled object: the runner only reads its bytes and digest."""
    path = tmp_path / "ccr_sim.bpf.o"
    path.write_bytes(b"not really an ELF object")
    obj = build.BuiltObject("ccr_sim", tmp_path / "ccr_sim.bpf.c", path,
                            hashlib.sha256(path.read_bytes()).hexdigest(), 1, (), True)
    monkeypatch.setattr(Runner, "build_control", lambda self, rollout: obj)
    return obj


def rollout_of(stages=(1, "50%", "100%"), control=None, **options) -> Rollout:
    return Rollout(name="sim", algorithm=Algorithm("ccr_sim", build.Path("/dev/null")), hosts="all",
                   stages=tuple(Stage(int(str(s).rstrip("%")), percent=str(s).endswith("%")) for s in stages),
                   schedule=options.pop("schedule", FAST), limits=options.pop("limits", LIMITS),
                   on_failure="rollback", scope=Scope(), control=control, **options)


def inventory_hosts(count: int, groups=("web", "db")):
    return [Host(f"h{index:03d}", {}, ("all", groups[index % len(groups)])) for index in range(count)]


def apply(tmp_path, fleet, hosts, rollout, **runner_options):
    journal = Journal(tmp_path / "journal.sqlite")
    with Runner(hosts, journal, forks=8, progress=lambda text: None, connect=fleet.connect,
                **runner_options) as runner:
        return runner.apply("plan.yaml", rollout), journal


def test_a_good_control_goes_through_every_stage(tmp_path, built):
    hosts = inventory_hosts(12)
    fleet = SimulatedFleet([h.name for h in hosts], ratios={"reno": 0.01, "ccr_sim": 0.012})
    result, journal = apply(tmp_path, fleet, hosts, rollout_of())
    assert result.status == RolloutStatus.COMPLETED, result.message
    assert all(fleet.hosts[h.name].default == "ccr_sim" for h in hosts)
    assert all(report.status == HostStatus.CHANGED for report in result.hosts.values())
    assert all(host.claim is None for host in fleet.hosts.values())  # released at the end


def test_a_broken_control_is_rolled_back_at_the_first_stage_and_later_hosts_are_never_reached(tmp_path, built):
    hosts = inventory_hosts(12)
    fleet = SimulatedFleet([h.name for h in hosts], ratios={"reno": 0.01, "ccr_sim": 0.5})
    result, journal = apply(tmp_path, fleet, hosts, rollout_of())
    assert result.status == RolloutStatus.ROLLED_BACK and result.exit_code == 1
    assert all(host.default == "reno" for host in fleet.hosts.values())
    stage_one = journal.changes(result.rollout_id)
    assert [c.state for c in stage_one] == [ChangeState.UNDONE]
    reached = {name for name, host in fleet.hosts.items() if host.calls}
    (first_stage,) = {c.host for c in stage_one}
    assert len(reached) == 1 + 2  # the first stage's host and its two controls, nobody else


def test_the_control_group_is_bounded_spread_and_recorded(tmp_path, built):
    hosts = inventory_hosts(40, groups=("web", "db", "cache", "edge"))
    fleet = SimulatedFleet([h.name for h in hosts])
    result, journal = apply(tmp_path, fleet, hosts, rollout_of(stages=(4, "100%"), control=Stage(4)))
    assert result.status == RolloutStatus.COMPLETED, result.message
    (plan,) = [e["data"]["stages"] for e in journal.events(result.rollout_id) if e["kind"] == "plan"]
    first = plan[0]
    assert len(first["hosts"]) == 4 and len(first["controls"]) == 4
    assert not set(first["controls"]) & set(first["hosts"])
    group_of = {h.name: h.groups[-1] for h in hosts}
    assert {group_of[name] for name in first["controls"]} == {"web", "db", "cache", "edge"}
    verdict = next(e["data"] for e in journal.events(result.rollout_id) if e["kind"] == "verdict")
    assert verdict["controls"] == first["controls"]


def test_controls_are_drawn_reproducibly():
    candidates = [f"h{index}" for index in range(100)]
    group_of = {name: f"g{index % 5}" for index, name in enumerate(candidates)}
    first = controls.choose_controls(candidates, 10, "seed/1", group_of)
    assert first == controls.choose_controls(candidates, 10, "seed/1", group_of)
    assert first != controls.choose_controls(candidates, 10, "seed/2", group_of)
    assert sorted(group_of[name] for name in first) == sorted([f"g{i}" for i in range(5)] * 2)
    assert controls.choose_controls(candidates[:3], 10, "seed", group_of) == candidates[:3]
    assert controls.control_count(None, 1, 100) == 2 and controls.control_count(None, 8, 100) == 8
    assert controls.control_count(Stage(10, percent=True), 1, 300) == 30
    assert controls.control_count(Stage(0), 5, 300) == 0


def test_applying_again_changes_nothing_and_bakes_nothing(tmp_path, built):
    hosts = inventory_hosts(6)
    fleet = SimulatedFleet([h.name for h in hosts])
    first, journal = apply(tmp_path, fleet, hosts, rollout_of())
    assert first.status == RolloutStatus.COMPLETED
    calls_before = {name: host.calls for name, host in fleet.hosts.items()}
    again, journal = apply(tmp_path, fleet, hosts, rollout_of())
    assert again.status == RolloutStatus.COMPLETED
    assert all(report.status == HostStatus.OK for report in again.hosts.values())
    verdicts = [e["data"]["outcome"] for e in journal.events(again.rollout_id) if e["kind"] == "verdict"]
    assert set(verdicts) == {"unchanged"}
    # claim with facts, change, release: a few messages per host, and never a bake's samples
    assert all(fleet.hosts[name].calls - calls_before[name] <= 4 for name in calls_before)


def test_a_host_that_refuses_in_a_later_stage_rolls_back_the_earlier_ones(tmp_path, built):
    hosts = inventory_hosts(4)
    fleet = SimulatedFleet([h.name for h in hosts])
    fleet.hosts["h003"].problems.append("the kernel has no BTF")
    result, journal = apply(tmp_path, fleet, hosts, rollout_of(stages=(1, 1, 2)))
    assert result.status == RolloutStatus.ROLLED_BACK and result.exit_code == 5
    assert "h003" in result.message and "no BTF" in result.message
    assert all(host.default == "reno" for host in fleet.hosts.values())


def test_preflight_all_refuses_before_any_change(tmp_path, built):
    from ccrollout.errors import HostFailed
    hosts = inventory_hosts(4)
    fleet = SimulatedFleet([h.name for h in hosts])
    fleet.hosts["h003"].problems.append("the kernel has no BTF")
    with pytest.raises(HostFailed, match="nothing was changed"):
        apply(tmp_path, fleet, hosts, rollout_of(stages=(1, 1, 2)), preflight_all=True)
    assert all(host.default == "reno" and not host.records for host in fleet.hosts.values())


def test_an_unreachable_control_is_left_out_but_an_unreachable_stage_host_ends_the_rollout(tmp_path, built):
    hosts = inventory_hosts(6)
    fleet = SimulatedFleet([h.name for h in hosts])
    fleet.hosts["h005"].unreachable = True
    result, journal = apply(tmp_path, fleet, hosts, rollout_of(stages=(1, "100%"), control=Stage(5)))
    first_verdict = next(e["data"] for e in journal.events(result.rollout_id) if e["kind"] == "verdict")
    assert first_verdict["outcome"] == "pass" and "h005" not in first_verdict["controls"]
    assert result.status == RolloutStatus.ROLLED_BACK and result.exit_code == 5 and "h005" in result.message
    assert all(host.default == "reno" for host in fleet.hosts.values())


@pytest.mark.parametrize("decision, status", [("promote", RolloutStatus.COMPLETED), ("abort", RolloutStatus.ABORTED)])
def test_the_gate_reads_then_records_while_the_controller_waits(tmp_path, built, decision, status):
    """promote/abort open the journal to read, then to write their decision, while the
    paused controller holds it open and polls it (SQLite's WAL lets both)."""
    import threading
    import time

    from ccrollout import cli
    fleet = SimulatedFleet([f"h{index:03d}" for index in range(2)])
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=apply(
        tmp_path, fleet, inventory_hosts(2), rollout_of(stages=(1,), pause=True))[0]))
    worker.start()
    journal_path = tmp_path / "journal.sqlite"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if journal_path.exists() and [r for r in Journal(journal_path, Access.READ).rollouts() if r["status"] == "paused"]:
            break
        time.sleep(0.05)
    assert cli.main([decision, "--journal", str(journal_path)]) == 0
    worker.join(timeout=30)
    assert outcome["result"].status == status
