"""Durations, percentages, sizes and rates: parsed here once, the same way everywhere.

Every parser accepts a string or a number and raises ValueError with a message
that says what was expected; callers add where the value came from.

- durations: ``"30s"``, ``"500ms"``, ``"2m"``, ``"1h"``, compounds ``"1m30s"``,
  plain numbers (or numeric strings) are seconds -> float seconds
- percentages: ``"10%"``, ``"2.5%"`` -> fraction (0.1, 0.025)
- sizes: ``"64k"``, ``"1M"``, ``"512"`` -> bytes; k/M/G/T are powers of 1024,
  as in iproute2 and the kernel's sysctls
- rates: ``"10mbit"``, ``"1gbit"``, ``"100kbps"`` -> bits per second, tc's units
"""

from __future__ import annotations

import math
import re

__all__ = [
    "DURATION_PATTERN",
    "PERCENT_PATTERN",
    "parse_duration",
    "parse_percent",
    "parse_size",
    "parse_rate",
    "format_duration",
    "format_percent",
]

# The plan schema uses these same patterns (tests/test_plan.py checks they agree). Digits
# are bounded so that no written number is beyond a float (a 400-digit one is infinity).
DURATION_PATTERN = r"^(?:[0-9]{1,12}(?:\.[0-9]{1,12})?(?:ms|s|m|h))+$|^[0-9]{1,12}(?:\.[0-9]{1,12})?$"
PERCENT_PATTERN = r"^[0-9]{1,12}(?:\.[0-9]{1,12})?%$"

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,12})?)(ms|s|m|h)")
_PERCENT_RE = re.compile(PERCENT_PATTERN)

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1024**4, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$")

# tc(8): "bit" units are decimal bits per second, "bps" units are bytes per second.
_RATE_UNITS = {
    "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "kibit": 1024, "mibit": 1024**2, "gibit": 1024**3, "tibit": 1024**4,
    "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
    "kibps": 8 * 1024, "mibps": 8 * 1024**2, "gibps": 8 * 1024**3, "tibps": 8 * 1024**4,
}
_RATE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)?$")


def _real_number(value: object, what: str) -> float | None:
    """The value as a finite float if it is a number (not a bool), else None."""
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got a boolean ({value})")
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"expected {what}, got {_shown(value)}")
        return number
    return None


def _shown(value: object) -> str:
    """A value for a message, cut short: a number can have thousands of digits."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration: ``"30s"``, ``"500ms"``, ``"2m"``, ``"1h"``, ``"1m30s"``, ``10``."""
    what = "a duration such as '30s', '500ms', '2m', '1h' or a number of seconds"
    number = _real_number(value, what)
    if number is not None:
        if number < 0:
            raise ValueError(f"a duration cannot be negative, got {_shown(value)}")
        return number
    if not isinstance(value, str):
        raise ValueError(f"expected {what}, got {type(value).__name__} {_shown(value)}")
    text = value.strip()
    if not _DURATION_RE.match(text):
        raise ValueError(f"expected {what}, got {_shown(value)}")
    if text[-1].isdigit():
        return float(text)
    seconds = math.fsum(float(amount) * _DURATION_UNITS[unit] for amount, unit in _DURATION_PART_RE.findall(text))
    if not math.isfinite(seconds):  # a string of a million parts
        raise ValueError(f"expected {what}, got a duration too long to count ({_shown(value)})")
    return seconds


def parse_percent(value: str | int | float, *, allow_number: bool = False, maximum: float | None = 100.0) -> float:
    """The fraction in a percentage: ``"10%"`` -> 0.1, ``"2.5%"`` -> 0.025.

    With ``allow_number``, a bare number is also read as percent (Ansible's
    ``max_fail_percentage: 20``). ``maximum`` is in percent; None for no limit.
    """
    what = "a percentage such as '10%' or '2.5%'" + (" or a number of percent" if allow_number else "")
    number = _real_number(value, what)
    if number is not None:
        if not allow_number:
            raise ValueError(f"expected {what}, got the number {value!r} (write it as '{value}%')")
        percent = number
    elif isinstance(value, str) and _PERCENT_RE.match(value.strip()):
        percent = float(value.strip()[:-1])
    else:
        raise ValueError(f"expected {what}, got {_shown(value)}")
    if percent < 0:
        raise ValueError(f"a percentage cannot be negative, got {_shown(value)}")
    if maximum is not None and percent > maximum:
        raise ValueError(f"a percentage here can be at most {maximum:g}%, got {_shown(value)}")
    return percent / 100.0


def parse_size(value: str | int | float) -> int:
    """Bytes in a size: ``"64k"`` -> 65536, ``"1M"`` -> 1048576, ``4096`` -> 4096."""
    what = "a size such as '64k', '1M', '2G' or a number of bytes"
    number = _real_number(value, what)
    if number is None:
        if not isinstance(value, str):
            raise ValueError(f"expected {what}, got {type(value).__name__} {_shown(value)}")
        match = _SIZE_RE.match(value.strip().lower())
        if not match or match.group(2) not in _SIZE_UNITS:
            raise ValueError(f"expected {what}, got {_shown(value)}")
        number = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if not math.isfinite(number):
        raise ValueError(f"expected {what}, got {_shown(value)}")
    if number < 0:
        raise ValueError(f"a size cannot be negative, got {_shown(value)}")
    if number != int(number):
        raise ValueError(f"a size must be a whole number of bytes, got {_shown(value)}")
    return int(number)


def parse_rate(value: str | int | float) -> float:
    """Bits per second in a rate, with tc's units: ``"10mbit"``, ``"1gbit"``, ``"100kbps"`` (bytes)."""
    what = "a rate such as '10mbit', '1gbit', '500kbit', '100kbps' or a number of bits per second"
    number = _real_number(value, what)
    if number is None:
        if not isinstance(value, str):
            raise ValueError(f"expected {what}, got {type(value).__name__} {_shown(value)}")
        match = _RATE_RE.match(value.strip().lower())
        if not match or (match.group(2) is not None and match.group(2) not in _RATE_UNITS):
            raise ValueError(f"expected {what}, got {_shown(value)}")
        number = float(match.group(1)) * _RATE_UNITS[match.group(2) or "bit"]
    if not math.isfinite(number):
        raise ValueError(f"expected {what}, got {_shown(value)}")
    if number < 0:
        raise ValueError(f"a rate cannot be negative, got {_shown(value)}")
    return number


def rate_for_tc(value: str | int | float) -> str:
    """A rate as tc takes it, checked as parse_rate checks it: "50MBit" -> "50mbit",
    20000000 -> "20000000bit"."""
    parse_rate(value)
    if isinstance(value, str):
        match = _RATE_RE.match(value.strip().lower())
        return f"{match.group(1)}{match.group(2) or 'bit'}"
    return f"{value}bit"


def format_duration(seconds: float) -> str:
    """A short human form of a duration: 0.5 -> '500ms', 90 -> '1m30s', 8 -> '8s'."""
    if seconds < 1 and seconds != 0:
        return f"{_plain_number(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{_plain_number(seconds)}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)


def _plain_number(number: float) -> str:
    """A number without an exponent, to 6 decimals at most: 2.5 -> '2.5', 8.0 -> '8'."""
    return f"{number:.6f}".rstrip("0").rstrip(".")


def format_percent(fraction: float) -> str:
    """A fraction as a percentage: 0.025 -> '2.5%'."""
    return f"{_plain_number(fraction * 100)}%"
