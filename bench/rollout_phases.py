"""How long each phase of a rollout takes per host, serially and in parallel.

Brings up a lab of HOSTS hosts, applies one stage to all of them with --forks 1
and with --forks HOSTS (rolling back in between), and prints each phase's wall
time per host and the parallel speed-up. Run as root: `make bench`.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ccrollout import lab

REPO = Path(__file__).resolve().parent.parent
HOSTS = int(os.environ.get("BENCH_HOSTS", "6"))
PHASES = ("gather", "change", "rollback")


def ccrollout(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CCROLLOUT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "ccrollout.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO)


def write_plan(directory: Path) -> Path:
    shutil.copytree(REPO / "bpf", directory / "bpf")
    (directory / "plans").mkdir()
    plan = {"algorithms": [{"name": "ccr_reno", "source": "../bpf/ccr_reno.bpf.c"}],
            "rollouts": [{"name": "bench", "algorithm": "ccr_reno", "hosts": "lab", "stages": ["100%"],
                          "baseline": "1s", "bake": "3s", "interval": "1s",
                          "health": {"min_segments": 100}}]}
    path = directory / "plans" / "bench.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def run(home: Path, inventory: str, plan: Path, forks: int) -> dict:
    started = time.monotonic()
    applied = ccrollout(home, "apply", "--json", "--forks", str(forks), "-i", inventory, str(plan))
    wall = time.monotonic() - started
    if applied.returncode != 0:
        raise SystemExit(f"apply failed ({applied.returncode}):\n{applied.stderr}{applied.stdout}")
    summary = json.loads(applied.stdout)
    started = time.monotonic()
    rolled = ccrollout(home, "rollback", "--json", "--forks", str(forks), "-i", inventory)
    rollback_wall = time.monotonic() - started
    if rolled.returncode != 0:
        raise SystemExit(f"rollback failed:\n{rolled.stderr}{rolled.stdout}")
    hosts = summary["hosts"]
    for name, report in json.loads(rolled.stdout)["hosts"].items():
        hosts[name]["phases"].update(report["phases"])
    return {"wall": wall, "rollback_wall": rollback_wall, "hosts": hosts}


def main() -> int:
    if os.geteuid() != 0:
        print("bench/rollout_phases.py needs root (it builds the lab)")
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        plan = write_plan(Path(scratch))
        try:
            inventory = lab.up(HOSTS)
            lab.traffic_start()
            results = {forks: run(Path(scratch) / f"home{forks}", inventory, plan, forks)
                       for forks in (1, HOSTS)}
        finally:
            lab.traffic_stop()
            lab.down()
    print(f"rollout phases on {HOSTS} lab hosts (seconds; per host: mean, and the slowest)")
    print(f"{'phase':<12}" + "".join(f"{f'forks={forks}':>24}" for forks in results))
    for phase in PHASES:
        cells = []
        for result in results.values():
            times = [report["phases"][phase] for report in result["hosts"].values() if phase in report["phases"]]
            cells.append(f"{sum(times) / len(times):>11.3f} {max(times):>11.3f}" if times else f"{'-':>24}")
        print(f"{phase:<12}" + "".join(f"{cell:>24}" for cell in cells))
    serial, parallel = results[1], results[HOSTS]
    print(f"{'apply wall':<12}{serial['wall']:>24.2f}{parallel['wall']:>24.2f}")
    print(f"{'rollback wall':<12}{serial['rollback_wall']:>23.2f}{parallel['rollback_wall']:>24.2f}")
    print(f"rollback speed-up forks={HOSTS} vs forks=1: {serial['rollback_wall'] / parallel['rollback_wall']:.2f}x")
    fixed = 4.0  # baseline 1 s + bake 3 s, the same at any parallelism
    print(f"apply speed-up without the fixed baseline+bake: "
          f"{(serial['wall'] - fixed) / (parallel['wall'] - fixed):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
