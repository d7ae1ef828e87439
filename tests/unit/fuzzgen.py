"""What the fuzz suite throws at ccrollout: hostile plans, inventories, host patterns,
damaged journals and host requests, as hypothesis strategies.

Each starts from something valid and breaks it the ways a fuzzing session found broke
things (huge and non-finite numbers, digits beyond a float, alias bombs, odd YAML tags,
deep nesting, links and paths that leave the tree, unhashable and mixed keys, regular
expressions that backtrack), plus plain random edits.
"""

from __future__ import annotations

import copy
import sqlite3

import yaml
from hypothesis import strategies as st

from ccrollout.host import protocol

BASE_PLAN = {
    "version": 1,
    "algorithms": [{"name": "ccr_fuzz", "source": "../bpf/ccr_fuzz.bpf.c", "cflags": ["-DX=1"], "ecn": False}],
    "rollouts": [{
        "name": "fuzz", "algorithm": "ccr_fuzz", "hosts": "lab", "stages": [1, "50%", "100%"],
        "baseline": "4s", "settle": "2s", "bake": "8s", "interval": "2s", "max_fail_percentage": 0,
        "health": {"max_retransmit_ratio": "15%", "max_increase": "10%", "min_segments": 500,
                   "on_inconclusive": "extend", "max_extend": "4s", "significance": 0.05, "min_intervals": 3},
        "scope": {"default": True, "routes": ["10.0.0.0/8"]}, "control": 2, "pause": False}],
}
INVENTORY_INI = "[lab]\nlab1\nlab2 x=1\n[canary]\nlab1\n[all:vars]\ny=2\n"

_huge_numbers = st.one_of(
    st.integers(-10**400, 10**400), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400, 9999999999, 604801, 0, -1, 1e-300]))
_digits = st.integers(1, 6000).map(lambda n: "1" + "0" * (n - 1))
_hostile_strings = st.one_of(
    _digits, _digits.map(lambda d: d + "%"), _digits.map(lambda d: d + "s"), _digits.map(lambda d: f"lab[{d}]"),
    st.text(max_size=40),
    st.sampled_from(["9999999999s", "1e999", "1e999s", ".nan", "nan%", "0s", "1ms", "604800s", "168h",
                     "1" * 400 + "s", "1s" * 5000, "~(a+)+$", "~(", "lab[-99999999999]", "all:!all",
                     "../../../../etc/passwd", "../etc/shadow", "/etc/shadow", "~root/.ssh/id_rsa", "a\x00b",
                     "reno", "cubic", "bbr", "dctcp", "highspeed", "-I../../..", "-I/", "10.0.0.0/33", "\x1b[2J"]))
# Values a plan could well hold, so that some mutated plans stay valid and go on to the later checks.
_plausible = st.sampled_from([1, 2, 3, 10, 0.5, "10s", "1m30s", "500ms", "5%", "2.5%", "100%", "lab", "lab:!canary",
                              "lab:&canary", "~lab[12]", "all", True, False, "fail", "extend", "pass", "hold"])
_values = st.recursive(
    st.one_of(_plausible, st.none(), st.booleans(), _huge_numbers, _hostile_strings),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=10)

# Text that YAML reads into something hostile: aliases that explode, tags, nesting, dates.
_YAML_SNIPPETS = [
    "\n".join(["z0: &z0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
              + [f"z{i}: &z{i} [" + ", ".join([f"*z{i - 1}"] * 10) + "]" for i in range(1, 10)]),
    "\n".join(["m0: &m0 {a: 1}"] + [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, 40)]),
    "deep: " + "[" * 3000 + "]" * 3000, "deep: " + "{a: " * 400 + "1" + "}" * 400,
    "b: !!binary aGVsbG8=", "s: !!set {a, b}", "d: 2020-01-02", "t: 2001-12-14t21:59:43.10-05:00",
    "x: !!python/object/apply:os.system [true]", "r: &r [*r]", "k: {[1, 2]: x}", "n: .nan", "i: -.inf",
    "? [a]\n: b", "\ufeffbom: 1", "tab:\t1", "big: " + "9" * 5000, "long: " + "x" * 100_000,
]


def value_paths(node, prefix=()):
    """The path (keys and indices) of every value in NODE, itself first as ()."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from value_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from value_paths(value, prefix + (index,))


_DURATIONS = ["1s", "2s", "8s", "500ms", "1m", "1m30s", "0s", 3, 0.5, "100h", "604800s", 604800]
# Per key, values a plan may well hold (and a few just past a bound).
_PLAUSIBLE_BY_KEY = {
    **{key: _DURATIONS for key in ("baseline", "settle", "bake", "interval", "max_extend")},
    "stages": [[1], [1, "50%"], ["100%"], [2, 3], ["1%", "101%"], [1000000]], "hosts": ["lab", "lab:!canary",
    "all", "~lab\\d", "lab[0]", "lab[-1]", "lab[0:9]", "~(lab)+$"], "max_fail_percentage": [0, 50, "10%", 100, "100.5%"],
    "max_retransmit_ratio": ["5%", "0.5%", "100%"], "max_increase": ["0%", "2%", "99.9%"],
    "min_segments": [0, 1, 10**12, 10**12 + 1], "on_inconclusive": ["fail", "pass", "extend"],
    "significance": [0.01, 0.5, 0.999], "min_intervals": [2, 3, 4, 100000], "control": [None, 0, 5, "10%", "100%"],
    "pause": [True, False], "ecn": [True, False], "default": [True, False], "cflags": [[], ["-DA"], ["-UB=1"]],
    "routes": [[], ["10.0.0.0/8"], ["10.0.0.1/8"]], "on_failure": ["rollback", "hold"], "version": [1, 2]}


@st.composite
def _plausible_for(draw, key):
    choices = _PLAUSIBLE_BY_KEY.get(key)
    return copy.deepcopy(draw(st.sampled_from(choices))) if choices else draw(_plausible)


@st.composite
def _mutated_document(draw, base, values=_values):
    """BASE with up to four values replaced or added; VALUES None draws plausible ones by key."""
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from([p for p in value_paths(document) if p]))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        value = draw(_plausible_for(path[-1]) if values is None else values)
        if values is None or draw(st.booleans()) or not isinstance(parent, dict):
            parent[path[-1]] = value
        else:
            parent[draw(st.text(max_size=10))] = value
    return document


def _dump(document) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=True, width=10**9)
    except (yaml.YAMLError, ValueError, OverflowError):
        return "not: [yaml"


@st.composite
def _with_snippets(draw, text: str) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(0, 2))):
        position = draw(st.integers(0, len(lines)))
        lines.insert(position, draw(st.sampled_from(_YAML_SNIPPETS)))
    for _ in range(draw(st.integers(0, 3))):  # and plain damage
        if lines:
            index = draw(st.integers(0, len(lines) - 1))
            cut = draw(st.integers(0, len(lines[index])))
            lines[index] = lines[index][:cut] + draw(st.sampled_from(["", "[", "{", ": ", "&a ", "*a", "\t", "%", "'"]))
    return "\n".join(lines) + "\n"


plans = st.one_of(_mutated_document(BASE_PLAN).map(_dump),
                  _mutated_document(BASE_PLAN, None).map(_dump),  # more often valid: the later checks
                  _mutated_document(BASE_PLAN).map(_dump).flatmap(_with_snippets))

_INI_LINES = st.one_of(
    st.sampled_from(["[lab]", "[canary]", "[ungrouped:children]", "[all:children]", "[lab:children]", "[lab:vars]",
                     "[all:vars]", "[prod:children]", "lab", "canary", "prod", "lab1", "lab2:2222", "[weird:type]",
                     "web[01:99999999]", "db-[a:Z]", "h[0:5:0]", "h x=\"{(1,2): 3}\"", "h y=1e999", "h z=-1e999",
                     "h w=\"{1: 2, 'a': 3}\"", "h b=\"b'\\xff'\"", "h s=\"{1, 2}\"", "h e=...", "h c=1j",
                     "h d=\"[" + "[" * 150 + "]" * 150 + "]\"", "h q='unclosed", "---", "x=1", "[" + "a" * 5000 + "]",
                     "h" + "[0:0]" * 1500, "h" + "[0:1]" * 17, "h[0:" + "9" * 5000 + "]", "h[a:" + "z" * 3000 + "]"]),
    st.text(max_size=30))


@st.composite
def _ini(draw) -> str:
    lines = INVENTORY_INI.splitlines() + draw(st.lists(_INI_LINES, max_size=12))
    draw(st.randoms()).shuffle(lines)
    if draw(st.booleans()):  # a chain of children, either way round
        count = draw(st.sampled_from([10, 3000]))
        chain = [f"[g{i}:children]\ng{i + 1}" for i in range(count)]
        lines += chain if draw(st.booleans()) else chain[::-1]
    return "\n".join(lines) + "\n"


_YAML_INVENTORY = {"all": {"vars": {"x": 0}, "children": {"lab": {"hosts": {"lab1": {"a": 1}, "lab2": None}},
                                                           "canary": {"hosts": {"lab1": None}}}}}
inventories = st.one_of(
    _ini().map(lambda text: ("hosts", text)),
    _mutated_document(_YAML_INVENTORY).map(_dump).flatmap(_with_snippets).map(lambda text: ("hosts.yml", text)))
group_vars = st.one_of(_mutated_document({"x": 1, "y": [1, 2], "z": {"a": "b"}}).map(_dump).flatmap(_with_snippets),
                       st.sampled_from(_YAML_SNIPPETS))
patterns = st.one_of(
    st.sampled_from(["all", "lab", "lab:&canary", "lab:!canary", "~lab\\d", "~(a+)+$", "~(", "~" + "(" * 600,
                     "lab[0]", "lab[-1]", "lab[0:1]", "lab[1:]", "*", "lab*", "[", "lab[" + "9" * 5000 + "]",
                     "all:!all", "&lab", "!lab", ",", "lab,,canary", "::1", "[::1]:22", "x" * 100_000]),
    st.text(max_size=20))


# -- journals: damage to a good one -------------------------------------------------------------

_JOURNAL_VALUES = st.one_of(
    st.none(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), st.binary(max_size=20),
    st.text(max_size=20),
    st.sampled_from(["x; reboot", "../../etc", "ccr reno", "a" * 300, "\x1b[2J", "{not json", "[]", "{}", "null",
                     '{"stage": "x", "hosts": "lab1", "outcome": "pass"}', '{"stages": [{"hosts": [1]}]}',
                     '{"stage": 1, "hosts": ["lab1"], "outcome": "pass", "figures": {"lab1": {}}}',
                     "[" * 100_000, "running", "paused", "done", "cubic", "-1", "0", str(2**40)]))
_TABLE_COLUMNS = {"rollouts": ["id", "plan", "rollout", "algorithm", "digest", "started", "finished", "status"],
                  "changes": ["id", "rollout_id", "host", "stage", "algorithm", "digest", "previous_default",
                              "state", "updated"],
                  "locks": ["host", "rollout_id", "controller", "pid", "since"],
                  "events": ["rollout_id", "time", "stage", "kind", "data"]}


@st.composite
def journal_damage(draw, size: int) -> list[tuple]:
    """A few damage steps for a journal of SIZE bytes: (kind, arguments...)."""
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "overwrite", "garbage", "cell", "cell", "cell", "drop", "pragma",
                                     "empty", "directory", "fifo", "append", "foreign"]))
        if kind == "truncate":
            steps.append((kind, draw(st.integers(0, size))))
        elif kind == "overwrite":
            steps.append((kind, draw(st.integers(0, size)), draw(st.binary(min_size=1, max_size=64))))
        elif kind in ("garbage", "append"):
            steps.append((kind, draw(st.binary(min_size=1, max_size=8192))))
        elif kind == "cell":
            table = draw(st.sampled_from(sorted(_TABLE_COLUMNS)))
            steps.append((kind, table, draw(st.sampled_from(_TABLE_COLUMNS[table])), draw(_JOURNAL_VALUES)))
        elif kind == "drop":
            steps.append((kind, draw(st.sampled_from(sorted(_TABLE_COLUMNS)))))
        elif kind == "pragma":
            steps.append((kind, draw(st.sampled_from(["user_version", "application_id"])),
                          draw(st.integers(-2**31, 2**31 - 1))))
        else:
            steps.append((kind,))
    return steps


def damage(path, steps: list[tuple]) -> None:
    """Apply STEPS to the journal at PATH (a file, or whatever a step left there)."""
    import os
    for kind, *arguments in steps:
        if kind in ("directory", "fifo", "empty", "garbage") or not path.is_file():
            if path.is_dir():
                path.rmdir()
            elif path.exists() or path.is_symlink():
                path.unlink()
            if kind == "directory":
                path.mkdir()
            elif kind == "fifo":
                os.mkfifo(path)
            else:
                path.write_bytes(arguments[0] if kind == "garbage" else b"")
        elif kind == "truncate":
            os.truncate(path, arguments[0])
        elif kind in ("overwrite", "append"):
            with open(path, "r+b" if kind == "overwrite" else "ab") as handle:
                if kind == "overwrite":
                    handle.seek(arguments[0])
                handle.write(arguments[-1])
        else:
            _damage_by_sql(path, kind, arguments)


def _damage_by_sql(path, kind: str, arguments: list) -> None:
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            if kind == "cell":
                table, column, value = arguments
                db.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = (SELECT min(rowid) FROM {table})", (value,))
            elif kind == "drop":
                db.execute(f"DROP TABLE {arguments[0]}")
            elif kind == "pragma":
                db.execute(f"PRAGMA {arguments[0]} = {arguments[1]}")
            elif kind == "foreign":
                db.execute("CREATE TABLE IF NOT EXISTS recipes (name TEXT)")
        finally:
            db.close()
    except (sqlite3.Error, UnicodeDecodeError):
        pass  # already too damaged for SQL: the damage stands as it is


# -- host requests -------------------------------------------------------------------------------

_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=30),
                          st.sampled_from(["", "/var/lib/ccrollout", "/", "//x", "/a/../b", "ccr_reno", "a" * 5000,
                                           "ab" * 32, "10.0.0.0/8", "::/0", "AAAA", "====", "\x00"]))
_json = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


# A value each field takes, so that many generated actions are valid and reach the dispatch.
_PLAUSIBLE_FIELDS = {
    "name": "ccr_fuzz", "digest": "ab" * 32, "object": "AAAA", "default": True, "routes": ["10.0.0.0/8", "::/0"],
    "ecn": False, "restore": "cubic", "rollout": "20250101-000000-abcdef", "controller": "host:1", "lease": 60.0,
    "lifetime": 60, "source": "trace", "seconds": 1.0, "interval": 0.5, "top": 100, "tracer": True,
    "map": "ccr_fuzz", "persist": False, "boot_unit": "no", "phase": "all"}


@st.composite
def _action(draw):
    operation = draw(st.sampled_from(sorted(protocol.OPERATIONS)))
    names = protocol.OPERATIONS[operation].field_names()
    fields = {name: _PLAUSIBLE_FIELDS[name] for name in names if draw(st.booleans()) or name not in ("object",)}
    if draw(st.booleans()):  # and spoil one
        fields[draw(st.sampled_from(names + ["op", "extra"]))] = draw(_json)
    return {"op": operation if draw(st.integers(0, 9)) else draw(_json_scalars),
            **{k: v for k, v in fields.items() if k != "op"}}


_well_formed = st.fixed_dictionaries({"id": st.integers(0, 2**53), "state_dir": st.just("/var/lib/ccrollout-fuzz"),
                                      "actions": st.lists(_action(), max_size=4)})
host_messages = st.one_of(
    _json,
    st.fixed_dictionaries({"id": _json_scalars, "state_dir": _json_scalars,
                           "actions": st.one_of(st.lists(_action(), max_size=20), _json)}),
    _well_formed, _well_formed, _well_formed)  # most of them: the actions' own checks
