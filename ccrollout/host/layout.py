"""Where ccrollout keeps its things on a host.

bpffs (shared by every namespace of a kernel that sees it):
    /sys/fs/bpf/ccrollout/NAME/link              the pinned struct_ops link; removing it unloads
    /sys/fs/bpf/ccrollout/NAME/object-DIGEST/    marks which object is loaded under NAME
    /sys/fs/bpf/ccrollout/NAME/users/NETNS/      one per network namespace that uses NAME
Directories in bpffs cost nothing, vanish at reboot together with the pins,
and are seen by every namespace of the node: a reference count that needs no
file system shared between containers.

The state directory (per host, from the inventory):
    STATE_DIR/objects/DIGEST.bpf.o   objects as pushed, kept by digest
    STATE_DIR/state.json             what ccrollout changed here and what it replaced (state.py)
"""

from __future__ import annotations

import os

from . import protocol
from .errors import ActionError

BPFFS = "/sys/fs/bpf"
PIN_ROOT = os.path.join(BPFFS, "ccrollout")
_OBJECT_MARK = "object-"


def control_dir(name: str) -> str:
    """NAME's directory under the pins' root; a name that could lead elsewhere is refused
    here too, whatever let it through (requests and records are checked before)."""
    if not isinstance(name, str) or not protocol.CONTROL_NAME.match(name):
        raise ActionError(f"refused: {str(name)[:32]!r} is not a congestion-control name")
    return os.path.join(PIN_ROOT, name)


def link_pin(name: str) -> str:
    return os.path.join(control_dir(name), "link")


def users_dir(name: str) -> str:
    return os.path.join(control_dir(name), "users")


def user_mark(name: str, netns: str) -> str:
    return os.path.join(users_dir(name), netns)


def object_mark(name: str, digest: str) -> str:
    return os.path.join(control_dir(name), _OBJECT_MARK + digest)


def loaded_digest(name: str) -> str | None:
    try:
        entries = os.listdir(control_dir(name))
    except OSError:
        return None
    marks = [entry[len(_OBJECT_MARK):] for entry in entries if entry.startswith(_OBJECT_MARK)]
    return marks[0] if marks else None


def users(name: str) -> list[str]:
    try:
        return sorted(os.listdir(users_dir(name)))
    except OSError:
        return []


def object_path(state_dir: str, digest: str) -> str:
    return os.path.join(state_dir, "objects", f"{digest}.bpf.o")


def state_file(state_dir: str) -> str:
    return os.path.join(state_dir, "state.json")

