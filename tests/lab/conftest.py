"""Lab tests: root, the kernel's BPF, network namespaces. Everything here is marked `lab`;
under CI (CI=true) these tests never skip: they pass or fail."""

from pathlib import Path

import pytest

from labkit import require_lab, running_lab
from testnet import Networks

LAB_HOSTS = 3
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="module")
def fleet():
    """The lab, once per test module, with background traffic; torn down whatever happens."""
    with running_lab(LAB_HOSTS) as inventory:
        yield inventory


@pytest.fixture
def testnet():
    """Makes test networks (testnet.Networks); all of them removed and checked after the test."""
    require_lab()
    with Networks() as make:
        yield make


@pytest.fixture(scope="module")
def module_testnet():
    """As `testnet`, for networks that the tests of a module share."""
    require_lab()
    with Networks() as make:
        yield make
