"""Shared test plumbing: when lab tests may run, and a guard that nothing leaks."""

import json
import os
import subprocess

import pytest

LAB_HOSTS = 3


def require_lab() -> None:
    """Lab tests run as root; under CI they never skip: they pass or fail."""
    if os.environ.get("CI") == "true":
        return
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")


def registered_controls() -> set[str]:
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as handle:
        return set(handle.read().split())


def struct_ops_links() -> list[dict]:
    result = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True)
    if result.returncode != 0:
        return []
    return [link for link in json.loads(result.stdout or "[]") if link.get("type") == "struct_ops"]


@pytest.fixture(scope="session", autouse=True)
def nothing_leaks():
    """After the whole run, the kernel holds no control and no link it did not hold before."""
    if os.geteuid() != 0:
        yield
        return
    controls_before = registered_controls()
    links_before = {link["id"] for link in struct_ops_links()}
    yield
    leaked_controls = registered_controls() - controls_before
    leaked_links = [link for link in struct_ops_links() if link["id"] not in links_before]
    assert not leaked_controls and not leaked_links, (
        f"the tests left controls {sorted(leaked_controls)} and struct_ops links {leaked_links}")


@pytest.fixture(scope="module")
def fleet():
    """The lab, once per test module, with background traffic; torn down whatever happens."""
    from ccrollout import lab
    require_lab()
    try:
        inventory = lab.up(LAB_HOSTS)
        lab.traffic_start()
        yield inventory
    finally:
        try:
            lab.traffic_stop()
        finally:
            lab.down()  # also removes any pin a failed test left, which unregisters its control


@pytest.fixture
def journal_home(tmp_path):
    return tmp_path / "home"
