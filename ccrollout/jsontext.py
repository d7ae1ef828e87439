"""Values read from YAML or INI, written as strict JSON.

YAML gives dates, timestamps, !!binary bytes, !!set sets, keys of any scalar type and
.inf; an INI value goes through ast.literal_eval and may be 1e999. json.dump would stop
half-way through (a date, mixed keys under sort_keys) or print `Infinity`, which no JSON
reader takes. Converted as ansible-inventory converts what it can (dates and timestamps as
ISO 8601, sets as lists, keys as strings), and the rest so that it is still JSON:
non-finite numbers as the strings "Infinity", "-Infinity" and "NaN", bytes as base64 text.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
from typing import Any


def _number_text(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _key(key: Any) -> str:
    """A mapping key as JSON would write it (True -> "true", 1.5 -> "1.5"), or its text."""
    if isinstance(key, str):
        return key
    if isinstance(key, float) and not math.isfinite(key):
        return _number_text(key)
    if isinstance(key, (bool, int, float)) or key is None:
        return json.dumps(key)
    return _scalar(key) if isinstance(key, (datetime.date, datetime.time, bytes)) else str(key)


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return _number_text(value)
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def plain(value: Any, _done: dict[int, Any] | None = None) -> Any:
    """VALUE with only what strict JSON holds. Shared values (YAML aliases, one group's vars
    under many hosts) are converted once. Nesting is bounded by the readers (the YAML loader
    refuses what is nested too deeply, Python's parser what literal_eval would recurse into)."""
    done = {} if _done is None else _done
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if id(value) in done:
            return done[id(value)]
        if isinstance(value, dict):
            converted: Any = {_key(key): plain(item, done) for key, item in value.items()}
        elif isinstance(value, (set, frozenset)):
            converted = sorted((plain(item, done) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
        else:
            converted = [plain(item, done) for item in value]
        done[id(value)] = converted
        return converted
    return _scalar(value)


def dumps(value: Any, indent: int | None = 4) -> str:
    """VALUE as strict JSON text (sorted keys), whole: callers print it only once it is made."""
    return json.dumps(plain(value), indent=indent, sort_keys=True, allow_nan=False)
