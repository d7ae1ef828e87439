"""The lab's monitoring, as an operator's fleet would have it: a node_exporter inside each
host's namespace (so it reports that namespace's /proc/net counters, TcpOutSegs and
TcpRetransSegs among them) and one Prometheus on the controller's side scraping them every
second, its data under the lab directory. Debian's prometheus and prometheus-node-exporter
packages provide both; their own system services are not used (scripts/setup.sh stops them).

Every process of it carries ``<lab dir>/monitoring`` on its command line, so `down` and
`leftovers` find them whatever their pid files say.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ccrollout.errors import LabFailed
from ccrollout.host.osutil import pid_alive, write_atomically
from ccrollout.lab.base import LabPaths, kill, pids_with_marker, read_pid
from ccrollout.lab.netns import host_address, host_index

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROMETHEUS = "/usr/bin/prometheus"
EXPORTER_PORT = 9100                 # node_exporter's default: the instance label is ADDRESS:9100
PROMETHEUS_ADDRESS = "127.0.0.1:9090"
PROMETHEUS_URL = f"http://{PROMETHEUS_ADDRESS}"
SCRAPE_SECONDS = 1                   # short, so a bake of a few 2 s intervals has fresh counters
HOST_LABEL = "lab_host"              # each target's series also carry its lab host name
_READY_SECONDS = 60.0                # first start of Prometheus (TSDB, WAL) on a busy machine
_POLL_SECONDS = 0.2
_STARTED: list[subprocess.Popen] = []  # kept, so no Popen is collected (and warns) while its daemon runs


def monitoring_dir(paths: LabPaths) -> Path:
    return paths.root / "monitoring"


def marker(paths: LabPaths) -> str:
    return str(monitoring_dir(paths))


def check_installed() -> None:
    missing = [path for path in (NODE_EXPORTER, PROMETHEUS) if not os.access(path, os.X_OK)]
    if missing:
        raise LabFailed(f"{', '.join(missing)} not found: run scripts/setup.sh "
                        "(Debian's prometheus and prometheus-node-exporter)")


# --- node_exporter, one per host -------------------------------------------------------

def exporter_pid(paths: LabPaths, name: str) -> int | None:
    pid = read_pid(monitoring_dir(paths) / f"{name}.pid")
    return pid if pid and pid_alive(pid, marker(paths)) else None


def ensure_exporter(paths: LabPaths, subnet, name: str) -> None:
    """Start the host's node_exporter in its namespace unless it runs. Only the netstat
    collector: it is all the lab's judging reads, and keeps each scrape cheap."""
    if exporter_pid(paths, name):
        return
    directory = monitoring_dir(paths)
    directory.mkdir(mode=0o755, exist_ok=True)
    listen = f"{host_address(subnet, host_index(name))}:{EXPORTER_PORT}"
    argv = ["ip", "netns", "exec", name, NODE_EXPORTER, f"--web.listen-address={listen}",
            "--collector.disable-defaults", "--collector.netstat",
            # Not read (the textfile collector is off): it marks the process as the lab's.
            f"--collector.textfile.directory={directory}/textfile"]
    _spawn(argv, directory / f"{name}.pid", directory / f"{name}.log")


def _spawn(argv: list[str], pidfile: Path, logfile: Path) -> None:
    """Start ARGV in a session of its own, outliving this process; its pid into PIDFILE.
    `ip netns exec` execs the program itself, so the pid is the program's."""
    with open(logfile, "ab") as log:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True, close_fds=True)
        except OSError as exc:
            raise LabFailed(f"{argv[0]} did not start: {exc}") from None
    _STARTED.append(process)
    write_atomically(pidfile, f"{process.pid}\n", mode=0o644)


# --- Prometheus ---------------------------------------------------------------------------

def prometheus_pid(paths: LabPaths) -> int | None:
    pid = read_pid(monitoring_dir(paths) / "prometheus.pid")
    return pid if pid and pid_alive(pid, marker(paths)) else None


def scrape_config(subnet, names) -> str:
    """Prometheus's configuration: every lab host's node_exporter, labelled with its name.
    JSON is YAML, so no YAML writer is needed."""
    targets = [{"targets": [f"{host_address(subnet, host_index(name))}:{EXPORTER_PORT}"],
                "labels": {HOST_LABEL: name}} for name in names]
    config = {"global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s",
                         "evaluation_interval": f"{SCRAPE_SECONDS}s"},
              "scrape_configs": [{"job_name": "lab", "static_configs": targets}]}
    return json.dumps(config, indent=2) + "\n"


def ensure_prometheus(paths: LabPaths, subnet, names) -> None:
    """Prometheus scraping exactly NAMES: started, or told to reload a changed configuration."""
    directory = monitoring_dir(paths)
    directory.mkdir(mode=0o755, exist_ok=True)
    config = directory / "prometheus.yml"
    text = scrape_config(subnet, names)
    changed = not config.exists() or config.read_text() != text
    if changed:
        write_atomically(config, text, mode=0o644)
    pid = prometheus_pid(paths)
    if pid and changed:
        os.kill(pid, signal.SIGHUP)   # Prometheus rereads its configuration on SIGHUP
    elif not pid:
        if _answers(f"{PROMETHEUS_URL}/-/ready"):
            raise LabFailed(f"something else answers on {PROMETHEUS_ADDRESS}: stop it (e.g. "
                            "`systemctl disable --now prometheus`) and run `ccrollout lab up` again")
        _spawn([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory}/data",
                f"--web.listen-address={PROMETHEUS_ADDRESS}", "--storage.tsdb.retention.time=1d"],
               directory / "prometheus.pid", directory / "prometheus.log")
    wait_for_targets(paths, len(names))


def _our_prometheus() -> subprocess.Popen | None:
    """The Prometheus this process started last, if it started one."""
    return next((process for process in reversed(_STARTED) if process.args[0] == PROMETHEUS), None)


def _prometheus_runs(paths: LabPaths) -> bool:
    """Whether Prometheus still runs: asked of the process itself where this process started
    it. Its pid file's check reads the command line, which the kernel fills in only once the
    new program is loaded: empty for a moment after exec, longer with a cold page cache (the
    first `lab up` on a fresh machine)."""
    ours = _our_prometheus()
    return ours.poll() is None if ours else prometheus_pid(paths) is not None


def _how_it_ended() -> str:
    """How the Prometheus this process started ended, where it did: what its log may not say."""
    ours = _our_prometheus()
    code = ours.poll() if ours else None
    if code is None:
        return ""
    return f" (killed by signal {-code})" if code < 0 else f" (exit status {code})"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def up_targets() -> int | None:
    """How many of the lab's targets Prometheus last scraped successfully; None if it does
    not answer."""
    try:
        with urllib.request.urlopen(f"{PROMETHEUS_URL}/api/v1/query?query=sum(up)", timeout=2) as response:
            result = json.load(response)["data"]["result"]
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return None
    return int(float(result[0]["value"][1])) if result else 0


def wait_for_targets(paths: LabPaths, count: int) -> None:
    """Until Prometheus has scraped every host once, so a rollout started next has figures."""
    deadline = time.monotonic() + _READY_SECONDS
    while up_targets() != count:
        if not _prometheus_runs(paths):
            log = monitoring_dir(paths) / "prometheus.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise LabFailed(f"Prometheus ended while starting: {tail[0] if tail else 'no log'}{_how_it_ended()}")
        if time.monotonic() > deadline:
            raise LabFailed(f"Prometheus at {PROMETHEUS_URL} did not scrape all {count} hosts "
                            f"within {_READY_SECONDS:g}s (see {monitoring_dir(paths)}/prometheus.log)")
        time.sleep(_POLL_SECONDS)


# --- all of it ------------------------------------------------------------------------------

def ensure(paths: LabPaths, subnet, names) -> None:
    check_installed()
    for name in names:
        ensure_exporter(paths, subnet, name)
    ensure_prometheus(paths, subnet, names)


def monitoring_pids(paths: LabPaths) -> list[int]:
    return pids_with_marker(marker(paths))


def stop(paths: LabPaths) -> None:
    """End every monitoring process of the lab and remove its files (Prometheus's data too)."""
    stuck = kill(monitoring_pids(paths))
    if stuck:
        raise LabFailed(f"monitoring processes {sorted(stuck)} do not end, even on SIGKILL")
    shutil.rmtree(monitoring_dir(paths), ignore_errors=True)


def status(paths: LabPaths) -> dict:
    """The lab's Prometheus as `lab status` shows it (each host shows its node_exporter)."""
    pid = prometheus_pid(paths)
    return {"url": PROMETHEUS_URL, "running": pid is not None, "pid": pid,
            "targets_up": up_targets() if pid else None}
