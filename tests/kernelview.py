"""The kernel as an observer outside ccrollout sees it: registered controls, struct_ops links,
retransmit probes."""

import json
import subprocess


def registered_controls() -> set[str]:
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as handle:
        return set(handle.read().split())


def struct_ops_links(check: bool = False) -> list[dict]:
    """With CHECK, a bpftool that fails is an error, not a kernel without links."""
    result = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True, check=check)
    if result.returncode != 0:
        return []
    return [link for link in json.loads(result.stdout or "[]") if link.get("type") == "struct_ops"]


def retransmit_probes() -> list[dict]:
    """Perf events attached to the tcp_retransmit_skb tracepoint, as bpftool sees them."""
    result = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True, check=True)
    return [entry for entry in json.loads(result.stdout or "[]") if entry.get("tracepoint") == "tcp_retransmit_skb"]


def loaded_program_ids() -> set[int]:
    result = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True)
    return {program["id"] for program in json.loads(result.stdout or "[]")}


class Snapshot:
    """The controls and struct_ops links the kernel holds now, to tell later what is new."""

    def __init__(self, check: bool = False):
        self.check = check
        self.controls = registered_controls()
        self.link_ids = {link["id"] for link in struct_ops_links(check)}

    def new_controls(self) -> set[str]:
        return registered_controls() - self.controls

    def new_links(self) -> list[dict]:
        return [link for link in struct_ops_links(self.check) if link["id"] not in self.link_ids]
