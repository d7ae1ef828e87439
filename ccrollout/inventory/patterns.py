"""Ansible's host patterns and host ranges.

Selection patterns (``a:b``, ``a:&b``, ``a:!b``, ``~regex``, globs, subscripts
``group[0:2]``) are split and ordered here and applied by ``Inventory.select``;
host entries in an inventory (``web[01:20].example.com:2222``) are expanded here.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import re
import signal
import string
import threading
import time
from typing import Iterable, Iterator, TypeVar

from ccrollout.diagnostics import short_repr
from ccrollout.errors import InvalidInput

_MAX_RANGE_HOSTS = 100_000
MATCH_SECONDS = 2.0  # for one term of a host pattern over the inventory's names

_BRACKETED_HOSTPORT_RE = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOSTPORT_RE = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
# A subscript on a pattern: group[0], group[-1], group[1:3], group[2:]. Indices have at most
# 9 digits (no inventory is longer); longer ones do not parse as a subscript.
_SUBSCRIPT_RE = re.compile(r"^(.+)\[(?:(-?[0-9]{1,9})|([0-9]{1,9})([:-])([0-9]{0,9}))\]$")
_PATTERN_TERM_RE = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")

# (start, None) is one index; (start, end) an inclusive slice, end -1 meaning 'to the last'.
Subscript = tuple[int, int | None]
Item = TypeVar("Item")


# -- selection patterns ------------------------------------------------------------------


def split_host_pattern(pattern: str) -> list[str]:
    """Split a pattern into terms: on commas if it has any, else on colons that are
    not inside ``[...]`` (an IPv6 address stays whole)."""
    if not isinstance(pattern, str):
        raise InvalidInput(f"a host pattern must be a string, got {pattern!r}")
    if "," in pattern:
        terms = pattern.split(",")
    else:
        try:
            ipaddress.IPv6Address(pattern.strip())
            terms = [pattern]
        except ValueError:
            terms = _PATTERN_TERM_RE.findall(pattern)
    return [t.strip() for t in terms if t.strip() and t.strip() not in ("&", "!")]


def order_terms(terms: list[str]) -> list[str]:
    """Unions first, then intersections, then exclusions; only ``&``/``!`` terms mean 'all' first."""
    regular = [t for t in terms if t[0] not in "&!"]
    intersections = [t for t in terms if t[0] == "&"]
    exclusions = [t for t in terms if t[0] == "!"]
    return (regular or ["all"]) + intersections + exclusions


def split_subscript(pattern: str) -> tuple[str, Subscript | None]:
    """``web[1:3]`` -> ``("web", (1, 3))``; a pattern without a subscript comes back whole."""
    if not pattern or pattern[0] == "~":
        return pattern, None
    match = _SUBSCRIPT_RE.match(pattern)
    if not match:
        return pattern, None
    expression, index, start, _separator, end = match.groups()
    if index:
        return expression, (int(index), None)
    return expression, (int(start), int(end) if end else -1)


def apply_subscript(items: list[Item], subscript: Subscript | None) -> list[Item]:
    # Ansible's [x:y] is inclusive, and [x:] runs to the end.
    if not items or not subscript:
        return items
    start, end = subscript
    if end:
        if end == -1:
            end = len(items) - 1
        return items[start:end + 1]
    try:
        return [items[start]]
    except IndexError:
        return []


def match_names(names: Iterable[str], expression: str) -> list[str]:
    """The names a glob, or a ``~regex``, matches. InvalidInput for an invalid regex, or one
    that takes longer than MATCH_SECONDS over these names."""
    try:
        if expression[0] == "~":
            matcher = re.compile(expression[1:])
        else:
            matcher = re.compile(fnmatch.translate(expression))
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidInput(f"invalid host pattern {short_repr(expression)}: {exc}") from None
    names = list(names)
    try:
        with time_limit(MATCH_SECONDS):
            return [name for name in names if matcher.match(name)]
    except MatchTimeout:
        raise InvalidInput(f"host pattern {short_repr(expression)} took more than {MATCH_SECONDS:g}s to match "
                           f"{len(names)} name{'s' if len(names) != 1 else ''}: a regular expression with nested repetition such as (a+)+ "
                           f"backtracks for ever on some names; simplify it") from None


class MatchTimeout(Exception):
    """A host pattern's regular expression ran out of time."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise MatchTimeout in the body after SECONDS. Python's regex engine looks for signals
    as it backtracks, so a timer is what bounds a regular expression: no length cap can
    (a name of 30 characters is enough for (a+)+$ to take minutes). A timer needs the main
    thread; elsewhere the body runs unbounded. An earlier timer is put back after."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise MatchTimeout()

    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, expire)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        # None: a handler set outside Python, which cannot be put back; the default then
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous_handler is None else previous_handler)
        if previous_delay:
            left = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


# -- host entries and ranges ---------------------------------------------------------------


def expand_host_range(pattern: str) -> list[str]:
    """``web[01:03].x`` -> ``web01.x web02.x web03.x``; ``db-[a:c]``; ``n[0:10:5]``; several ranges,
    the first varying slowest. A loop over the ranges, not recursion: a name may hold thousands.

    Raises ValueError for a malformed range, or one naming more than _MAX_RANGE_HOSTS hosts.
    """
    shown = short_repr(pattern)
    names, rest = [""], pattern
    while (start := rest.find("[")) >= 0:
        end = rest.find("]", start)
        if end < 0:
            raise ValueError(f"unclosed '[' in host range {shown}")
        items = _range_items(rest[start + 1:end], shown)
        if len(names) * len(items) > _MAX_RANGE_HOSTS:
            raise ValueError(f"host pattern {shown} names more than {_MAX_RANGE_HOSTS} hosts")
        head, rest = rest[:start], rest[end + 1:]
        names = [name + head + item for name in names for item in items]
    return [name + rest for name in names]


def _range_items(body: str, shown: str) -> list[str]:
    """The items of one range ``[01:20]``, ``[a:f]``, ``[0:10:2]`` of the pattern SHOWN."""
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"a host range is [begin:end] or [begin:end:step], got [{body[:40]}] in {shown}")
    first, last = bounds[0] or "0", bounds[1]
    if not last:
        raise ValueError(f"a host range needs an end, got [{body}] in {shown}")
    if max(len(bound) for bound in bounds) > 18:  # no inventory counts hosts in more digits
        raise ValueError(f"a host range's numbers have at most 18 digits, got [{body[:40]}...] in {shown}")
    step = 1
    if len(bounds) == 3:
        if not bounds[2].isdigit() or int(bounds[2]) < 1:
            raise ValueError(f"a host range step must be a positive number, got [{body}] in {shown}")
        step = int(bounds[2])
    if len(first) == 1 and len(last) == 1 and first in string.ascii_letters and last in string.ascii_letters:
        low, high = string.ascii_letters.index(first), string.ascii_letters.index(last)
        if low > high:
            raise ValueError(f"a host range must have begin <= end, got [{body}] in {shown}")
        return list(string.ascii_letters[low:high + 1:step])
    if first.isdigit() and last.isdigit() and first.isascii() and last.isascii():
        width = len(first) if first.startswith("0") and len(first) > 1 else 0
        if width and len(last) != width:
            raise ValueError(f"a zero-padded host range needs begin and end of the same width, "
                             f"got [{body}] in {shown}")
        low, high = int(first), int(last)
        if low > high:
            raise ValueError(f"a host range must have begin <= end, got [{body}] in {shown}")
        if (high - low) // step + 1 > _MAX_RANGE_HOSTS:
            raise ValueError(f"host range [{body}] in {shown} names more than {_MAX_RANGE_HOSTS} hosts")
        return [str(i).zfill(width) for i in range(low, high + 1, step)]
    raise ValueError(f"a host range is numeric like [01:20] or one letter to one letter "
                     f"like [a:f], got [{body[:40]}] in {shown}")


def parse_host_and_port(text: str) -> tuple[list[str], int | None]:
    """A host entry with an optional ``:port`` -> (host names, port). ValueError if bad."""
    text = text.strip()
    port: int | None = None
    match = _BRACKETED_HOSTPORT_RE.match(text) or _HOSTPORT_RE.match(text)
    if match:
        text, port = match.group(1), int(match.group(2))
    elif text.endswith(":"):
        raise ValueError(f"invalid host {text!r}: a trailing ':' must be followed by a port number")
    if text.startswith("[") and text.endswith("]"):
        try:  # [IPv6] without a port
            ipaddress.IPv6Address(text[1:-1])
            text = text[1:-1]
        except ValueError:
            pass
    if not text:
        raise ValueError("empty host name")
    if text == "---":
        raise ValueError("'---' is not a host name; is this a YAML file without a .yml or .yaml extension?")
    try:
        ipaddress.IPv6Address(text)
        return [text], port
    except ValueError:
        pass
    return expand_host_range(text), port
