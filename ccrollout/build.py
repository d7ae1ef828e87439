"""Compile congestion controls centrally, cached by the digest of all their inputs.

The cache key covers the source, every header it includes (clang -MM), the
flags and the compiler's version, so an unchanged control is never rebuilt
and a changed header always is. What leaves the controller is named by the
sha256 of the object itself: that is what a host checks before loading.

Before clang reads anything, includes.py checks that the source includes only
files of the plan's tree, its -I directories and the system's (where libbpf's
headers are); clang then searches exactly those, and only its diagnostics about
those files are shown.
"""

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import bpfobject, includes
from .errors import BuildFailed
from .localfiles import make_private_directory

CLANG = os.environ.get("CCROLLOUT_CLANG", "clang")
_ARCH_DEFINES = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc"}
BASE_FLAGS = ("-g", "-O2", "-target", "bpf", "-Wall", "-Werror",
              f"-D__TARGET_ARCH_{_ARCH_DEFINES.get(platform.machine(), 'x86')}")


@dataclass(frozen=True)
class BuiltObject:
    name: str          # the kernel name it registers
    source: Path
    path: Path         # the object in the cache
    digest: str        # sha256 of the object's bytes
    flags: int         # tcp_congestion_ops.flags
    callbacks: tuple[str, ...]
    cached: bool       # True when no compiler ran
    map_name: str | None = None  # its struct_ops map (the C variable): the one a host attaches


def cache_dir() -> Path:
    base = os.environ.get("CCROLLOUT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ccrollout")
    return Path(base) / "objects"


def _compiler_version() -> str:
    try:
        return subprocess.run([CLANG, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildFailed(f"cannot run the BPF compiler {CLANG!r}: {exc}") from None


def _compile_flags(cflags: tuple[str, ...]) -> tuple[str, ...]:
    return (*BASE_FLAGS, *includes.search_flags(CLANG), *cflags)


def _dependencies(source: Path, cflags: tuple[str, ...], roots: includes.Roots) -> list[Path]:
    """The source and every file it includes, as clang's preprocessor sees them."""
    result = subprocess.run([CLANG, *_compile_flags(cflags), "-MM", "-MF", "-", str(source)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildFailed(f"{source}: {includes.shown_diagnostics(result.stderr, roots)}")
    text = result.stdout.replace("\\\n", " ")
    paths = text.split(":", 1)[1].split() if ":" in text else [str(source)]
    return sorted({Path(path).resolve() for path in paths})


def input_digest(source: Path, cflags: tuple[str, ...], roots: includes.Roots) -> str:
    digest = hashlib.sha256()
    digest.update(_compiler_version().encode())
    digest.update("\0".join(_compile_flags(cflags)).encode())
    for dependency in _dependencies(source, cflags, roots):
        digest.update(str(dependency.name).encode() + b"\0")
        digest.update(dependency.read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(name: str, source: Path, cflags: tuple[str, ...] = (), root: Path | None = None) -> BuiltObject:
    """Compile SOURCE (or take it from the cache) and check it is the control NAME. ROOT is
    the tree the source may include from (a plan's: the directory above the plan's own);
    by default the directory above the source's, as for a plan beside it."""
    source = Path(source).resolve()
    if not source.is_file():
        raise BuildFailed(f"{source}: no such source file")
    roots = includes.Roots.of(CLANG, Path(root) if root else source.parent.parent, cflags)
    if not roots.allows(source):
        raise BuildFailed(f"{source}: outside {roots.tree}, the tree this plan may use")
    includes.check_includes(source, roots)  # before any compiler reads a line
    key = input_digest(source, cflags, roots)
    target = cache_dir() / f"{key}.bpf.o"
    cached = target.exists()
    if not cached:
        try:
            make_private_directory(target.parent)  # the objects that go to hosts: nobody else may plant one
        except OSError as exc:
            raise BuildFailed(f"cannot make the build cache {target.parent}: {exc.strerror or exc}") from None
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as scratch:
            scratch_path = Path(scratch.name)
        try:
            result = subprocess.run([CLANG, *_compile_flags(cflags), "-c", str(source), "-o", str(scratch_path)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise BuildFailed(f"{source}: compilation failed:\n"
                                  f"{includes.shown_diagnostics(result.stderr, roots)}")
            _check(scratch_path, name, source)
            shutil.move(scratch_path, target)  # only a checked object enters the cache
        finally:
            scratch_path.unlink(missing_ok=True)
    ops = _check(target, name, source)
    return BuiltObject(name=name, source=source, path=target, digest=file_digest(target),
                       flags=ops.flags, callbacks=tuple(sorted(ops.callbacks)), cached=cached,
                       map_name=ops.variable)


def _check(path: Path, name: str, source: Path) -> bpfobject.StructOps:
    try:
        return bpfobject.check_congestion_control(str(path), name)
    except bpfobject.ObjectError as exc:
        raise BuildFailed(f"{source}: {exc}") from None
