"""The host side runs under the host's own python3, 3.8 and newer (RHEL 9's is 3.9): each
interpreter found under pyenv byte-compiles every host module, imports them all, and answers a
request that needs no root from the zip the controller would send, started as a host starts it."""

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ccrollout import hostcode

OLDEST, NEWEST = (3, 8), (3, 13)
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
TIMEOUT_SECONDS = 60


def _version(interpreter: Path) -> tuple[int, int]:
    major, minor = interpreter.parents[1].name.split(".")[:2]
    return int(major), int(minor)


def _interpreters(supported: bool = True) -> dict[str, Path]:
    """One interpreter per minor version (the newest patch release found), by "3.N": those the
    host side supports, or (SUPPORTED false) the older ones it must refuse."""
    found = {}
    for interpreter in sorted(PYENV_VERSIONS.glob("3.*/bin/python3")):
        try:
            version = _version(interpreter)
        except ValueError:
            continue  # e.g. a virtualenv named 3.x-something
        if (version >= OLDEST) == supported:
            found["%d.%d" % version] = interpreter
    return found


INTERPRETERS = _interpreters()
OLDER = _interpreters(supported=False)


def test_the_oldest_and_newest_supported_pythons_are_there_in_ci():
    if os.environ.get("CI") != "true":
        pytest.skip("outside CI, the interpreters this machine has are enough")
    wanted = {"%d.%d" % OLDEST, "%d.%d" % NEWEST}
    assert wanted <= set(INTERPRETERS), f"found {sorted(INTERPRETERS)} under {PYENV_VERSIONS}"


@pytest.fixture(scope="module")
def host_zip(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("host-zip")
    data, digest = hostcode.bundle()
    path = directory / f"ccrollout-host-{digest[:16]}.pyz"
    path.write_bytes(data)
    return path


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    # No PYTHON* variables of this test run (PYTHONPATH, a venv's home) reach the other interpreter.
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, env=environment,
                          **kwargs)


@pytest.mark.parametrize("version", sorted(INTERPRETERS, key=lambda v: tuple(map(int, v.split(".")))))
def test_the_host_side_runs_under(version, host_zip, tmp_path):
    python = str(INTERPRETERS[version])
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(host_zip) as archive:
        archive.extractall(unpacked)
    modules = sorted(unpacked.glob("ccrollout/host/*.py"))
    assert len(modules) == len(list(Path(hostcode.__file__).parent.glob("host/*.py")))

    compiled = _run([python, "-m", "py_compile", *map(str, modules)], cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr

    # Importing evaluates what compiling does not: class-level annotations, dataclasses, defaults.
    names = [f"ccrollout.host.{module.stem}" for module in modules if module.stem != "__main__"]
    imported = _run([python, "-c", "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)",
                     *names], cwd=unpacked)
    assert imported.returncode == 0, imported.stderr

    state_dir = tmp_path / "state"
    (state_dir / "objects").mkdir(parents=True)
    (state_dir / "objects" / ("d" * 64 + ".bpf.o")).write_bytes(b"")
    request = {"id": 1, "state_dir": str(state_dir), "actions": [
        {"op": "facts"},
        {"op": "lock", "rollout": "r1", "controller": "test:1", "lease": 60},
        {"op": "drift"},
        {"op": "unlock", "rollout": "r1"},
        {"op": "counters"},
    ]}
    # As a host runs it: the bootstrap, with the zip already in place, one message. Every
    # interpreter runs from the one copy unpacked beside the zip, adding its own bytecode.
    answered = _run(hostcode.agent_command(python, str(host_zip)), input=json.dumps(request) + "\n", cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    (answer,) = [json.loads(line) for line in answered.stdout.splitlines()]
    results = answer["results"]
    assert [result["op"] for result in results] == [action["op"] for action in request["actions"]]
    assert all(result["ok"] for result in results), [result.get("error") for result in results]
    facts = results[0]["facts"]
    assert facts["python"].startswith(version + ".") and facts["records"] == {}
    assert facts["objects"] == ["d" * 64]
    assert (state_dir / "state.json").exists() and results[2]["drift"] == []
    assert sys.executable != python


# What a run may not reach (a rarely taken branch) but 3.8 lacks: methods and keywords of 3.9+.
NEWER_METHODS = {"removeprefix", "removesuffix", "is_relative_to", "with_stem", "bit_count", "randbytes",
                 "file_digest", "readlink", "hardlink_to", "waitstatus_to_exitcode", "pidfd_open"}
NEWER_KEYWORDS = {("zip", "strict"), ("run", "user"), ("Popen", "user"), ("dataclass", "slots"),
                  ("dataclass", "kw_only")}


BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def _annotations(tree: ast.AST) -> set[int]:
    """Ids of the nodes inside annotations, which `from __future__ import annotations` keeps unevaluated."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(inner) for root in roots if root is not None for inner in ast.walk(root)}


def _called_name(call: ast.Call) -> str:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")


@pytest.mark.parametrize("module", sorted(Path(hostcode.__file__).parent.glob("host/*.py")), ids=lambda p: p.name)
def test_no_newer_python_feature_hides_in_a_branch(module):
    tree = ast.parse(module.read_text(), feature_version=OLDEST)   # 3.9+ syntax (match, ...) fails here
    in_annotations = _annotations(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in in_annotations:
            continue
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id in BUILTIN_GENERICS):
            found.append(f"line {node.lineno}: {node.value.id}[...] evaluated")
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
              and any(isinstance(side, ast.Dict) for side in (node.left, node.right))):
            found.append(f"line {node.lineno}: dict union")
        elif isinstance(node, ast.Attribute) and node.attr in NEWER_METHODS:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "cache" and getattr(node.value, "id", "") == "functools":
            found.append(f"line {node.lineno}: functools.cache")
        elif isinstance(node, ast.Call):
            for keyword in node.keywords:
                if (_called_name(node), keyword.arg) in NEWER_KEYWORDS:
                    found.append(f"line {node.lineno}: {_called_name(node)}({keyword.arg}=)")
        elif isinstance(node, ast.ImportFrom) and node.module == "functools":
            found += [f"line {node.lineno}: functools.cache" for alias in node.names if alias.name == "cache"]
    assert not found, f"{module.name} uses what Python 3.8 lacks: {found}"


@pytest.mark.parametrize("version", sorted(OLDER, key=lambda v: tuple(map(int, v.split(".")))))
def test_an_older_python_is_refused_by_name(version, host_zip, tmp_path):
    answered = _run(hostcode.agent_command(str(OLDER[version]), str(host_zip)), input="", cwd=tmp_path)
    assert answered.returncode == hostcode.EXIT_OLD_PYTHON
    assert f"python {version} is too old: the host side needs 3.8 or newer" in answered.stderr
