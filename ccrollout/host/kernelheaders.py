"""The kernel header tree that bcc insists on compiling against, found or merged.

bcc wants /lib/modules/$(uname -r)/build. A kernel that ships no headers (and no
CONFIG_IKHEADERS) still lets the tracer run with a tree merged from Debian's
linux-headers-VERSION-FLAVOUR and -common directories, because the tracer's program
reads only a tracepoint's own arguments, whose layout tracefs gives for the running
kernel: headers of another kernel version are enough. The merged tree is built once
per headers version and kept under a cache directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_HEADER_CACHE = Path("/var/cache/ccrollout/bcc-headers")
DEBIAN_HEADERS_ROOT = Path("/usr/src")
# Debian's name for this machine's architecture, the suffix of its linux-headers flavour directory.
_DEBIAN_FLAVOURS = {"x86_64": "amd64", "aarch64": "arm64"}


class HeadersError(Exception):
    """No header tree for bcc here; the message says why and what to install."""


def running_kernel_build_dir() -> Path:
    return Path("/lib/modules") / os.uname().release / "build"


def debian_header_dirs(root: Path = DEBIAN_HEADERS_ROOT) -> tuple[Path, Path] | None:
    """The newest installed pair of Debian's linux-headers-VERSION-FLAVOUR and -common, if any."""
    flavour = _DEBIAN_FLAVOURS.get(os.uname().machine)
    if flavour is None or not root.is_dir():
        return None
    pattern = re.compile(rf"^linux-headers-(.+)-{re.escape(flavour)}$")
    pairs = []
    for entry in root.iterdir():
        match = pattern.match(entry.name)
        common = root / f"linux-headers-{match.group(1)}-common" if match else None
        if match and entry.is_dir() and common.is_dir():
            pairs.append((_version_key(match.group(1)), entry, common))
    if not pairs:
        return None
    _, flavour_dir, common_dir = max(pairs)
    return flavour_dir, common_dir


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", version))


def _required_debian_header_dirs(root: Path) -> tuple[Path, Path]:
    found = debian_header_dirs(root)
    if found is None:
        raise HeadersError(f"no kernel headers for bcc: {running_kernel_build_dir()} is missing "
                          f"and no Debian linux-headers-*-{_DEBIAN_FLAVOURS.get(os.uname().machine, '?')} "
                          f"with its -common is installed under {root} (apt-get install linux-headers-amd64)")
    return found


def merged_header_tree(cache_dir: Path = DEFAULT_HEADER_CACHE, root: Path = DEBIAN_HEADERS_ROOT) -> Path:
    """A tree bcc accepts as BCC_KERNEL_SOURCE: Debian's -common and -FLAVOUR directories, symlinked
    into one (the flavour's files win). Built once per headers version and kept under cache_dir."""
    flavour_dir, common_dir = _required_debian_header_dirs(root)
    tree = Path(cache_dir) / flavour_dir.name
    if (tree / "include").is_dir():
        return tree
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    except OSError as exc:
        raise HeadersError(f"cannot create the header cache {cache_dir}: {exc.strerror}") from None
    try:
        for source in (common_dir, flavour_dir):
            result = subprocess.run(["cp", "-rs", "--remove-destination", f"{source.resolve()}/.", str(building)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                first_line = (result.stderr.strip().splitlines() or ["cp failed"])[0]
                raise HeadersError(f"cannot merge {source} into a header tree for bcc: {first_line}")
        building.chmod(0o755)
        try:
            building.rename(tree)   # atomic: a concurrent builder's tree wins and ours is dropped
        except OSError:
            if not (tree / "include").is_dir():
                raise HeadersError(f"cannot put the merged header tree at {tree}") from None
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return tree


def kernel_headers(cache_dir: Path = DEFAULT_HEADER_CACHE, root: Path = DEBIAN_HEADERS_ROOT,
                   build: bool = True) -> tuple[Path, str]:
    """Where bcc will find headers and how they were found. With build=False nothing is created:
    the path of a merged tree not built yet is returned all the same."""
    override = os.environ.get("BCC_KERNEL_SOURCE")
    if override:
        if not Path(override, "include").is_dir():
            raise HeadersError(f"BCC_KERNEL_SOURCE={override} has no include/ directory")
        return Path(override), "BCC_KERNEL_SOURCE"
    if (running_kernel_build_dir() / "include").is_dir():
        return running_kernel_build_dir(), "the running kernel's headers"
    if build:
        return merged_header_tree(cache_dir, root), "Debian linux-headers, merged"
    flavour_dir, _common_dir = _required_debian_header_dirs(root)
    return Path(cache_dir) / flavour_dir.name, "Debian linux-headers, merged"


@contextlib.contextmanager
def kernel_source_for_bcc(cache_dir: Path = DEFAULT_HEADER_CACHE, root: Path = DEBIAN_HEADERS_ROOT):
    """Names the headers to bcc (BCC_KERNEL_SOURCE) while it compiles, building the merged tree if
    needed; the environment is put back afterwards so nothing else in the process inherits it."""
    tree, _how = kernel_headers(cache_dir, root)
    previous = os.environ.get("BCC_KERNEL_SOURCE")
    if tree != running_kernel_build_dir():
        os.environ["BCC_KERNEL_SOURCE"] = str(tree)
    try:
        yield tree
    finally:
        if previous is None:
            os.environ.pop("BCC_KERNEL_SOURCE", None)
        else:
            os.environ["BCC_KERNEL_SOURCE"] = previous
