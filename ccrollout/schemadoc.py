"""The plan reference in the README, written from the schema (its single source of truth).

`python -m ccrollout.schemadoc` prints it; a test keeps the README's copy in step.
"""

import json

from .plan import SCHEMA_PATH

_SECTIONS = (("plan", None), ("algorithms[]", "algorithm"), ("rollouts[]", "rollout"),
             ("rollouts[].health", "health"), ("rollouts[].scope", "scope"))


def _kind(spec: dict, definitions: dict) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return definitions[name].get("title", name)
    if "const" in spec:
        return f"always {spec['const']}"
    if "enum" in spec:
        return " | ".join(str(value) for value in spec["enum"])
    if spec.get("type") == "array":
        return f"list of {_kind(spec.get('items', {}), definitions)}"
    return spec.get("title") or spec.get("type", "")


def reference() -> str:
    schema = json.loads(SCHEMA_PATH.read_text())
    definitions = schema["$defs"]
    lines = []
    for title, definition in _SECTIONS:
        node = schema if definition is None else definitions[definition]
        required = set(node.get("required", ()))
        lines += [f"#### `{title}`", "", node.get("description", ""), "",
                  "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for key, spec in node["properties"].items():
            default = ("required" if key in required else f"`{spec['default']}`" if spec.get("default") is not None
                       else "")
            description = " ".join(spec.get("description", "").split()).replace("|", "\\|")
            kind = _kind(spec, definitions).replace("|", "\\|")
            lines.append(f"| `{key}` | {kind} | {default} | {description} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
