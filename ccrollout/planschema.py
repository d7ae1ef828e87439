"""The plan's JSON Schema: loading it, validating against it, its defaults, and turning
its errors into messages a person can act on. The schema is the one source of the plan's
shape; plan.py adds the checks that need more than the shape.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

import jsonschema

from ccrollout.diagnostics import describe_value, did_you_mean, short_repr

SCHEMA_PATH = Path(__file__).with_name("schema") / "plan.schema.json"


@functools.cache
def plan_schema() -> dict[str, Any]:
    """The plan's JSON Schema (draft 2020-12)."""
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return json.load(handle)


@functools.cache
def _ecma_regex(pattern: str) -> re.Pattern:
    # JSON Schema patterns are ECMA-262, where '$' is the very end of the string;
    # Python's '$' also matches before a final newline, which would let "ccr\n" pass.
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterable[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _finite_number(checker: Any, instance: Any) -> bool:
    # YAML has .nan and .inf, and NaN passes every minimum and maximum; a plan's numbers are finite.
    number = jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "number")
    return number and not (isinstance(instance, float) and not math.isfinite(instance))


_PlanValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number))


@functools.cache
def validator() -> jsonschema.protocols.Validator:
    return _PlanValidator(plan_schema())


def schema_default(definition: str, prop: str) -> Any:
    return plan_schema()["$defs"][definition]["properties"][prop].get("default")


_TYPE_PHRASES = {
    "object": "a mapping", "array": "a list", "string": "a string", "integer": "a whole number",
    "number": "a number", "boolean": "true or false", "null": "nothing",
}


def _type_phrase(types: str | list[str]) -> str:
    if isinstance(types, str):
        types = [types]
    return " or ".join(_TYPE_PHRASES.get(t, t) for t in types)


def schema_problems(error: jsonschema.ValidationError) -> Iterable[tuple[tuple, bool, str, tuple]]:
    """(document path, point at the key?, message, path the error is about) for one schema error."""
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    keyword = error.validator
    expected = schema.get("title")
    if not path and keyword == "type":
        yield path, False, ("the plan must be a mapping with 'algorithms' and 'rollouts'"
                            + (", but the file is empty" if instance is None
                               else f", got {describe_value(instance)}")), path
        return
    if keyword == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        for key in instance:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f"; allowed keys: {', '.join(allowed)}"
                yield path + (key,), True, f"unknown key {key!r}{hint}", path + (key,)
        return
    if keyword == "required":
        for key in error.validator_value:
            if key not in instance:
                about = schema.get("properties", {}).get(key, {}).get("description", "")
                about = re.split(r"\. |: |; ", about)[0].rstrip(".")
                about = f" ({about})" if about else ""
                yield path, False, f"missing required key {key!r}{about}", path + (key,)
        return
    got = describe_value(instance)
    if keyword == "type":
        message = f"expected {expected or _type_phrase(error.validator_value)}, got {got}"
    elif keyword == "enum":
        options = ", ".join(repr(v) for v in error.validator_value)
        message = (f"expected one of {options}, got {got}"
                   + did_you_mean(instance, [str(v) for v in error.validator_value]))
    elif keyword == "not" and isinstance(error.validator_value, dict) and "enum" in error.validator_value:
        message = (f"{instance!r} is the name of a congestion control of Linux's own; "
                   f"give this one a name of its own (e.g. ccr_{instance})")
    elif keyword == "const":
        message = f"expected {error.validator_value!r}, got {got}"
    elif keyword == "maxLength":
        message = f"{short_repr(instance)} is {len(instance)} characters, at most {error.validator_value} are allowed" + (
            f"; expected {expected}" if expected else "")
    elif keyword in ("minItems", "maxItems"):
        message = (f"expected {'at least' if keyword == 'minItems' else 'at most'} {error.validator_value} item"
                   f"{'s' if error.validator_value != 1 else ''}, got {len(instance)}")
    elif expected:
        message = f"expected {expected}, got {got}"
    else:
        message = error.message
    yield path, False, message, path


def health_defaults() -> dict[str, Any]:
    properties = plan_schema()["$defs"]["health"]["properties"]
    return {key: spec["default"] for key, spec in properties.items() if "default" in spec}
