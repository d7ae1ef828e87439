"""Files the controller reads from the operator, and directories it keeps for itself.

Plans and inventories are read only from regular files, and only up to a size: a FIFO
would hang the reader, /dev/zero or /dev/urandom never end, and no plan or inventory
comes near these limits. What the controller keeps (the journal, the build cache) lives
in directories only its user may enter, whatever the umask.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable, Iterator

PLAN_LIMIT = 4 << 20        # bytes of a plan file
INVENTORY_LIMIT = 16 << 20  # bytes of one inventory, group_vars or host_vars file
_CHUNK = 1 << 20


class UnreadableFile(ValueError):
    """Why a file cannot be read as input; the caller names the file."""


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _size(count: int) -> str:
    return f"{count / (1 << 20):.0f} MiB" if count >= 1 << 20 else f"{count} bytes"


def read_regular_text(path: str | os.PathLike, limit: int) -> str:
    """The UTF-8 text of PATH, a regular file (or a link to one) of at most LIMIT bytes.
    Anything else raises UnreadableFile, without ever blocking on it."""
    try:
        info = os.stat(path)  # before opening: opening a device or a FIFO can block or act
    except FileNotFoundError:
        raise UnreadableFile("not found") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(f"is {_kind(info.st_mode)}, not a regular file")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnreadableFile(f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if not stat.S_ISREG(opened.st_mode):  # replaced between the two looks
            raise UnreadableFile(f"is {_kind(opened.st_mode)}, not a regular file")
        chunks, total = [], 0
        while total <= limit:  # st_size may lie (/proc); read no more than the limit and one chunk
            chunk = handle.read(min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    if total > limit:
        raise UnreadableFile(f"is larger than {_size(limit)}, more than any plan or inventory needs")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def walk_files(directory: str | os.PathLike, wanted: Callable[[Path, bool], bool],
               on_error: Callable[[Path, OSError], None]) -> list[Path]:
    """The files under DIRECTORY that WANTED(path, is_directory) keeps (a directory it does not
    keep is not entered), depth first in name order, as a recursive walk would list them.
    Each directory is entered once, so links back up the tree (two `-> .` links would
    make a naive walk exponential) cost nothing; and it loops rather than recurses, so a tree
    a thousand levels deep is only long. ON_ERROR hears of directories it cannot list."""
    entered: set[tuple[int, int]] = set()  # (device, inode): one stat, where realpath costs one per level

    def entries(path: Path) -> Iterator[Path]:
        try:
            info = os.stat(path)
            if (info.st_dev, info.st_ino) in entered:
                return iter(())
            entered.add((info.st_dev, info.st_ino))
            names = sorted(os.listdir(path))
        except OSError as exc:
            on_error(path, exc)
            return iter(())
        return iter([path / name for name in names])

    found: list[Path] = []
    pending = [entries(Path(directory))]
    while pending:
        path = next(pending[-1], None)
        if path is None:
            pending.pop()
            continue
        is_directory = path.is_dir()
        if not wanted(path, is_directory):
            continue
        if is_directory:
            pending.append(entries(path))
        else:
            found.append(path)
    return found


def make_private_directory(path: str | os.PathLike) -> Path:
    """Create PATH, and any missing parent, as mode 0700 whatever the umask. Directories that
    exist already are left as they are (a journal in /tmp must not change /tmp).
    OSError (NotADirectoryError when a parent is a file) if it cannot."""
    path = Path(os.path.abspath(path))
    missing = []
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory)) from None
            continue  # made by someone else meanwhile: theirs, left alone
        os.chmod(directory, 0o700)
    return path
