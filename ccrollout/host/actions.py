"""The changes ccrollout makes on a host, each one idempotent.

Every action answers whether it changed anything. An action that fails
leaves what it touched as it found it; the controller decides what else to
undo. Policy (which control, where, when to roll back) is never decided here.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import os
import subprocess
import time

from . import boot, facts, layout, routes, state
from .errors import ActionError
from .libbpf import MIN_VERSION, Libbpf, LibbpfError, shared
from .osutil import write_atomically
from .state import Claim, ControlRecord, HostState

_DEFAULT_SYSCTL = "/proc/sys/net/ipv4/tcp_congestion_control"
_ECN_SYSCTL = "/proc/sys/net/ipv4/tcp_ecn"
_ALLOWED_SYSCTL = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
_FALLBACK_DEFAULTS = ("cubic", "reno")


def libbpf() -> Libbpf:
    try:
        bpf = shared()
    except LibbpfError as exc:
        raise ActionError(str(exc)) from None
    if bpf.version() < MIN_VERSION:
        found = ".".join(map(str, bpf.version()))
        raise ActionError(f"libbpf {found} is too old: struct_ops links need 1.2 or newer")
    return bpf


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


# -- objects -----------------------------------------------------------------

def receive_object(state_dir: str, digest: str, encoded: str) -> None:
    """Keep an object sent with the request under its digest; checked before it gets that name."""
    path = layout.object_path(state_dir, digest)
    if os.path.exists(path):
        return
    data = base64.b64decode(encoded)
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ActionError(f"object digest mismatch: built {digest[:12]}, received {actual[:12]}")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_atomically(path, data, durable=True)


def verified_object(state_dir: str, digest: str) -> str:
    """The kept object with DIGEST, after checking that its bytes still have that digest."""
    path = layout.object_path(state_dir, digest)
    if not os.path.exists(path):
        raise ActionError(f"object {digest[:12]} is not on this host ({path})")
    actual = sha256_of(path)
    if actual != digest:
        raise ActionError(f"object digest mismatch: built {digest[:12]}, found {actual[:12]} on the host")
    return path


def _open_and_load(name: str, object_path: str, map_name: str | None = None) -> tuple[int, int]:
    """(object, the struct_ops map MAP_NAME, or its only one) loaded into the kernel, the map
    made a link and any other struct_ops map left out; the caller closes the object."""
    bpf = libbpf()
    try:
        obj = bpf.open_object(object_path)
    except LibbpfError as exc:
        raise ActionError(str(exc), exc.log) from None
    try:
        maps = bpf.struct_ops_maps(obj)
        chosen = [pointer for map_, pointer in maps if map_ == map_name or map_name is None]
        if len(chosen) != 1:
            held = ", ".join(map_ for map_, _ in maps) or "none"
            raise ActionError(f"the object has no struct_ops map {map_name} (it has {held})" if map_name else
                              f"the object holds {len(maps)} struct_ops maps ({held}): the request must name one")
        try:
            for _map, pointer in maps:
                if pointer != chosen[0]:
                    bpf.skip_map(pointer)
            bpf.make_link_map(chosen[0])
            bpf.load_object(obj)
        except LibbpfError as exc:
            raise ActionError(f"the kernel refused to load {name}: {os.strerror(exc.errno)}",
                              Libbpf.verifier_log(exc.log)) from None
    except BaseException:
        bpf.close_object(obj)
        raise
    return obj, chosen[0]


def _mark_loaded(name: str, digest: str) -> None:
    """Name the object now behind NAME's link (the old mark goes first: a crash in between
    leaves no mark, which the next install treats as an unknown version and replaces)."""
    old = layout.loaded_digest(name)
    if old == digest:
        return
    if old:
        os.rmdir(layout.object_mark(name, old))
    os.mkdir(layout.object_mark(name, digest))


# -- loading -----------------------------------------------------------------

def _load_and_pin(name: str, object_path: str, digest: str, map_name: str | None = None) -> None:
    bpf = libbpf()
    obj, struct_ops_map = _open_and_load(name, object_path, map_name)
    try:
        link = bpf.attach_struct_ops(struct_ops_map)
        try:
            os.makedirs(layout.control_dir(name), exist_ok=True)
            bpf.pin_link(link, layout.link_pin(name))
        except (OSError, LibbpfError) as exc:
            bpf.destroy_link(link)  # detaches: the control is unregistered again
            _remove_tree(layout.control_dir(name))
            raise ActionError(f"cannot pin {name}: {exc}") from None
        bpf.release_link(link)
    finally:
        bpf.close_object(obj)
    _mark_loaded(name, digest)
    if name not in facts.available_congestion_controls():
        _unload(name)
        raise ActionError(f"the object did not register a congestion control named {name}")


def _update_in_place(name: str, object_path: str, digest: str, map_name: str | None = None) -> None:
    """Swap the program behind NAME's pinned link: the name never leaves the registry, open
    connections keep the version they started with, new ones get this one."""
    bpf = libbpf()
    obj, struct_ops_map = _open_and_load(name, object_path, map_name)
    try:
        link = bpf.open_pinned_link(layout.link_pin(name))
        try:
            bpf.update_link_map(link, struct_ops_map)
        except LibbpfError as exc:
            raise ActionError(f"the kernel refused to update {name} in place: {os.strerror(exc.errno)} "
                              "(the new version must carry the same name)", exc.log) from None
        finally:
            bpf.release_link(link)
    finally:
        bpf.close_object(obj)
    _mark_loaded(name, digest)


def _unload(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(layout.link_pin(name))  # the last reference: the kernel unregisters it
    _remove_tree(layout.control_dir(name))
    _wait_unregistered(name)  # so that "unloaded" means gone from the registry, as others see it


_UNREGISTER_WAIT_SECONDS = 3.0


def _wait_unregistered(name: str) -> None:
    deadline = time.monotonic() + _UNREGISTER_WAIT_SECONDS
    while name in facts.available_congestion_controls() and time.monotonic() < deadline:
        time.sleep(0.05)


def install(state_dir: str, name: str, digest: str, encoded_object: str | None,
            map_name: str | None) -> dict:
    """Load NAME from the object (once per kernel), or update the loaded one in place to this
    version, and mark this namespace a user. MAP_NAME picks the object's struct_ops map when
    it holds several; it is kept, so a revert or a restore at boot picks the same one."""
    if encoded_object:
        receive_object(state_dir, digest, encoded_object)
    object_path = verified_object(state_dir, digest)
    if map_name is not None:
        remember_map(state_dir, name, digest, map_name)
    ensure_bpffs()
    netns = facts.netns_id()
    changed = loaded = False
    replaced = None
    with registry_lock():
        if os.path.exists(layout.link_pin(name)):
            current = layout.loaded_digest(name)
            if current != digest:
                host = state.load(state_dir)
                record = host.controls.get(name)
                if record is not None and record.digest != digest:
                    record.digests.append(digest)  # before the change: a rollback reverts it
                    state.save(state_dir, host)
                _update_in_place(name, object_path, digest, map_name)
                replaced, changed = current or "unknown", True
        else:
            _load_fresh(name, object_path, digest, map_name)
            changed = loaded = True
        changed |= _mark_user(name, netns)
        ids = facts.pinned_link_ids(name)
        others = [user for user in layout.users(name) if user != netns]
    return {"changed": changed, "loaded": loaded, "replaced": replaced, "link": ids, "netns": netns,
            "other_users": others}


def _load_fresh(name: str, object_path: str, digest: str, map_name: str | None) -> None:
    """Load and pin NAME where no pin holds it (under the registry lock)."""
    if os.path.isdir(layout.control_dir(name)):
        _wait_unregistered(name)  # a pin removed just now: the kernel lets go a moment later
    if name in facts.available_congestion_controls():
        raise ActionError(f"a congestion control named {name} is already registered "
                          "and ccrollout did not load it")
    # The pin went without us (removed by hand, or a reboot): forget which object it was, but
    # keep the users' marks, as their namespaces still name the control as their default.
    stale = layout.loaded_digest(name)
    if stale:
        os.rmdir(layout.object_mark(name, stale))
    _load_and_pin(name, object_path, digest, map_name)


def _mark_user(name: str, netns: str) -> bool:
    os.makedirs(layout.users_dir(name), exist_ok=True)
    if os.path.isdir(layout.user_mark(name, netns)):
        return False
    os.mkdir(layout.user_mark(name, netns))
    return True


def ensure_loaded(state_dir: str, name: str, digest: str, map_name: str | None) -> tuple[bool, str | None]:
    """For a restore: NAME loaded from the kept object DIGEST unless this kernel runs it
    already (another namespace restored it first), and this namespace a user. Another
    version already loaded is left as it is (one kernel, one version), with a note."""
    object_path = verified_object(state_dir, digest)
    ensure_bpffs()
    note = None
    with registry_lock():
        loaded = not os.path.exists(layout.link_pin(name))
        if loaded:
            _load_fresh(name, object_path, digest, map_name)
        elif layout.loaded_digest(name) != digest:
            note = (f"this kernel already runs version {(layout.loaded_digest(name) or 'unknown')[:12]}, "
                    f"not the recorded {digest[:12]}: left as it is")
        marked = _mark_user(name, facts.netns_id())
    return loaded or marked, note


def remember_map(state_dir: str, name: str, digest: str, map_name: str) -> None:
    host = state.load(state_dir)
    if host.maps.get(name, {}).get(digest) != map_name:
        host.maps.setdefault(name, {})[digest] = map_name
        state.save(state_dir, host)


# -- activation --------------------------------------------------------------

def _write_sysctl(path: str, value: str, what: str) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as exc:
        raise ActionError(f"cannot set {what} to {value}: {os.strerror(exc.errno or errno.EIO)}") from None


def _allow(record: ControlRecord, name: str) -> None:
    """Keep NAME in tcp_allowed_congestion_control, so unprivileged sockets may choose it.
    Controls built with TCP_CONG_NON_RESTRICTED are there by themselves."""
    allowed = facts.allowed_congestion_controls()
    if name in allowed:
        return
    if facts.netns_id() != facts.initial_netns_id():
        raise ActionError(f"{name} is not in net.ipv4.tcp_allowed_congestion_control, and only the "
                          "initial network namespace may change that list (build the control with "
                          "TCP_CONG_NON_RESTRICTED)")
    record.allowed_added = True
    _write_sysctl(_ALLOWED_SYSCTL, " ".join(allowed + [name]), "tcp_allowed_congestion_control")


def _disallow(record: ControlRecord, name: str) -> bool:
    allowed = facts.allowed_congestion_controls()
    if not record.allowed_added or name not in allowed:
        return False
    _write_sysctl(_ALLOWED_SYSCTL, " ".join(cc for cc in allowed if cc != name),
                  "tcp_allowed_congestion_control")
    return True


def activate(state_dir: str, name: str, digest: str, default: bool, prefixes, ecn: bool,
             persist: bool) -> dict:
    """Make NAME the namespace's default and/or the control of routes to PREFIXES (and turn
    ECN on if asked), remembering what each replaced before changing it, and whether a
    restore at boot brings it back (PERSIST)."""
    if name not in facts.available_congestion_controls():
        raise ActionError(f"{name} is not registered on this kernel")
    current = facts.default_congestion_control()
    host = state.load(state_dir)
    record = host.controls.get(name)
    if record is None:
        record = host.controls[name] = ControlRecord(digests=[digest], previous_default=current,
                                                     since=time.time())
    new_version = record.digest != digest
    if new_version:
        record.digests.append(digest)
    record.default = bool(default)
    record.persist = bool(persist)
    # A control loaded again since this namespace last chose it (a lost pin, a reboot) has a new
    # link: choosing it again is a change, even where the default already reads its name.
    link = facts.pinned_link_ids(name)
    link_id = link["link_id"] if link else None
    rebound = record.link_id not in (None, link_id)
    record.link_id = link_id
    if ecn and record.previous_ecn is None:
        record.previous_ecn = facts.tcp_ecn()
    try:
        for prefix in prefixes:
            if prefix not in record.routes:
                record.routes[prefix] = routes.exact(prefix)
    except routes.RouteError as exc:
        raise ActionError(str(exc)) from None
    state.save(state_dir, host)  # written before the change, so a rollback knows what to restore
    _allow(record, name)
    state.save(state_dir, host)
    # Written even when it already reads NAME: after a reboot or a lost pin the name may
    # point at a control that is no longer registered, and writing it binds the loaded one.
    if default:
        write_default(name)
    changed = (default and current != name) or rebound or new_version
    if ecn and facts.tcp_ecn() != 1:
        _write_sysctl(_ECN_SYSCTL, "1", "net.ipv4.tcp_ecn")
        changed = True
    try:
        for prefix in prefixes:
            changed |= routes.activate(prefix, name, record.routes[prefix])
    except routes.RouteError as exc:
        raise ActionError(str(exc)) from None
    return {"changed": changed, "default": facts.default_congestion_control(),
            "previous": record.previous_default, "routes": list(prefixes), "ecn": facts.tcp_ecn()}


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


def deactivate(state_dir: str, name: str, digest: str | None, restore: str | None) -> dict:
    """Undo what the rollout of NAME at DIGEST changed in this namespace. Where it upgraded
    the control, that means the version before (in place); where it brought the control,
    restoring the previous default, routes and ECN, and unloading it if this was the last user."""
    host = state.load(state_dir)
    record = host.controls.get(name)
    if record is not None and digest is not None:
        if digest not in record.digests:
            return {"changed": False, "restored": None, "unloaded": False,
                    "note": f"{name} {digest[:12]} was never in use here"}
        if len(record.digests) > 1:
            return _revert_version(state_dir, host, name, digest)
    return _withdraw(state_dir, host, name, record or ControlRecord(), restore)


def _revert_version(state_dir: str, host: HostState, name: str, digest: str) -> dict:
    history = host.controls[name].digests
    if history[-1] != digest:  # a later version is on top: this one is simply forgotten
        history.remove(digest)
        state.save(state_dir, host)
        return {"changed": False, "restored": None, "unloaded": False,
                "note": f"{name} {digest[:12]} was already replaced by a later version"}
    previous = history[-2]
    with registry_lock():
        # On a shared kernel another namespace may have moved the version already.
        if os.path.exists(layout.link_pin(name)) and layout.loaded_digest(name) != previous:
            _update_in_place(name, verified_object(state_dir, previous), previous,
                             host.maps.get(name, {}).get(previous))
    history.pop()
    state.save(state_dir, host)
    return {"changed": True, "restored": None, "unloaded": False, "reverted_to": previous}


def _withdraw(state_dir: str, host: HostState, name: str, record: ControlRecord, restore: str | None) -> dict:
    changed = False
    restored = None
    if facts.default_congestion_control() == name:
        restored = _restore_default(name, restore or record.previous_default)
        changed = True
    try:
        for prefix, previous in record.routes.items():
            changed |= routes.restore(prefix, name, previous)
    except routes.RouteError as exc:
        raise ActionError(str(exc)) from None
    if record.previous_ecn is not None and facts.tcp_ecn() != record.previous_ecn:
        _write_sysctl(_ECN_SYSCTL, str(record.previous_ecn), "net.ipv4.tcp_ecn")
        changed = True
    unloaded = False
    if os.path.isdir(layout.control_dir(name)):
        netns = facts.netns_id()
        with registry_lock():
            if os.path.isdir(layout.user_mark(name, netns)):
                os.rmdir(layout.user_mark(name, netns))
                changed = True
            if not layout.users(name):
                changed |= _disallow(record, name)
                _unload(name)
                unloaded = changed = True
    if name in host.controls or name in host.maps:
        host.controls.pop(name, None)
        host.maps.pop(name, None)
        state.save(state_dir, host)
    changed |= boot.forget_if_idle(state_dir)  # nothing left to restore at boot: no unit either
    return {"changed": changed, "restored": restored, "unloaded": unloaded}


def withdraw_all(state_dir: str) -> dict:
    """Undo everything this host's record says ccrollout changed in this namespace, newest
    first (for a rollback when the controller's own journal is lost)."""
    controls = state.load(state_dir).controls
    order = sorted(controls, key=lambda name: controls[name].since or 0, reverse=True)
    undone = []
    for name in order:
        result = _withdraw(state_dir, state.load(state_dir), name, controls[name], None)
        undone.append({"name": name, **result})
    return {"changed": any(item["changed"] for item in undone), "undone": undone}


def drift(state_dir: str) -> dict:
    """How this host differs from what ccrollout last set here (its own record)."""
    problems = []
    available = facts.available_congestion_controls()
    netns = facts.netns_id()
    host = state.load(state_dir)
    controls = host.controls
    for name, record in controls.items():
        if not os.path.exists(layout.link_pin(name)):
            problems.append(f"{name}: its pin is gone (a reboot, or removed by hand)")
        elif name not in available:
            problems.append(f"{name}: pinned but not registered")
        else:
            loaded = layout.loaded_digest(name)
            if record.digest and loaded != record.digest:
                problems.append(f"{name}: the kernel runs version {(loaded or 'unknown')[:12]}, "
                                f"this host was given {record.digest[:12]} (another namespace of this "
                                "kernel changed it?)")
        if netns not in layout.users(name):
            problems.append(f"{name}: this namespace is not marked as a user")
        if record.default and facts.default_congestion_control() != name:
            problems.append(f"{name}: the default is {facts.default_congestion_control()}")
        for prefix in record.routes:
            if routes.congctl_of(prefix) != name:
                problems.append(f"{name}: the route to {prefix} no longer uses it")
        if record.previous_ecn is not None and facts.tcp_ecn() != 1:
            problems.append(f"{name}: net.ipv4.tcp_ecn is {facts.tcp_ecn()}, not 1")
    restored = host.restored and {**host.restored.to_json(), "this_boot": host.restored.boot_id == facts.boot_id()}
    return {"changed": False, "drift": problems, "managed": sorted(controls), "restored": restored}


def lock(state_dir: str, rollout: str, controller: str, lease_seconds: float) -> dict:
    """Claim this host for ROLLOUT until the lease runs out (renewed by claiming again). A
    controller that dies cannot keep a host forever: its claim simply expires."""
    host = state.load(state_dir)
    held = host.lock
    now = time.time()
    if held and held.rollout != rollout and held.expires > now:
        raise ActionError(f"locked by rollout {held.rollout} of {held.controller} for "
                          f"{held.expires - now:.0f}s more (the claim expires by itself)")
    host.lock = Claim(rollout=rollout, controller=controller, expires=now + lease_seconds)
    state.save(state_dir, host)
    return {"changed": False, "renewed": bool(held and held.rollout == rollout)}


def unlock(state_dir: str, rollout: str) -> dict:
    host = state.load(state_dir)
    if host.lock and host.lock.rollout == rollout:
        host.lock = None
        state.save(state_dir, host)
    return {"changed": False}


def counters() -> dict:
    return {"time": time.time(), "counters": facts.tcp_counters()}
