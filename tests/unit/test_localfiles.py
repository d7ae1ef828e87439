"""Only regular files of a bounded size are read as input; the controller's own directories
are private whatever the umask."""

import os
import stat
import time

import pytest

from ccrollout import localfiles
from ccrollout.errors import InvalidInput
from ccrollout.inventory import load_inventory
from ccrollout.localfiles import UnreadableFile, make_private_directory, read_regular_text
from ccrollout.plan import load_plan


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_without_blocking(fifo):
    started = time.monotonic()
    with pytest.raises(UnreadableFile, match="is a FIFO"):
        read_regular_text(fifo, 100)
    with pytest.raises(InvalidInput, match=r"pipe.yaml: plan file is a FIFO \(named pipe\), not a regular file"):
        load_plan(fifo)
    with pytest.raises(InvalidInput, match="pipe.yaml: inventory file is a FIFO"):
        load_inventory([str(fifo)])
    assert time.monotonic() - started < 2


def test_endless_devices_and_directories_are_refused(tmp_path):
    for device in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(InvalidInput, match=f"{device}: plan file is a character device"):
            load_plan(device)
    with pytest.raises(InvalidInput, match="plan file is a directory"):
        load_plan(tmp_path)


def test_a_file_over_the_limit_is_refused_and_one_at_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 10)
    assert read_regular_text(path, 10) == "x" * 10
    with pytest.raises(UnreadableFile, match="larger than 9 bytes"):
        read_regular_text(path, 9)
    monkeypatch.setattr(localfiles, "INVENTORY_LIMIT", 9)
    monkeypatch.setattr("ccrollout.inventory.sources.INVENTORY_LIMIT", 9)
    with pytest.raises(InvalidInput, match="big: inventory file is larger than 9 bytes"):
        load_inventory([str(path)])


def test_group_vars_that_are_not_regular_files_are_reported(tmp_path):
    (tmp_path / "hosts").write_text("h1\n")
    (tmp_path / "group_vars").mkdir()
    os.mkfifo(tmp_path / "group_vars" / "all.yml")
    with pytest.raises(InvalidInput, match=r"all.yml: variables file is a FIFO"):
        load_inventory([str(tmp_path / "hosts")])


def test_private_directories_are_0700_whatever_the_umask_and_existing_ones_are_left(tmp_path):
    (tmp_path / "shared").mkdir(mode=0o755)
    old = os.umask(0)
    try:
        made = make_private_directory(tmp_path / "shared" / "a" / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(made.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "shared").st_mode) == 0o755


def test_a_parent_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        make_private_directory(tmp_path / "file" / "dir")
