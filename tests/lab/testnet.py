"""Small test networks for lab tests: named network namespaces joined through a bridge
namespace, optional nftables rules, an optional bpffs shared by the processes started in
them. A `Networks` factory removes everything it made (processes, namespaces, pins, mounts)
whatever the test did, then asserts that nothing is left and that the kernel holds no
control or struct_ops link it did not hold before.

The fixtures `testnet` (per test) and `module_testnet` (per module) in conftest.py hand out
a factory: `testnet("ccx-", {"ccx-a": "10.198.0.1", "ccx-b": "10.198.0.2"}, bpffs=True)`.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kernelview import Snapshot
from labkit import REPO

COMMAND_TIMEOUT = 30    # seconds for any one command
UNLOAD_TIMEOUT = 5      # the kernel frees a link asynchronously after its last reference
PREFIX_LEN = 24
HOST_LINK = "eth0"      # each host's end of its veth; the other end is a bridge port
BRIDGE = "br0"
KERNEL_PINS = {"maps.debug", "progs.debug"}  # the kernel's own, in every bpffs; cannot be removed
# Run in the namespace: give the command the shared bpffs (`ip netns exec` mounts a fresh
# /sys, whose /sys/fs/bpf is empty; a bpffs mounted there would be the process's own).
WITH_BPFFS = 'mount --bind "$1" /sys/fs/bpf && shift && exec "$@"'


def run(*command: str, check: bool = True, input: str | None = None, timeout: float = COMMAND_TIMEOUT,
        **options) -> subprocess.CompletedProcess:
    result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                            **options)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def in_netns(netns: str, *command: str, **options) -> subprocess.CompletedProcess:
    """COMMAND in NETNS as an observer: no shared bpffs."""
    return run("ip", "netns", "exec", netns, *command, **options)


def wait_until(predicate, timeout: float = UNLOAD_TIMEOUT, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()  # by its own pid: only what the test started
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=COMMAND_TIMEOUT)


def namespaces(prefix: str) -> list[str]:
    return [name for name in run("ip", "netns", "list").stdout.split() if name.startswith(prefix)]


def delete_namespace(name: str) -> None:
    # Deleting a namespace takes its veths, its bridge and its nft tables with it.
    run("ip", "netns", "delete", name, check=False)


def bpf_mounts() -> list[str]:
    mounts = [line.split()[1:3] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [point for point, fs_type in mounts if fs_type == "bpf"]


def bpffs_mounts(prefix: str) -> list[str]:
    """The bpffs instances of networks named PREFIX..., mounted under the temporary directory."""
    start = os.path.join(tempfile.gettempdir(), prefix + "bpffs-")
    return [point for point in bpf_mounts() if point.startswith(start)]


def remove_tree(path: str) -> None:
    """rm -r of what is below PATH in bpffs, which holds only directories and pins (removing
    a pin unloads what it holds), but for the kernel's own pins at its top."""
    for root, directories, files in os.walk(path, topdown=False):
        for name in files:
            if not (root == path and name in KERNEL_PINS):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(root, name))
        for name in directories:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(root, name))


def unmount_bpffs(mount_point: str) -> None:
    """Unpin everything, unmount, remove the mount point."""
    if mount_point in bpf_mounts():
        try:
            remove_tree(mount_point)
        finally:
            run("umount", mount_point, check=False)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(mount_point)


def remove_leftovers(prefix: str) -> None:
    """What a killed earlier run left of networks named PREFIX (its pins keep controls loaded)."""
    for name in namespaces(prefix):
        delete_namespace(name)
    for mount_point in bpffs_mounts(prefix):
        unmount_bpffs(mount_point)


class Network:
    """Hosts (network namespaces) on one bridge, and the processes started in them."""

    def __init__(self, prefix: str, hosts: dict[str, str | None], bpffs: str | None):
        self.prefix, self.hosts, self.bpffs = prefix, hosts, bpffs
        self.bridge = prefix + "br" if any(hosts.values()) else None
        self.processes: list[subprocess.Popen] = []

    def command(self, netns: str, command: tuple[str, ...]) -> list[str]:
        shared = ["sh", "-c", WITH_BPFFS, "sh", self.bpffs] if self.bpffs else []
        return ["ip", "netns", "exec", netns, *shared, *command]

    def run(self, netns: str, *command: str, **options) -> subprocess.CompletedProcess:
        """COMMAND in NETNS as a process of that host: it sees the shared bpffs, if any."""
        return run(*self.command(netns, command), **options)

    def start(self, netns: str, *command: str, **options) -> subprocess.Popen:
        """COMMAND started in NETNS (as `run` would), ended at teardown if not before."""
        process = subprocess.Popen(self.command(netns, command), cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, **options)
        self.processes.append(process)
        return process

    def stop_processes(self) -> None:
        for process in self.processes:
            stop(process)
        self.processes.clear()

    def nft(self, netns: str, ruleset: str) -> None:
        in_netns(netns, "nft", "-f", "-", input=ruleset)


class Networks:
    """Makes networks; on leaving, removes all of them and checks that nothing is left."""

    def __enter__(self) -> "Networks":
        for tool in ("ip", "bpftool", "nft", "mount", "umount"):
            assert shutil.which(tool), f"{tool} is not installed (make setup)"
        self.before = Snapshot(check=True)
        self.prefixes: set[str] = set()
        self.undo = contextlib.ExitStack()
        return self

    def __call__(self, prefix: str, hosts: dict[str, str | None], nft: dict[str, str] | None = None,
                 bpffs: bool = False) -> Network:
        """A network of HOSTS (name: address, or None for a host with only its loopback), all
        named PREFIX..., with NFT's ruleset for each host named there, and with BPFFS one bpffs
        that the processes started in them share. Each undo is registered before its step, so
        a half-made network is removed too."""
        assert all(name.startswith(prefix) for name in hosts) and prefix + "br" not in hosts, hosts
        assert prefix not in self.prefixes, f"one network per prefix: {prefix}"  # its leftovers are removed
        remove_leftovers(prefix)
        self.prefixes.add(prefix)
        network = Network(prefix, hosts, tempfile.mkdtemp(prefix=prefix + "bpffs-") if bpffs else None)
        if network.bpffs:
            self.undo.callback(unmount_bpffs, network.bpffs)
            run("mount", "-t", "bpf", "bpf", network.bpffs)
        for name in [*hosts, *([network.bridge] if network.bridge else [])]:
            self.undo.callback(delete_namespace, name)
            run("ip", "netns", "add", name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        if network.bridge:
            run("ip", "-n", network.bridge, "link", "add", BRIDGE, "type", "bridge")
            run("ip", "-n", network.bridge, "link", "set", BRIDGE, "up")
        for index, (name, address) in enumerate(hosts.items()):
            if address:
                port = f"port{index}"
                run("ip", "-n", name, "link", "add", HOST_LINK, "type", "veth", "peer", "name", port,
                    "netns", network.bridge)
                run("ip", "-n", network.bridge, "link", "set", port, "master", BRIDGE, "up")
                run("ip", "-n", name, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", HOST_LINK)
                run("ip", "-n", name, "link", "set", HOST_LINK, "up")
        for name, ruleset in (nft or {}).items():
            network.nft(name, ruleset)
        self.undo.callback(network.stop_processes)
        return network

    def __exit__(self, *exc_info) -> None:
        self.undo.close()  # every step, even when one fails
        for prefix in self.prefixes:
            assert not namespaces(prefix), f"namespaces left behind: {namespaces(prefix)}"
            assert not bpffs_mounts(prefix), f"bpffs left mounted: {bpffs_mounts(prefix)}"
        before = self.before
        assert wait_until(lambda: not before.new_controls()), f"still registered: {sorted(before.new_controls())}"
        assert wait_until(lambda: not before.new_links()), f"struct_ops links left: {before.new_links()}"
