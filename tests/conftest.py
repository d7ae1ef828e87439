"""Shared test plumbing: a guard that nothing leaks, and a journal home per test."""

import os

import pytest

from kernelview import Snapshot


@pytest.fixture(scope="session", autouse=True)
def nothing_leaks():
    """After the whole run, the kernel holds no control and no link it did not hold before."""
    if os.geteuid() != 0:
        yield
        return
    before = Snapshot()
    yield
    leaked_controls, leaked_links = before.new_controls(), before.new_links()
    assert not leaked_controls and not leaked_links, (
        f"the tests left controls {sorted(leaked_controls)} and struct_ops links {leaked_links}")


@pytest.fixture
def journal_home(tmp_path):
    return tmp_path / "home"
