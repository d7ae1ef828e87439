"""Fleet scale, measured: ccrollout on lab fleets of 10 to 200 hosts, against the SSH floor
and an Ansible playbook doing the same push in the same run; and the controller alone on
10,000 simulated hosts.

For each lab size it prints `apply` (one stage, the shortest bake), a no-op re-apply and
a rollback: wall time, the controller's CPU seconds and peak RSS, and SSH commands per
host. The SSH floor is 20 connections each running `python3 -c pass`. Run as root:
`make bench`, or `.venv/bin/python bench/fleet.py [--sizes 10,20] [--simulate 10000]`.
"""

import argparse
import compileall
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ccrollout import build, fleet, lab  # noqa: E402
from ccrollout.inventory import load_inventory  # noqa: E402

FORKS = 20
ANSIBLE_HOSTS = 20
BASELINE, BAKE = 0.5, 1
PLAN_WAITS = BASELINE + BAKE  # what the plan itself waits for, however fast the fleet
# The CLI, reporting how many agents (SSH commands) its sessions started, and its own peak
# RSS: VmHWM belongs to the program's own memory, while getrusage's ru_maxrss survives exec
# and would report the pages of this (large, after a simulation) process that forked it.
COUNTING_CLI = ("import atexit, re, sys\nfrom ccrollout import cli, fleet\n"
                "peak = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
                "atexit.register(lambda: sys.stderr.write('bench: commands %d rss %d\\n' % (fleet.Session.commands_run, "
                "peak())))\n"
                "sys.exit(cli.main(sys.argv[1:]))")


def measured(command: list[str], env: dict) -> dict:
    """Run COMMAND; its wall time, CPU seconds and peak RSS (its own, from wait4)."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True)
    stdout, stderr = process.communicate()
    wall = time.monotonic() - started
    # communicate() reaped it; the rusage of the last child reaped is in RUSAGE_CHILDREN's delta.
    return {"wall": wall, "returncode": process.returncode, "stdout": stdout, "stderr": stderr}


def ccrollout(home: Path, *args: str) -> dict:
    env = {**os.environ, "CCROLLOUT_HOME": str(home)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = measured([sys.executable, "-c", COUNTING_CLI, *args], env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    counted = [line.split() for line in result["stderr"].splitlines() if line.startswith("bench: commands")]
    result["commands"] = int(counted[-1][2]) if counted else None
    result["rss_mib"] = int(counted[-1][4]) / 1024 if counted else None
    if result["returncode"] != 0:
        raise SystemExit(f"ccrollout {' '.join(args)} failed ({result['returncode']}):\n"
                         f"{result['stderr'][-3000:]}{result['stdout'][-2000:]}")
    return result


def write_plan(directory: Path) -> Path:
    shutil.copytree(REPO / "bpf", directory / "bpf", dirs_exist_ok=True)
    (directory / "plans").mkdir(exist_ok=True)
    plan = {"algorithms": [{"name": "ccr_reno", "source": "../bpf/ccr_reno.bpf.c"}],
            "rollouts": [{"name": "bench", "algorithm": "ccr_reno", "hosts": "lab", "stages": ["100%"],
                          # The plan: the shortest bake, two intervals judged.
                          "baseline": f"{BASELINE}s", "bake": f"{BAKE}s", "interval": "0.5s",
                          "health": {"min_segments": 0, "min_intervals": 2, "on_inconclusive": "pass"}}]}
    path = directory / "plans" / "bench.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def ssh_floor(inventory: str, count: int) -> float:
    """Open COUNT connections (FORKS at a time) and run `python3 -c pass` on each."""
    hosts = load_inventory([inventory]).select("lab")[:count]

    def one(host) -> None:
        session = fleet.Session(fleet.Target.from_vars(host.name, host.vars))
        try:
            session.open()
            channel = session.connection.create_session()
            channel.exec_command("python3 -c pass")
            if channel.recv_exit_status() != 0:
                raise SystemExit(f"{host.name}: python3 -c pass failed")
        finally:
            session.close()

    started = time.monotonic()
    with ThreadPoolExecutor(FORKS) as pool:
        list(pool.map(one, hosts))
    return time.monotonic() - started


ANSIBLE_PLAY = """
- hosts: lab
  gather_facts: false
  tasks:
    - name: push the object
      copy: {src: "%(object)s", dest: "{{ ccrollout_state_dir }}/bench.bpf.o", mode: "0600"}
    - name: register it (once per kernel; the others find it registered)
      command: bpftool struct_ops register {{ ccrollout_state_dir }}/bench.bpf.o /sys/fs/bpf/ccr-bench
      register: registered
      failed_when: false
    - name: make it the default
      command: sysctl -w net.ipv4.tcp_congestion_control=ccr_reno
"""


def ansible_peer(inventory: str, object_path: Path, work: Path) -> float:
    """The same push, registration and activation as an Ansible playbook, on ANSIBLE_HOSTS hosts."""
    playbook = work / "push.yaml"
    playbook.write_text(ANSIBLE_PLAY % {"object": object_path})
    pins = lab.lab_dir() / "bpffs" / "ccr-bench"  # the lab hosts' shared bpffs, their /sys/fs/bpf
    pins.mkdir(exist_ok=True)
    known_hosts = lab.lab_dir() / "known_hosts"
    env = {**os.environ, "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
           "-o ControlMaster=auto -o ControlPersist=60s", "ANSIBLE_HOST_KEY_CHECKING": "True"}
    limit = ",".join(f"lab{index}" for index in range(1, ANSIBLE_HOSTS + 1))
    playbook_command = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)) or "ansible-playbook"
    try:
        result = measured([playbook_command, "-i", inventory, "-f", str(FORKS), "--limit", limit, str(playbook)], env)
        if result["returncode"] != 0:
            raise SystemExit(f"ansible-playbook failed:\n{result['stdout'][-3000:]}{result['stderr'][-2000:]}")
        return result["wall"]
    finally:
        for index in range(1, ANSIBLE_HOSTS + 1):
            subprocess.run(["ip", "netns", "exec", f"lab{index}", "sysctl", "-qw",
                            "net.ipv4.tcp_congestion_control=reno"], check=False)
        shutil.rmtree(pins, ignore_errors=True)  # removing the pin unregisters the control


def lab_sizes(sizes: list[int]) -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench/fleet.py needs root for the lab (or run --simulate alone)")
    rows, floor, ansible_wall = [], None, None
    # As installed, with its bytecode: a checkout run under PYTHONDONTWRITEBYTECODE would
    # compile some 50 modules at every command.
    compileall.compile_dir(str(REPO / "ccrollout"), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="ccr-bench-fleet-"))
    try:
        plan = write_plan(work)
        for size in sizes:
            # No background traffic and no monitoring: on 2 cores, the lab's Python senders and sink
            # take the CPU the controller and the hosts' sshd need (12 hosts: a no-op apply 2.6 s
            # without, 16 s with), and 200 node_exporters scraped every second take a quarter of it.
            inventory = lab.up(size, with_monitoring=False)
            home = work / f"home-{size}"
            applied = ccrollout(home, "apply", "--json", "--forks", str(FORKS), "-i", inventory, str(plan))
            again = ccrollout(home, "apply", "--json", "--forks", str(FORKS), "-i", inventory, str(plan))
            first = json.loads(applied["stdout"])["rollout"]  # the no-op's rollout changed nothing to undo
            rolled = ccrollout(home, "rollback", "--json", "--forks", str(FORKS), "-i", inventory, first)
            if size >= ANSIBLE_HOSTS and floor is None:
                floor = ssh_floor(inventory, ANSIBLE_HOSTS)
                built = build.build("ccr_reno", work / "bpf" / "ccr_reno.bpf.c")
                ansible_wall = ansible_peer(inventory, built.path, work)
                rows.append(("ansible", ANSIBLE_HOSTS, ansible_wall))
            statuses = {report["status"] for report in json.loads(applied["stdout"])["hosts"].values()}
            assert statuses == {"changed"}, statuses
            rows.append((size, applied, again, rolled))
            print(f"{size:>4} hosts: apply {applied['wall']:6.1f}s (cpu {applied['cpu']:5.1f}s, "
                  f"rss {applied['rss_mib']:5.0f} MiB, {applied['commands'] / size:.1f} commands/host)  "
                  f"no-op {again['wall']:5.1f}s ({again['commands'] / size:.1f}/host)  "
                  f"rollback {rolled['wall']:5.1f}s ({rolled['commands'] / size:.1f}/host)", flush=True)
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    measured_rows = [row for row in rows if row[0] != "ansible"]
    print()
    if floor is not None:
        print(f"SSH floor: {ANSIBLE_HOSTS} connections + `python3 -c pass`: {floor:.2f}s "
              f"({floor / ANSIBLE_HOSTS * 1000:.0f} ms a host)")
        twenty = next((row for row in measured_rows if row[0] == ANSIBLE_HOSTS), None)
        if twenty and ansible_wall:
            own = twenty[1]["wall"] - PLAN_WAITS
            print(f"Ansible, the same push on {ANSIBLE_HOSTS} hosts: {ansible_wall:.1f}s; ccrollout apply "
                  f"{twenty[1]['wall']:.1f}s = {twenty[1]['wall'] / ansible_wall:.3f} x Ansible (target <= 0.1); "
                  f"without the plan's own {PLAN_WAITS:g}s of baseline and bake, {own:.1f}s = "
                  f"{own / ansible_wall:.3f} x; no-op {twenty[2]['wall']:.2f}s (target <= 3 s)")
    if len(measured_rows) >= 2:
        (small, first, *_), (large, last, *_) = measured_rows[0], measured_rows[-1]
        per_host = (last["wall"] - first["wall"]) / (large - small)
        print(f"each host added costs {per_host * 1000:.0f} ms of apply ({small} -> {large} hosts)"
              + (f" = {per_host / (floor / ANSIBLE_HOSTS):.2f} x the SSH floor per host (target <= 2.5)"
                 if floor else ""))
        print(f"{large} hosts: apply {last['wall']:.1f}s (target <= 60 s), controller RSS "
              f"{last['rss_mib']:.0f} MiB (target <= 300)")


def simulate(count: int) -> None:
    """The controller alone: a 4-stage rollout with control sampling on COUNT in-process hosts."""
    import hashlib

    from ccrollout.inventory import Host
    from ccrollout.journal import Journal
    from ccrollout.plan import Algorithm, Rollout, Scope, Stage
    from ccrollout.rollout.judge import Limits
    from ccrollout.rollout.runner import Runner
    from ccrollout.schedule import Schedule
    from ccrollout.simulation import SimulatedFleet

    work = Path(tempfile.mkdtemp(prefix="ccr-bench-sim-"))
    try:
        source = work / "ccr_sim.bpf.o"
        source.write_bytes(b"simulated object")
        built = build.BuiltObject("ccr_sim", source, source, hashlib.sha256(source.read_bytes()).hexdigest(),
                                  1, (), True)
        rollout = Rollout(name="sim", algorithm=Algorithm("ccr_sim", source), hosts="all",
                          stages=(Stage(1, True), Stage(10, True), Stage(50, True), Stage(100, True)),
                          schedule=Schedule(baseline=0.2, settle=0, bake=0.6, interval=0.2),
                          limits=Limits(0.15, 0.10, 0, on_inconclusive="pass"), on_failure="rollback",
                          scope=Scope())
        groups = ("web", "db", "cache", "edge", "batch")
        tracemalloc.start()
        hosts = [Host(f"sim{index:05d}", {}, ("all", groups[index % len(groups)])) for index in range(count)]
        simulated = SimulatedFleet([host.name for host in hosts], ratios={"reno": 0.01, "ccr_sim": 0.011})
        fleet_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        Runner.build_control = lambda self, rollout: built
        started, cpu_started = time.monotonic(), time.process_time()
        with Runner(hosts, Journal(work / "journal.sqlite"), forks=50, progress=lambda text: None,
                    connect=simulated.connect) as runner:
            result = runner.apply("simulated.yaml", rollout)
        wall, cpu = time.monotonic() - started, time.process_time() - cpu_started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.status == "completed", result.message
        messages = sum(host.calls for host in simulated.hosts.values())
        print(f"{count:>6} simulated hosts, 4 stages (1%, 10%, 50%, 100%), controls sampled per stage: "
              f"{wall:6.1f}s wall ({wall / count * 1000:.2f} ms a host), controller cpu {cpu:6.1f}s "
              f"({cpu / count * 1000:.2f} ms a host), controller memory peak {(peak) / 2**20:6.1f} MiB "
              f"({peak / count / 1024:.1f} kB a host; the simulated hosts themselves "
              f"{fleet_bytes / 2**20:.1f} MiB), {messages / count:.1f} messages a host", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "10,20,40,100,200"),
                        help="lab sizes, comma-separated (empty: none)")
    parser.add_argument("--simulate", default=os.environ.get("BENCH_SIMULATE", "1000,3000,10000"),
                        help="simulated fleet sizes, comma-separated (empty: none)")
    args = parser.parse_args()
    for count in [int(size) for size in args.simulate.split(",") if size]:
        simulate(count)
    sizes = [int(size) for size in args.sizes.split(",") if size]
    if sizes:
        print()
        lab_sizes(sizes)


if __name__ == "__main__":
    main()
