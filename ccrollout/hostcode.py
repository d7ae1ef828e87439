"""Package the host side (ccrollout/host) as one zip that a host's python3 runs.

The zip is built deterministically, so its digest names it: a host that
already has this version is not sent it again.
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
