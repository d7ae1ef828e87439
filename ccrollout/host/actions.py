"""The changes ccrollout makes on a host, each one idempotent.

Every action answers whether it changed anything. An action that fails
leaves what it touched as it found it; the controller decides what else to
undo. Policy (which control, where, when to roll back) is never decided here.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import subprocess
import time

from . import facts, layout, routes
from .libbpf import MIN_VERSION, Libbpf, LibbpfError

_DEFAULT_SYSCTL = "/proc/sys/net/ipv4/tcp_congestion_control"
_FALLBACK_DEFAULTS = ("cubic", "reno")


class ActionError(Exception):
    """A refusal with a reason for the operator (and the verifier's log, if any)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


_libbpf: Libbpf | None = None


def libbpf() -> Libbpf:
    global _libbpf
    if _libbpf is None:
        try:
            _libbpf = Libbpf()
        except LibbpfError as exc:
            raise ActionError(str(exc)) from None
        if _libbpf.version() < MIN_VERSION:
            found = ".".join(map(str, _libbpf.version()))
            raise ActionError(f"libbpf {found} is too old: struct_ops links need 1.2 or newer")
    return _libbpf


# -- the host's own record ---------------------------------------------------

def read_state(state_dir: str) -> dict:
    try:
        with open(layout.state_file(state_dir)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"controls": {}}


def write_state(state_dir: str, state: dict) -> None:
    path = layout.state_file(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)  # atomic: a crash leaves the old record or the new one


# -- helpers -----------------------------------------------------------------

def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_bpffs() -> None:
    if facts.bpffs_mounted():
        return
    result = subprocess.run(["mount", "-t", "bpf", "bpf", layout.BPFFS],
                            capture_output=True, text=True)
    if result.returncode != 0 or not facts.bpffs_mounted():
        raise ActionError(f"bpffs is not mounted at {layout.BPFFS} and mounting it failed: "
                          f"{result.stderr.strip()}")


@contextlib.contextmanager
def registry_lock():
    """Serialise loads and unloads among all namespaces that share this bpffs."""
    os.makedirs(layout.PIN_ROOT, exist_ok=True)
    fd = os.open(layout.PIN_ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_tree(path: str) -> None:
    """rmdir bottom-up: bpffs directories hold only directories and pins."""
    if not os.path.isdir(path):
        return
    for entry in os.listdir(path):
        child = os.path.join(path, entry)
        if os.path.isdir(child):
            _remove_tree(child)
        else:
            os.unlink(child)
    os.rmdir(path)


def write_default(name: str) -> None:
    try:
        with open(_DEFAULT_SYSCTL, "w") as handle:
            handle.write(name)
    except PermissionError:
        raise ActionError(
            f"this network namespace may not make {name} its default: the control is restricted "
            "(register it with TCP_CONG_NON_RESTRICTED, or list it in the initial namespace's "
            "net.ipv4.tcp_allowed_congestion_control)") from None
    except OSError as exc:
        raise ActionError(f"cannot set the default congestion control to {name}: "
                          f"{os.strerror(exc.errno or errno.EIO)}") from None
    now = facts.default_congestion_control()
    if now != name:
        raise ActionError(f"the default congestion control reads {now!r} after writing {name!r}")


# -- actions -----------------------------------------------------------------

def _load_and_pin(name: str, object_path: str, digest: str) -> dict:
    bpf = libbpf()
    obj = bpf.open_object(object_path)
    try:
        maps = bpf.struct_ops_maps(obj)
        if len(maps) != 1:
            raise ActionError(f"the object holds {len(maps)} struct_ops maps, expected exactly one")
        try:
            bpf.load_object(obj)
        except LibbpfError as exc:
            raise ActionError(f"the kernel refused to load {name}: {os.strerror(exc.errno)}",
                              Libbpf.verifier_log(exc.log)) from None
        link = bpf.attach_struct_ops(maps[0][1])
        try:
            os.makedirs(layout.control_dir(name), exist_ok=True)
            bpf.pin_link(link, layout.link_pin(name))
        except (OSError, LibbpfError) as exc:
            bpf.destroy_link(link)  # detaches: the control is unregistered again
            _remove_tree(layout.control_dir(name))
            raise ActionError(f"cannot pin {name}: {exc}") from None
        ids = bpf.link_ids(link)
        bpf.release_link(link)
    finally:
        bpf.close_object(obj)
    os.mkdir(layout.object_mark(name, digest))
    if name not in facts.available_congestion_controls():
        _unload(name)
        raise ActionError(f"the object did not register a congestion control named {name}")
    return ids


def _unload(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(layout.link_pin(name))  # the last reference: the kernel unregisters it
    _remove_tree(layout.control_dir(name))
    _wait_unregistered(name)  # so that "unloaded" means gone from the registry, as others see it


def pinned_link_ids(name: str) -> dict | None:
    if not os.path.exists(layout.link_pin(name)):
        return None
    bpf = libbpf()
    link = bpf.open_pinned_link(layout.link_pin(name))
    try:
        return bpf.link_ids(link)
    finally:
        bpf.release_link(link)


_UNREGISTER_WAIT_SECONDS = 3.0


def _wait_unregistered(name: str) -> None:
    deadline = time.monotonic() + _UNREGISTER_WAIT_SECONDS
    while name in facts.available_congestion_controls() and time.monotonic() < deadline:
        time.sleep(0.05)


def install(state_dir: str, name: str, digest: str) -> dict:
    """Load NAME from the pushed object (once per kernel) and mark this namespace a user."""
    object_path = layout.object_path(state_dir, digest)
    if not os.path.exists(object_path):
        raise ActionError(f"object {digest[:12]} was not pushed to {object_path}")
    actual = sha256_of(object_path)
    if actual != digest:
        raise ActionError(f"object digest mismatch: built {digest[:12]}, found {actual[:12]} on the host")
    ensure_bpffs()
    netns = facts.netns_id()
    changed = loaded = False
    with registry_lock():
        if os.path.exists(layout.link_pin(name)):
            current = layout.loaded_digest(name)
            if current != digest:
                raise ActionError(f"{name} is already loaded on this kernel from another object "
                                  f"({(current or 'unknown')[:12]}); in-place upgrade is not supported yet")
        else:
            if os.path.isdir(layout.control_dir(name)):
                _wait_unregistered(name)  # a pin removed just now: the kernel lets go a moment later
            if name in facts.available_congestion_controls():
                raise ActionError(f"a congestion control named {name} is already registered "
                                  "and ccrollout did not load it")
            # The pin went without us (removed by hand): forget which object it was, but keep
            # the users' marks, as their namespaces still name the control as their default.
            stale = layout.loaded_digest(name)
            if stale:
                os.rmdir(layout.object_mark(name, stale))
            _load_and_pin(name, object_path, digest)
            changed = loaded = True
        os.makedirs(layout.users_dir(name), exist_ok=True)
        if not os.path.isdir(layout.user_mark(name, netns)):
            os.mkdir(layout.user_mark(name, netns))
            changed = True
        ids = pinned_link_ids(name)
    return {"changed": changed, "loaded": loaded, "link": ids, "netns": netns}


def activate(state_dir: str, name: str, digest: str, default: bool = True, prefixes=()) -> dict:
    """Make NAME the namespace's default and/or the control of routes to PREFIXES,
    remembering what each replaced before changing it."""
    if name not in facts.available_congestion_controls():
        raise ActionError(f"{name} is not registered on this kernel")
    current = facts.default_congestion_control()
    state = read_state(state_dir)
    record = state["controls"].setdefault(
        name, {"previous_default": current, "digest": digest, "since": time.time(), "routes": {}})
    record.setdefault("routes", {})
    record["default"] = bool(default)
    # A control loaded again since this namespace last chose it (a lost pin, a reboot) has a new
    # link: choosing it again is a change, even where the default already reads its name.
    link = pinned_link_ids(name)
    rebound = record.get("link_id") not in (None, link and link["link_id"])
    record["link_id"] = link and link["link_id"]
    try:
        for prefix in prefixes:
            record["routes"].setdefault(prefix, {"previous": routes.exact(prefix)})
    except routes.RouteError as exc:
        raise ActionError(str(exc)) from None
    write_state(state_dir, state)  # written before the change, so a rollback knows what to restore
    # Written even when it already reads NAME: after a reboot or a lost pin the name may
    # point at a control that is no longer registered, and writing it binds the loaded one.
    if default:
        write_default(name)
    changed = (default and current != name) or rebound
    try:
        for prefix in prefixes:
            changed |= routes.activate(prefix, name, record["routes"][prefix]["previous"])
    except routes.RouteError as exc:
        raise ActionError(str(exc)) from None
    return {"changed": changed, "default": facts.default_congestion_control(),
            "previous": record["previous_default"], "routes": list(prefixes)}


def _restore_default(name: str, wanted: str | None) -> str:
    """Put WANTED back as the default; if it is gone, the first built-in this namespace may use."""
    available = facts.available_congestion_controls()
    candidates = [wanted] if wanted not in (None, name) and wanted in available else []
    candidates += [cc for cc in _FALLBACK_DEFAULTS if cc in available and cc not in candidates]
    refusals = []
    for candidate in candidates:
        try:
            write_default(candidate)
            return candidate
        except ActionError as exc:  # e.g. cubic is restricted outside the initial namespace
            refusals.append(str(exc))
    raise ActionError(f"no congestion control could replace {name} as the default: "
                      + "; ".join(refusals or ["none is available"]))


def deactivate(state_dir: str, name: str, restore: str | None = None) -> dict:
    """Restore the previous default and drop this namespace's use of NAME; unload it if last."""
    state = read_state(state_dir)
    record = state["controls"].get(name, {})
    changed = False
    restored = None
    if facts.default_congestion_control() == name:
        restored = _restore_default(name, restore or record.get("previous_default"))
        changed = True
    try:
        for prefix, route in record.get("routes", {}).items():
            changed |= routes.restore(prefix, name, route.get("previous"))
    except routes.RouteError as exc:
        raise ActionError(str(exc)) from None
    unloaded = False
    if os.path.isdir(layout.control_dir(name)):
        netns = facts.netns_id()
        with registry_lock():
            if os.path.isdir(layout.user_mark(name, netns)):
                os.rmdir(layout.user_mark(name, netns))
                changed = True
            if not layout.users(name):
                _unload(name)
                unloaded = changed = True
    if name in state["controls"]:
        del state["controls"][name]
        write_state(state_dir, state)
    return {"changed": changed, "restored": restored, "unloaded": unloaded}


def drift(state_dir: str) -> dict:
    """How this host differs from what ccrollout last set here (its own record)."""
    problems = []
    available = facts.available_congestion_controls()
    netns = facts.netns_id()
    controls = read_state(state_dir)["controls"]
    for name, record in controls.items():
        if not os.path.exists(layout.link_pin(name)):
            problems.append(f"{name}: its pin is gone (a reboot, or removed by hand)")
        elif name not in available:
            problems.append(f"{name}: pinned but not registered")
        if netns not in layout.users(name):
            problems.append(f"{name}: this namespace is not marked as a user")
        if record.get("default", True) and facts.default_congestion_control() != name:
            problems.append(f"{name}: the default is {facts.default_congestion_control()}")
        for prefix in record.get("routes", {}):
            if routes.congctl_of(prefix) != name:
                problems.append(f"{name}: the route to {prefix} no longer uses it")
    return {"changed": False, "drift": problems, "managed": sorted(controls)}


def counters() -> dict:
    return {"time": time.time(), "counters": facts.tcp_counters()}
