"""Shared test plumbing: a guard that nothing leaks, and a journal home per test."""

import os

import pytest

from kernelview import registered_controls, struct_ops_links


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


@pytest.fixture
def journal_home(tmp_path):
    return tmp_path / "home"
