"""Package the host side (ccrollout/host) as one zip that a host's python3 runs.

The zip is built deterministically, so its digest names it: a host that
already has this version is not sent it again. It travels on the same
stdin as the request (BOOTSTRAP unpacks it), so reaching a host for the
first time still costs one SSH command, not a file transfer besides.
"""

import hashlib
import io
import zipfile
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_MAIN = "import runpy\nrunpy.run_module('ccrollout.host', run_name='__main__')\n"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@lru_cache(maxsize=1)
def bundle() -> tuple[bytes, str]:
    """(zip bytes, sha256) of the host side."""
    members = {"__main__.py": _MAIN.encode(),
               "ccrollout/__init__.py": b""}
    for path in sorted((_PACKAGE / "host").glob("*.py")):
        members[f"ccrollout/host/{path.name}"] = path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


# Run as `python3 -c BOOTSTRAP PYZ SIZE DIGEST`: stdin carries SIZE bytes of the zip (0 when
# the host should already have it), then the agent's messages. Whatever is about to run must
# have the controller's DIGEST, and the state directory must be ours alone: a copy planted in
# a directory others may write is never run. Python 2 must be able to read this far.
BOOTSTRAP = """\
import sys
if sys.version_info < (3, 8):
    sys.stderr.write("ccrollout: python %d.%d is too old: the host side needs 3.8 or newer\\n" % sys.version_info[:2])
    sys.exit(76)
import glob, hashlib, os, runpy, stat
path, size, digest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
home = os.path.dirname(path)
os.makedirs(home, mode=0o700, exist_ok=True)
info = os.lstat(home)
if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
    sys.exit("ccrollout: the state directory %s must be a directory owned by this user that no one else may write" % home)
data = sys.stdin.buffer.read(size)
if size:
    if hashlib.sha256(data).hexdigest() != digest:
        sys.exit("ccrollout: the host side arrived damaged")
    partial = "%s.%s.partial" % (path, os.urandom(8).hex())
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(data)
    os.replace(partial, path)
    for old in glob.glob(os.path.join(home, "ccrollout-host-*.pyz")):
        if old != path:
            os.unlink(old)
try:
    with open(path, "rb") as handle:
        held = handle.read()
except OSError:
    held = b""
if hashlib.sha256(held).hexdigest() != digest:
    sys.exit(75)
sys.path.insert(0, path)
sys.argv = [path]
runpy.run_module("ccrollout.host", run_name="__main__")
"""

EXIT_MISSING = 75    # the host lacks this version of the host side (or holds a damaged copy)
EXIT_OLD_PYTHON = 76


def remote_name() -> str:
    return f"ccrollout-host-{bundle()[1][:16]}.pyz"
