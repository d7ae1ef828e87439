"""The kernel as an observer outside ccrollout sees it: registered controls, struct_ops links."""

import json
import subprocess


def registered_controls() -> set[str]:
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as handle:
        return set(handle.read().split())


def struct_ops_links() -> list[dict]:
    result = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True)
    if result.returncode != 0:
        return []
    return [link for link in json.loads(result.stdout or "[]") if link.get("type") == "struct_ops"]
