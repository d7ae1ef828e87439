"""A simulated fleet: hosts that answer the host protocol in-process, with no kernel.

For tests of the runner, the canary and the control group without root, and for measuring
the controller alone on fleets far larger than this machine can run (bench/fleet.py).
Each host checks every request as the real agent does (protocol.parse_action), keeps
the state a real host would report in its facts, and counts segments as a steady
sender would: SEGMENTS_PER_SECOND, retransmitting at its running control's ratio (the
watcher's figures carry bytes acked, but no RTT).
"""

import threading
import time
from dataclasses import dataclass, field

from .host import protocol

SEGMENTS_PER_SECOND = 5000.0
SEGMENT_BYTES = 1448  # what a segment carries, for the watcher's bytes acked
BOOT_ID = "00000000-0000-4000-8000-000000000001"


@dataclass
class SimulatedHost:
    name: str
    default: str = "reno"
    ratios: dict = field(default_factory=lambda: {"reno": 0.01})  # control -> retransmit ratio
    problems: list = field(default_factory=list)
    unreachable: bool = False
    started: float = field(default_factory=time.monotonic)
    loaded: dict = field(default_factory=dict)     # control -> digest
    records: dict = field(default_factory=dict)    # control -> {"digests": [...], "previous_default": ...}
    objects: set = field(default_factory=set)
    claim: dict | None = None
    watching_since: float | None = None
    calls: int = 0

    def handle(self, message: dict, emit=None) -> dict:
        if self.unreachable:
            from .fleet import HostError
            raise HostError(self.name, "unreachable: simulated")
        self.calls += 1
        results = []
        for raw in message["actions"]:
            try:
                operation, args = protocol.parse_action(raw)
                result = {"op": operation.name, "ok": True, "changed": False,
                          **getattr(self, "_" + operation.name)(**args)}
            except (protocol.ProtocolError, RuntimeError) as exc:
                result = {"op": raw.get("op") if isinstance(raw, dict) else None, "ok": False, "error": str(exc)}
            results.append(result)
            if not result["ok"]:
                break
        return {"id": message["id"], "results": results}

    # -- the operations ------------------------------------------------------------

    def _facts(self, tracer: bool) -> dict:
        return {"facts": {
            "kernel": "6.18-sim", "btf": True, "struct_ops": True, "struct_ops_link": True, "libbpf": "1.4.6",
            "python": "3.11", "boot_id": BOOT_ID, "netns": f"ns-{self.name}", "default": self.default,
            "available": sorted({"reno", "cubic", *self.loaded}), "ecn": 2, "routes": [],
            "managed": {name: {"digest": digest, "users": [f"ns-{self.name}"], "link_id": 1, "map_id": 1}
                        for name, digest in self.loaded.items()},
            "records": self.records, "objects": sorted(self.objects), "problems": list(self.problems)}}

    def _counters(self) -> dict:
        elapsed = time.monotonic() - self.started
        sent = int(elapsed * SEGMENTS_PER_SECOND)
        ratio = self.ratios.get(self.default, 0.01)
        by_control = None
        if self.watching_since is not None:
            watched = int((time.monotonic() - self.watching_since) * SEGMENTS_PER_SECOND)
            acked = (watched - int(watched * ratio)) * SEGMENT_BYTES  # what got through, once
            by_control = {self.default: protocol.control_figures((watched, int(watched * ratio), acked), None, 1)}
        return {"time": time.time(), "counters": {"OutSegs": sent, "RetransSegs": int(sent * ratio)},
                "by_control": by_control}

    def _drift(self) -> dict:
        return {"drift": [], "managed": sorted(self.records), "restored": None}

    def _install(self, name: str, digest: str, object: str | None, map: str | None) -> dict:
        if object is not None:
            self.objects.add(digest)
        if digest not in self.objects:
            raise RuntimeError(f"no object {digest[:12]} on this host")
        changed = self.loaded.get(name) != digest
        replaced = self.loaded.get(name) if changed else None
        self.loaded[name] = digest
        return {"changed": changed, "loaded": changed and replaced is None, "replaced": replaced,
                "link": {"link_id": 1, "map_id": 1}, "netns": f"ns-{self.name}", "other_users": []}

    def _activate(self, name: str, digest: str, default: bool, routes: list, ecn: bool, persist: bool) -> dict:
        record = self.records.setdefault(name, {"digests": [], "previous_default": self.default})
        changed = self.default != name or record["digests"][-1:] != [digest]
        if record["digests"][-1:] != [digest]:
            record["digests"].append(digest)
        previous, self.default = self.default, name if default else self.default
        return {"changed": changed, "default": self.default, "previous": previous}

    def _persist(self, boot_unit: str) -> dict:
        return {"unit": None, "commands": [], "note": "a simulated host does not boot"}

    def _restore(self, phase: str) -> dict:
        raise RuntimeError("a simulated host does not boot")

    def _vmlinux(self) -> dict:
        raise RuntimeError("a simulated host has no kernel")

    def _deactivate(self, name: str, digest: str | None, restore: str | None) -> dict:
        record = self.records.pop(name, None)
        if record is None:
            return {"changed": False, "restored": None, "unloaded": False, "note": "nothing recorded"}
        self.default = restore or record["previous_default"]
        self.loaded.pop(name, None)
        return {"changed": True, "restored": self.default, "unloaded": True}

    def _withdraw_all(self) -> dict:
        undone = [{"name": name, **self._deactivate(name, None, None)} for name in list(self.records)]
        return {"changed": bool(undone), "undone": undone}

    def _lock(self, rollout: str, controller: str, lease: float) -> dict:
        held = self.claim
        if held and held["rollout"] != rollout and held["expires"] > time.time():
            raise RuntimeError(f"locked by rollout {held['rollout']} of {held['controller']}")
        self.claim = {"rollout": rollout, "controller": controller, "expires": time.time() + lease}
        return {"renewed": bool(held and held["rollout"] == rollout)}

    def _unlock(self, rollout: str) -> dict:
        if self.claim and self.claim["rollout"] == rollout:
            self.claim = None
        return {}

    def _watch_start(self, lifetime: float, source: str) -> dict:
        if self.watching_since is None:
            self.watching_since = time.monotonic()
        return {"started": True, "source": "sockets", "note": None}

    def _watch_stop(self) -> dict:
        stopped, self.watching_since = self.watching_since is not None, None
        return {"stopped": stopped}

    def _trace(self, seconds: float, interval: float, top: int) -> dict:
        raise RuntimeError("a simulated host has no tracer")


class SimulatedFleet:
    """Hosts by name, and a `connect` for the Runner that reaches them in-process."""

    def __init__(self, names, **host_options):
        self.hosts = {name: SimulatedHost(name, **host_options) for name in names}
        self.sessions_opened = 0
        self._lock = threading.Lock()

    def connect(self, target):
        from .fleet import LocalSession
        with self._lock:
            self.sessions_opened += 1
        return LocalSession(target, self.hosts[target.name].handle)
