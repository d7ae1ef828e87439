"""Small operating-system helpers that the host side and the controller share.

Standard library only, and Python 3.8 compatible: this module travels to the hosts
inside the host side's zip. The controller imports it too, so each helper exists once.
"""

import os
import secrets
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def write_atomically(path: PathLike, data: Union[bytes, str], mode: int = 0o600, durable: bool = False) -> None:
    """Write DATA to PATH so that a reader (or a crash) sees the old file or the new one,
    never half of either. The temporary name is unpredictable and created exclusively, so
    nobody can plant it beforehand; MODE holds whatever the umask says."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode()
    temporary = f"{path}.{secrets.token_hex(8)}.partial"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def pid_alive(pid: int, marker: Optional[str] = None) -> bool:
    """Whether process PID runs (a zombie does not count) and, given MARKER, whether its
    command line contains it. A process of another user counts as alive."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in (b"Z", b"X"):
        return False
    if marker is None:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return marker.encode() in handle.read()
    except OSError:
        return False
