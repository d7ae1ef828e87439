"""What a control's source may include, checked before the compiler reads any of it.

A plan names one source file, but the compiler reads whatever that file includes, and
its errors quote what it read: `#include "/etc/shadow"` would show a stranger's plan the
controller's secrets. So before clang runs, every #include of the source, and of each
header it reaches inside the plan's tree, is resolved over the same directories clang
searches (the build passes them all explicitly, with -nostdinc), and a file outside the
allowed roots is refused by name. The roots: the tree the plan may use, the plan's -I
directories, and the system include directories (where libbpf's headers live).

The scan reads every directive, also those in `#if 0`: a superset of what clang reads.
System headers are trusted and not scanned. What clang prints is passed through
`shown_diagnostics`, which keeps only diagnostics about files inside the roots.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import BuildFailed

# A directive line (after line splices are joined): `#include`, `%:include`, `#import`,
# `#include_next`, and `#embed` (C23, clang 19), which reads a file as data. Comments may
# stand anywhere before the name, as clang makes them spaces; reading every line so (also
# inside comments and `#if 0`) finds a superset of the directives clang obeys.
_GAP = r"[ \t\f\v]*(?:/\*.*?\*/[ \t\f\v]*)*"
_DIRECTIVE = re.compile(rf"^{_GAP}(?:#|%:){_GAP}(include_next|include|import|embed)\b([^\n]*)", re.M | re.S)
_LEADING_COMMENTS = re.compile(r"^(?:\s*/\*.*?\*/)*\s*")
# The assembler's .incbin copies a file into the object; a control never needs it.
_INCBIN = re.compile(r"\.?incbin\b", re.I)
_SEARCH_LIST = re.compile(r"#include <\.\.\.> search starts here:\n(.*?)\nEnd of search list", re.S)
MAX_SHOWN_LINES = 60


@lru_cache(maxsize=4)
def system_include_dirs(clang: str) -> tuple[str, ...]:
    """The host compiler's `#include <...>` directories, as libbpf-bootstrap finds them
    (`clang -v -E -`), plus the multiarch directory that holds asm/: `-target bpf` alone
    searches neither, so <linux/bpf.h> fails on 'asm/types.h'."""
    try:
        result = subprocess.run([clang, "-v", "-E", "-x", "c", "-", "-o", os.devnull], input="",
                                capture_output=True, text=True)
    except OSError as exc:
        raise BuildFailed(f"cannot run the BPF compiler {clang!r}: {exc}") from None
    found = _SEARCH_LIST.search(result.stderr)
    listed = [line.strip().split(" (")[0] for line in found.group(1).splitlines()] if found else []
    multiarch = f"/usr/include/{platform.machine()}-linux-gnu"
    if multiarch not in listed:
        listed.insert(len(listed) - 1 if listed and listed[-1] == "/usr/include" else len(listed), multiarch)
    return tuple(os.path.realpath(d) for d in dict.fromkeys(listed) if os.path.isdir(d))


def search_flags(clang: str) -> tuple[str, ...]:
    """Compiler flags that make clang search exactly the system directories the scan knows."""
    flags = ["-nostdinc"]
    for directory in system_include_dirs(clang):
        flags += ["-idirafter", directory]
    return tuple(flags)


@dataclass(frozen=True)
class Roots:
    """Where a source's includes may come from, and the order clang searches them."""

    tree: Path                      # the plan's tree (or the source's own directory)
    include_dirs: tuple[Path, ...]  # the plan's -I directories, in order
    system: tuple[Path, ...]        # the system include directories, in order

    @classmethod
    def of(cls, clang: str, tree: Path, cflags: tuple[str, ...]) -> "Roots":
        include_dirs = tuple(Path(os.path.realpath(flag[2:])) for flag in cflags if flag.startswith("-I"))
        return cls(Path(os.path.realpath(tree)), include_dirs,
                   tuple(Path(d) for d in system_include_dirs(clang)))

    def allows(self, path: Path) -> bool:
        return any(path == root or root in path.parents for root in (self.tree, *self.include_dirs, *self.system))

    def is_system(self, path: Path) -> bool:
        return any(root in path.parents for root in self.system)

    def describe(self) -> str:
        given = ", ".join(str(d) for d in (self.tree, *self.include_dirs))
        return f"{given} and the system include directories ({', '.join(map(str, self.system))})"


def _directives(text: str):
    """(line number, directive, what follows it) of every include-like directive; line
    splices joined first, as clang's phase 2 does."""
    joined = text.replace("\\\r\n", "").replace("\\\n", "")
    for match in _DIRECTIVE.finditer(joined):
        line = joined.count("\n", 0, match.start()) + 1
        yield line, match.group(1), _LEADING_COMMENTS.sub("", match.group(2)).strip()


def _candidates(name: str, quoted: bool, includer: Path, roots: Roots) -> list[Path]:
    if os.path.isabs(name):
        return [Path(name)]
    directories = ([includer.parent] if quoted else []) + list(roots.include_dirs) + list(roots.system)
    return [directory / name for directory in directories]


def check_includes(source: Path, roots: Roots) -> list[Path]:
    """Refuse (BuildFailed) an include that reaches outside ROOTS, before any compiler
    reads it; the user files the source reaches otherwise (the source first)."""
    seen, pending = [], [Path(os.path.realpath(source))]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.append(current)
        try:
            text = current.read_text(errors="replace")
        except OSError as exc:
            raise BuildFailed(f"{current}: cannot read it: {exc.strerror}") from None
        if _INCBIN.search(text):
            raise BuildFailed(f"{current}: uses the assembler's .incbin, which copies a file into the "
                              "object; nothing was compiled")
        for line, directive, spec in _directives(text):
            where = f"{current}:{line}"
            closing = {"<": ">", '"': '"'}.get(spec[:1])
            end = spec.find(closing, 1) if closing else -1
            if end <= 1:
                raise BuildFailed(f"{where}: #{directive} {spec[:60]} names no file in quotes or angle brackets "
                                  "(a macro cannot be checked before compiling); nothing was compiled")
            name = spec[1:end]
            existing = [Path(os.path.realpath(path)) for path in _candidates(name, spec[0] == '"', current, roots)
                        if os.path.isfile(path)]
            outside = [path for path in existing if not roots.allows(path)]
            if outside:
                raise BuildFailed(f"{where}: #{directive} {spec[0]}{name}{closing} reaches {outside[0]}, outside the "
                                  f"directories a control may include from: {roots.describe()}; nothing was compiled")
            if existing and not roots.is_system(existing[0]):
                pending.append(existing[0])  # the one clang takes: the first in search order
    return seen


_DIAGNOSTIC = re.compile(r"^(?P<file>[^:\n]+):\d+:\d+: (?:fatal error|error|warning|note|remark): ")
_INCLUDED_FROM = re.compile(r"^(?:In file included from|\s+from) (?P<file>[^:\n]+):\d+[:,]")
_SUMMARY = re.compile(r"^(?:\d+ (?:errors?|warnings?)(?: and \d+ (?:errors?|warnings?))? generated\.|clang: (?:error|warning): )")


def shown_diagnostics(output: str, roots: Roots) -> str:
    """What of clang's OUTPUT may be shown: diagnostics (with their source excerpt) about
    files inside ROOTS and the summary lines; nothing that quotes any other file."""
    shown, showing = [], False
    for line in output.splitlines():
        match = _DIAGNOSTIC.match(line) or _INCLUDED_FROM.match(line)
        if match:
            showing = roots.allows(Path(os.path.realpath(match.group("file"))))
        elif _SUMMARY.match(line):
            showing = True
        if showing:
            shown.append(line)
        if _SUMMARY.match(line):
            showing = False
    if len(shown) > MAX_SHOWN_LINES:
        shown = shown[:MAX_SHOWN_LINES] + [f"... ({len(shown) - MAX_SHOWN_LINES} more lines)"]
    return "\n".join(shown)
