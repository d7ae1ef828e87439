"""The plan language: a YAML file saying which congestion control goes onto which hosts.

``schema/plan.schema.json`` is the single source of truth for the plan's shape
(and its defaults); this module adds the checks that need more than the shape
(names that must exist, files on disk, the order of stages) and turns the
document into frozen dataclasses.

Every error of a plan is reported at once, each as
``file:line:column: document.path: what was expected``, with a near-miss
suggestion where one is close.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ccrollout import units
from ccrollout.diagnostics import (
    Diagnostics,
    MarkedDocument,
    YAMLSyntaxError,
    did_you_mean,
    format_doc_path,
    load_marked_yaml,
)
from ccrollout.errors import InvalidInput
from ccrollout.inventory import Inventory, split_host_pattern
from ccrollout.metrics import promql
from ccrollout.localfiles import PLAN_LIMIT, UnreadableFile, read_regular_text
from ccrollout.planschema import SCHEMA_PATH, health_defaults, plan_schema, schema_default, schema_problems, validator
from ccrollout.rollout.judge import Limits
from ccrollout.schedule import Schedule

# Every duration, and a whole stage from baseline to verdict, lasts at most this (the schema's).
MAX_DURATION = plan_schema()["$defs"]["duration"]["maximum"]
# Samples of one host before, or after, a stage's change: past this a sampler's memory and
# the judge's tests grow for figures no decision needs.
MAX_INTERVALS = 100_000
# The health limits written as percentages, and the most each may say (None: no most).
PERCENT_MAXIMUMS = {"max_retransmit_ratio": 100.0, "max_increase": 100.0, "max_goodput_drop": 100.0,
                    "max_rtt_increase": None}

__all__ = [
    "Algorithm",
    "Plan",
    "Rollout",
    "Stage",
    "SCHEMA_PATH",
    "check_plan_against_inventory",
    "load_plan",
    "plan_schema",
    "stage_batches",
]


@dataclass(frozen=True)
class Algorithm:
    """A congestion control: kernel name, absolute source path, extra compile flags
    (``-I`` directories made absolute), whether it needs ECN turned on, and the tree
    its source may include from."""

    name: str
    source: Path
    cflags: tuple[str, ...] = ()
    ecn: bool = False
    root: Path | None = None  # the tree its source may include from: the directory above the plan's


@dataclass(frozen=True)
class Stage:
    """One batch size: ``size`` hosts, or ``size`` percent of all selected hosts."""

    size: int
    percent: bool = False

    def __str__(self) -> str:
        return f"{self.size}%" if self.percent else str(self.size)

    def batch_size(self, total: int) -> int:
        """Hosts in this batch out of ``total`` selected hosts (Ansible's pct_to_int)."""
        if self.percent:
            return int((self.size / 100.0) * total) or 1
        return self.size


@dataclass(frozen=True)
class Scope:
    """Where a control becomes active on a host."""

    default: bool = True
    routes: tuple[str, ...] = ()  # normalised IPv4 and IPv6 prefixes (ipaddress)


@dataclass(frozen=True)
class Rollout:
    """One rollout of one algorithm onto the hosts a pattern selects."""

    name: str
    algorithm: Algorithm
    hosts: str
    stages: tuple[Stage, ...]
    schedule: Schedule
    limits: Limits              # the judge's, max_fail_percentage included
    on_failure: str             # "rollback" | "hold"
    pause: bool = False         # wait for promote or abort after each passed stage but the last
    scope: Scope = Scope()
    health_source: str = "sockets"  # where a changed host's retransmissions come from: sockets | trace | prometheus
    prometheus: promql.PrometheusSource | None = None  # with health_source prometheus
    control: Stage | None = None    # control hosts per stage; None: about the stage's own size
    persist: bool = True            # hosts restore the control at boot


@dataclass(frozen=True)
class Plan:
    """A validated plan. ``path`` is absolute."""

    path: Path
    algorithms: dict[str, Algorithm]
    rollouts: list[Rollout]
    version: int = 1
    # Where things are in the file, for later errors: "rollouts[0].hosts" -> (line, column).
    locations: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    # The path as the user gave it, for messages.
    display_path: str = field(default="", compare=False, repr=False)
    notify: tuple[str, ...] = ()  # webhook URLs that receive the events

    def location(self, doc_path: str) -> str:
        """``file:line:column`` of a document path, for messages."""
        line, column = self.locations.get(doc_path, (0, 0))
        name = self.display_path or str(self.path)
        return f"{name}:{line}:{column}" if line else name


# -- loading ----------------------------------------------------------------------------


class _PlanReader:
    """Checks one plan document, collecting every error."""

    def __init__(self, display: str, path: Path, document: MarkedDocument):
        self.display = display
        self.document = document
        self.data = document.data
        self.plan_dir = Path(os.path.abspath(path)).parent
        self.diagnostics = Diagnostics()
        self.bad_paths: set[tuple] = set()

    def error(self, path: tuple, message: str, *, key: bool = False, about: tuple | None = None) -> None:
        """Report ``message`` at ``path``; ``about`` (default ``path``) is kept out of later checks."""
        line, column = self.document.mark(path, key=key)
        where = f"{format_doc_path(path)}: " if path else ""
        self.diagnostics.add(self.display, line, column, f"{where}{message}")
        self.bad_paths.add(path if about is None else about)

    def ok(self, path: tuple, *, inside: bool = True) -> bool:
        """True if no error was reported at ``path`` or around it (and, with ``inside``,
        within it), so that a check of ``path`` does not repeat or trip over it."""
        for bad in self.bad_paths:
            if path[:len(bad)] == bad or (inside and bad[:len(path)] == path):
                return False
        return True

    # checks

    def check(self) -> None:
        for dup_path, (first, line, column) in self.document.duplicate_keys.items():
            self.diagnostics.add(self.display, line, column,
                                 f"{format_doc_path(dup_path)}: key given twice in one mapping "
                                 f"(first at line {first}); YAML would silently keep only the last")
        if self.data is None:
            self.error((), "the plan file is empty; it needs 'algorithms' and 'rollouts'")
            return
        for error in validator().iter_errors(self.data):
            for path, key, message, about in schema_problems(error):
                self.error(path, message, key=key, about=about)
        if not isinstance(self.data, dict):
            return
        algorithm_names = self.check_algorithms()
        self.check_rollouts(algorithm_names)

    def check_algorithms(self) -> dict[str, int] | None:
        """Algorithm names -> index; None if there is no usable list."""
        algorithms = self.data.get("algorithms")
        if not isinstance(algorithms, list) or not self.ok(("algorithms",), inside=False):
            return None
        names: dict[str, int] = {}
        for index, algorithm in enumerate(algorithms):
            at = ("algorithms", index)
            if not isinstance(algorithm, dict):
                continue
            name = algorithm.get("name")
            if isinstance(name, str):
                if name in names:
                    first_line = self.document.mark(("algorithms", names[name], "name"))[0]
                    self.error(at + ("name",), f"algorithm {name!r} is defined twice (first at line {first_line})")
                else:
                    names[name] = index
            source = algorithm.get("source")
            if isinstance(source, str) and self.ok(at + ("source",)):
                self.check_path(at + ("source",), source, want="file")
            cflags = algorithm.get("cflags")
            if isinstance(cflags, list):
                for flag_index, flag in enumerate(cflags):
                    flag_at = at + ("cflags", flag_index)
                    if isinstance(flag, str) and flag.startswith("-I") and self.ok(flag_at):
                        self.check_path(flag_at, flag[2:], want="directory")
        return names

    def resolve(self, relative: str) -> tuple[Path | None, str | None]:
        """Resolve a plan-relative path: (absolute real path, None) or (None, why not)."""
        if "\x00" in relative:
            return None, "a path cannot contain a NUL character"
        if os.path.isabs(relative) or relative.startswith("~"):
            return None, (f"{relative!r} must be a path relative to the plan's directory "
                          f"({self.plan_dir})")
        try:
            root = self.containment_root()
            resolved = Path(os.path.realpath(self.plan_dir / relative))
        except (OSError, ValueError) as exc:
            return None, f"cannot resolve {relative!r}: {exc}"
        if root is None:
            return None, "a plan in / may not name files; move it into a directory of its own"
        if not resolved.is_relative_to(root):
            return None, (f"{relative!r} resolves to {resolved}, outside {root}; a plan may only use files "
                          f"under the directory that holds its own directory, or under its own directory "
                          f"when that is directly under /")
        return resolved, None

    def containment_root(self) -> Path | None:
        """What a plan's files must stay inside: the directory holding the plan's directory
        (playbooks/../bpf), but never / itself. So a plan in /tmp keeps to /tmp, and one in
        / names no file. Links are followed, as the compiler would follow them."""
        directory = Path(os.path.realpath(self.plan_dir))
        if directory.parent == directory:
            return None
        return directory if directory.parent.parent == directory.parent else directory.parent

    def check_path(self, at: tuple, relative: str, *, want: str) -> None:
        resolved, problem = self.resolve(relative)
        if problem:
            self.error(at, problem)
            return
        try:
            exists = resolved.exists()
            right_kind = resolved.is_file() if want == "file" else resolved.is_dir()
        except OSError as exc:
            self.error(at, f"cannot check {relative!r}: {exc.strerror or exc}")
            return
        if not exists:
            self.error(at, f"{want} not found: {relative!r} (looked for {_printable(resolved)})")
        elif not right_kind:
            self.error(at, f"{relative!r} is not a {'regular file' if want == 'file' else 'directory'} "
                           f"({_printable(resolved)})")

    def check_rollouts(self, algorithm_names: dict[str, int] | None) -> None:
        rollouts = self.data.get("rollouts")
        if not isinstance(rollouts, list):
            return
        names: dict[str, int] = {}
        for index, rollout in enumerate(rollouts):
            at = ("rollouts", index)
            if not isinstance(rollout, dict):
                continue
            name = rollout.get("name")
            if isinstance(name, str) and self.ok(at + ("name",)):
                if name in names:
                    first_line = self.document.mark(("rollouts", names[name], "name"))[0]
                    self.error(at + ("name",), f"rollout {name!r} is defined twice (first at line {first_line})")
                else:
                    names[name] = index
            algorithm = rollout.get("algorithm")
            if isinstance(algorithm, str) and self.ok(at + ("algorithm",)) and algorithm_names is not None:
                if algorithm not in algorithm_names:
                    known = ", ".join(repr(n) for n in algorithm_names) or "none"
                    hint = did_you_mean(algorithm, list(algorithm_names)) or f"; the plan defines {known}"
                    self.error(at + ("algorithm",), f"unknown algorithm {algorithm!r}{hint}")
            hosts = rollout.get("hosts")
            if isinstance(hosts, str) and self.ok(at + ("hosts",)):
                self.check_host_pattern(at + ("hosts",), hosts)
            self.check_stages(at + ("stages",), rollout.get("stages"))
            self.check_control(at + ("control",), rollout.get("control"))
            self.check_timing(at, rollout)
            self.check_health(at + ("health",), rollout.get("health"))
            self.check_scope(at + ("scope",), rollout.get("scope"))
            fail = rollout.get("max_fail_percentage")
            if isinstance(fail, str) and self.ok(at + ("max_fail_percentage",)):
                self.parse(at + ("max_fail_percentage",), units.parse_percent, fail)

    def check_host_pattern(self, at: tuple, pattern: str) -> None:
        terms = split_host_pattern(pattern)
        if not terms:
            self.error(at, f"host pattern {pattern!r} names nothing")
        for term in terms:
            bare = term[1:] if term[0] in "&!" else term
            if bare.startswith("~"):
                try:
                    re.compile(bare[1:])
                except (re.error, RecursionError, OverflowError) as exc:
                    self.error(at, f"invalid regular expression {bare[1:]!r} in host pattern: {exc}")

    def check_control(self, at: tuple, control: Any) -> None:
        if isinstance(control, str) and self.ok(at) and not 0 <= int(control[:-1]) <= 100:
            self.error(at, f"a percentage of control hosts must be from 0% to 100%, got {control!r}")

    def check_stages(self, at: tuple, stages: Any) -> None:
        if not isinstance(stages, list) or not self.ok(at):
            return
        previous: dict[bool, tuple[int, int, Any]] = {}  # kind -> (size, index, as written)
        for index, raw in enumerate(stages):
            percent = isinstance(raw, str)
            size = int(raw[:-1]) if percent else int(raw)
            if percent and not 1 <= size <= 100:
                self.error(at + (index,), f"a percentage stage must be from 1% to 100%, got {raw!r}")
                return
            if percent in previous and size < previous[percent][0]:
                _, earlier_index, earlier = previous[percent]
                self.error(at + (index,),
                           f"stage {raw!r} is smaller than the earlier stage {earlier!r} "
                           f"(stages[{earlier_index}]); batch sizes of one kind must not shrink")
                return
            previous[percent] = (size, index, raw)

    def duration(self, at: tuple, value: Any, *, may_be_zero: bool) -> float | None:
        """Seconds in a duration of the plan; None (reported) unless above 0 (or 0 when
        MAY_BE_ZERO) and at most MAX_DURATION."""
        parsed = self.parse(at, units.parse_duration, value)
        if parsed is None:
            return None
        if parsed == 0 and not may_be_zero:
            self.error(at, f"expected a duration longer than 0, got {value!r}")
        elif parsed > MAX_DURATION:
            self.error(at, f"{value!r} is {units.format_duration(parsed)}, longer than a week "
                           f"({units.format_duration(MAX_DURATION)}), the longest a duration may be")
        else:
            return parsed
        return None

    def durations(self, at: tuple, rollout: dict) -> dict[str, float]:
        """The rollout's valid durations in seconds, max_extend included; the others are reported."""
        health = rollout.get("health") if isinstance(rollout.get("health"), dict) else {}
        places = {key: (at + (key,), rollout.get(key)) for key in ("baseline", "settle", "bake", "interval")}
        places["max_extend"] = (at + ("health", "max_extend"), health.get("max_extend"))
        seconds = {}
        for key, (path, value) in places.items():
            if value is not None and self.ok(path):
                parsed = self.duration(path, value, may_be_zero=key in ("settle", "max_extend"))
                if parsed is not None:
                    seconds[key] = parsed
        return seconds

    def check_timing(self, at: tuple, rollout: dict) -> None:
        seconds = self.durations(at, rollout)
        interval = seconds.get("interval")
        given = "interval" in rollout
        if interval is None and not given:
            interval = units.parse_duration(schema_default("rollout", "interval"))
        bake = seconds.get("bake")
        health = rollout.get("health") if isinstance(rollout.get("health"), dict) else {}
        needed = health.get("min_intervals", schema_default("health", "min_intervals"))
        if health.get("on_inconclusive") == "extend" and not seconds.get("max_extend") \
                and self.ok(at + ("health", "max_extend")) and self.ok(at + ("health", "on_inconclusive")):
            self.error(at + ("health", "on_inconclusive"), "on_inconclusive: extend needs max_extend, "
                       "the longest a stage may be watched beyond bake (e.g. max_extend: 8s)")
        if interval is None or bake is None:
            return
        interval_at = at + ("interval",) if given else at + ("bake",)
        shown = f"{units.format_duration(interval)}{'' if given else ' (the default interval)'}"
        if interval > bake:
            self.error(interval_at, f"interval ({units.format_duration(interval)}{'' if given else ', the default'}) "
                                    f"is longer than bake ({units.format_duration(bake)}); a bake needs at least one sample")
        elif isinstance(needed, int) and bake / interval + 1e-9 < needed:
            self.error(at + ("bake",), f"bake ({units.format_duration(bake)}) holds {int(bake / interval + 1e-9)} "
                                       f"intervals of {shown}; the judge needs at least {needed} (health.min_intervals)")
        self.check_stage_length(at, seconds, interval, interval_at, shown)

    def check_stage_length(self, at: tuple, seconds: dict[str, float], interval: float, interval_at: tuple,
                           shown: str) -> None:
        """A stage (baseline to verdict) lasts at most MAX_DURATION, and samples at most
        MAX_INTERVALS times before and after the change."""
        parts = {"baseline": seconds.get("baseline", seconds["bake"]), "settle": seconds.get("settle", 0.0),
                 "bake": seconds["bake"], "max_extend": seconds.get("max_extend", 0.0)}
        if sum(parts.values()) > MAX_DURATION:
            added = " + ".join(f"{key} {units.format_duration(value)}" for key, value in parts.items() if value)
            self.error(at + ("bake",), f"a stage could last {units.format_duration(sum(parts.values()))} ({added}); "
                                       f"at most a week ({units.format_duration(MAX_DURATION)})")
        intervals = max(parts["baseline"], parts["bake"] + parts["max_extend"]) / interval
        if intervals > MAX_INTERVALS:
            self.error(interval_at, f"sampling every {shown} takes {int(intervals)} samples of each host in a "
                                    f"stage; at most {MAX_INTERVALS}: sample less often")

    def check_scope(self, at: tuple, scope: Any) -> None:
        if not isinstance(scope, dict):
            return
        routes = scope.get("routes", [])
        if isinstance(routes, list):
            seen: dict[str, int] = {}
            for index, prefix in enumerate(routes):
                if isinstance(prefix, str) and self.ok(at + ("routes", index)):
                    try:
                        network = str(ipaddress.ip_network(prefix, strict=True))
                    except ValueError as exc:
                        self.error(at + ("routes", index), f"{prefix!r} is not an IPv4 or IPv6 prefix: {exc}")
                        continue
                    if network in seen:
                        self.error(at + ("routes", index), f"{prefix!r} is routes[{seen[network]}] again "
                                                           f"({network})")
                    seen.setdefault(network, index)
        if scope.get("default") is False and not routes and self.ok(at):
            self.error(at, "a scope with default: false and no routes activates the control nowhere")

    def check_health(self, at: tuple, health: Any) -> None:
        if not isinstance(health, dict):
            return
        for key, maximum in PERCENT_MAXIMUMS.items():
            value = health.get(key)
            if isinstance(value, str) and self.ok(at + (key,)):
                self.parse(at + (key,), lambda text: units.parse_percent(text, maximum=maximum), value)
        for path, message in promql.plan_problems(health):
            if self.ok(at + path):
                self.error(at + path, message)

    def parse(self, at: tuple, parser: Any, value: Any) -> Any:
        try:
            return parser(value)
        except ValueError as exc:
            self.error(at, str(exc))
            return None

    # building

    def build(self, path: Path) -> Plan:
        data = self.data
        algorithms: dict[str, Algorithm] = {}
        for entry in data["algorithms"]:
            source, _ = self.resolve(entry["source"])
            cflags = tuple(
                f"-I{self.resolve(flag[2:])[0]}" if flag.startswith("-I") else flag
                for flag in entry.get("cflags", schema_default("algorithm", "cflags"))
            )
            algorithms[entry["name"]] = Algorithm(entry["name"], source, cflags,
                                                  entry.get("ecn", schema_default("algorithm", "ecn")),
                                                  root=Path(os.path.realpath(self.plan_dir)).parent)
        rollouts = []
        for entry in data["rollouts"]:
            health = {**health_defaults(), **entry.get("health", {})}
            bake = units.parse_duration(entry["bake"])
            schedule = Schedule(
                baseline=units.parse_duration(entry["baseline"]) if "baseline" in entry else bake,
                settle=units.parse_duration(entry.get("settle", schema_default("rollout", "settle"))),
                bake=bake,
                interval=units.parse_duration(entry.get("interval", schema_default("rollout", "interval"))),
                max_extend=units.parse_duration(health["max_extend"]))
            limits = Limits(
                max_retransmit_ratio=units.parse_percent(health["max_retransmit_ratio"]),
                max_increase=units.parse_percent(health["max_increase"]),
                min_segments=int(health["min_segments"]),
                max_fail_fraction=units.parse_percent(
                    entry.get("max_fail_percentage", schema_default("rollout", "max_fail_percentage")),
                    allow_number=True),
                on_inconclusive=health["on_inconclusive"],
                significance=float(health["significance"]),
                min_intervals=int(health["min_intervals"]),
                max_extend_intervals=schedule.max_extend_intervals,
                max_goodput_drop=units.parse_percent(health["max_goodput_drop"]),
                max_rtt_increase=units.parse_percent(health["max_rtt_increase"], maximum=None),
                metrics=tuple(health["metrics"]))
            scope = entry.get("scope", {})
            rollouts.append(Rollout(
                name=entry["name"],
                algorithm=algorithms[entry["algorithm"]],
                hosts=entry["hosts"],
                stages=tuple(_as_stage(s) for s in entry["stages"]),
                schedule=schedule,
                limits=limits,
                on_failure=entry.get("on_failure", schema_default("rollout", "on_failure")),
                pause=entry.get("pause", schema_default("rollout", "pause")),
                scope=Scope(default=scope.get("default", schema_default("scope", "default")),
                            routes=tuple(str(ipaddress.ip_network(prefix))
                                         for prefix in scope.get("routes", schema_default("scope", "routes")))),
                health_source=health["source"],
                prometheus=(promql.PrometheusSource.from_plan(health["prometheus"])
                            if health["source"] == "prometheus" else None),
                control=None if entry.get("control") is None else _as_stage(entry["control"]),
                persist=entry.get("persist", schema_default("rollout", "persist")),
            ))
        locations = {format_doc_path(p): mark for p, mark in self.document.value_marks.items()}
        return Plan(Path(os.path.abspath(path)), algorithms, rollouts, data.get("version", 1),
                    locations, self.display, notify=tuple(data.get("notify", ())))


def _printable(path: Path) -> str:
    """A path for one line of a message: control characters (a plan may hold any) escaped."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def load_plan(path: str | os.PathLike) -> Plan:
    """Read and check a plan file. Raises InvalidInput listing every error, one a line."""
    display = os.fspath(path)
    path = Path(display)
    try:
        text = read_regular_text(path, PLAN_LIMIT)
    except UnreadableFile as exc:
        raise InvalidInput(f"{display}: plan file {exc}") from None
    try:
        document = load_marked_yaml(text)
    except YAMLSyntaxError as exc:
        raise InvalidInput(f"{display}:{exc.line}:{exc.column}: {exc.message}") from None
    reader = _PlanReader(display, path, document)
    reader.check()
    reader.diagnostics.raise_if_any()
    return reader.build(path)


# -- stages and the inventory ------------------------------------------------------------------


def _as_stage(value: Stage | int | str) -> Stage:
    if isinstance(value, Stage):
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        return Stage(int(value.strip()[:-1]), percent=True)
    return Stage(int(value))


def stage_batches(stages: Sequence[Stage | int | str], hosts: Sequence[Any]) -> list[list[Any]]:
    """Split hosts into batches exactly as Ansible's ``serial`` does.

    A percentage is of all hosts (``int(pct / 100 * n) or 1``); the last stage
    repeats until every host is in a batch; a size of 0 or less (or no stages)
    takes all remaining hosts.
    """
    remaining = list(hosts)
    total = len(remaining)
    sizes = [_as_stage(s) for s in stages]
    batches: list[list[Any]] = []
    index = 0
    while remaining:
        size = sizes[index].batch_size(total) if sizes else -1
        if size <= 0:
            batches.append(remaining)
            break
        batches.append(remaining[:size])
        remaining = remaining[size:]
        index = min(index + 1, len(sizes) - 1)
    return batches


def check_plan_against_inventory(plan: Plan, inventory: Inventory) -> None:
    """Raise InvalidInput if a rollout's host pattern selects no host, or names a group
    or host the inventory does not have (a typo in ``lab:!canary`` would otherwise
    silently widen the rollout). Suggests the nearest group or host name."""
    diagnostics = Diagnostics()
    name = plan.display_path or str(plan.path)
    for index, rollout in enumerate(plan.rollouts):
        doc_path = f"rollouts[{index}].hosts"
        line, column = plan.locations.get(doc_path, (0, 0))
        try:
            unmatched = inventory.unmatched_terms(rollout.hosts)
            selected = unmatched or inventory.select(rollout.hosts)
        except InvalidInput as exc:  # a regular expression that is invalid, or takes too long
            diagnostics.add(name, line, column, f"{doc_path}: {exc}")
            continue
        for term in unmatched:
            diagnostics.add(name, line, column,
                            f"{doc_path}: {term!r} in host pattern {rollout.hosts!r} names no group or host "
                            f"in the inventory{inventory.did_you_mean(term)}")
        if not selected:
            diagnostics.add(name, line, column,
                            f"{doc_path}: host pattern {rollout.hosts!r} selects no host in the inventory")
    diagnostics.raise_if_any()
