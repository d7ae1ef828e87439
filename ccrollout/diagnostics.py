"""Where an input error is, and what the user probably meant.

Shared by the plan and inventory readers: a safe YAML loader that remembers the
line and column of every node, a collector that gathers every error of a file
before raising one InvalidInput, and near-miss suggestions.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from ccrollout.errors import InvalidInput

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_MESSAGE = 600  # characters of one diagnostic
MAX_SHOWN = 100    # diagnostics listed in one error

# A position in a document: keys (str, or whatever YAML made of a key) and list indices.
DocPath = tuple[Any, ...]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One error: 1-based line and column (0 when unknown), and the message."""

    line: int
    column: int
    file: str = field(compare=False)
    message: str = field(compare=False)

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}: {self.message}"
        if self.line:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}: {self.message}"


class Diagnostics:
    """Collects the errors of one or more files; raises them together."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(self, file: str, line: int, column: int, message: str) -> None:
        if len(message) > MAX_MESSAGE:  # it names what is wrong; it need not repeat a 16 MiB line
            message = f"{message[:MAX_MESSAGE - 150]} ...({len(message)} characters)... {message[-100:]}"
        self.items.append(Diagnostic(line, column, str(file)[:1000], message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(self) -> None:
        """Raise one InvalidInput listing every error, one a line, by file order then line."""
        if not self.items:
            return
        files: dict[str, int] = {}
        for item in self.items:
            files.setdefault(item.file, len(files))
        ordered = sorted(self.items, key=lambda d: (files[d.file], d.line, d.column))
        unique = list(dict.fromkeys(str(d) for d in ordered))
        if len(unique) > MAX_SHOWN:  # the first ones say what is wrong; thousands more say no more
            unique = unique[:MAX_SHOWN] + [f"... and {len(unique) - MAX_SHOWN} more problems"]
        error = InvalidInput("\n".join(unique))
        error.diagnostics = ordered  # type: ignore[attr-defined]
        raise error


def suggest(word: object, candidates: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The candidates closest to ``word`` (difflib), best first; case is ignored."""
    if not isinstance(word, str) or not word:
        return []
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=cutoff)
    return [by_lower[c] for c in close]


def did_you_mean(word: object, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the nearest candidate, or ``""`` when none is near."""
    close = suggest(word, candidates)
    return f"; did you mean {close[0]!r}?" if close else ""


def format_doc_path(path: Iterable[Any]) -> str:
    """``('rollouts', 0, 'stages', 2)`` -> ``rollouts[0].stages[2]``; ``()`` -> ``(top level)``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            text += ("." if text else "") + part
        else:  # keys with odd characters, or not strings at all, are shown quoted
            text += f"[{part!r}]"
    return text or "(top level)"


def short_repr(value: Any, limit: int = 60) -> str:
    """repr(value), cut in the middle when longer than LIMIT: a message names a value, it
    does not repeat a 4 MiB string or a number of thousands of digits."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(text)} characters)"


def describe_value(value: Any) -> str:
    """A short description of a YAML value for 'got ...' in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {short_repr(value)}"
    if isinstance(value, str):
        return f"the string {short_repr(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({short_repr(value)})"


@dataclass
class MarkedDocument:
    """A YAML document, plus the 1-based (line, column) of each value and each mapping key."""

    data: Any
    value_marks: dict[DocPath, tuple[int, int]]
    key_marks: dict[DocPath, tuple[int, int]]
    # Keys that appear twice in one mapping: path of the later one (with the key as
    # written) -> (line of the first, line of the later, column of the later).
    duplicate_keys: dict[DocPath, tuple[int, int, int]]

    def mark(self, path: Iterable[Any], *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` is; falls back to the nearest enclosing node that has a mark."""
        path = tuple(path)
        if key and path in self.key_marks:
            return self.key_marks[path]
        while path:
            if path in self.value_marks:
                return self.value_marks[path]
            path = path[:-1]
        return self.value_marks.get((), (1, 1))


class YAMLSyntaxError(Exception):
    """A YAML document could not be read; carries the 1-based position."""

    def __init__(self, line: int, column: int, message: str):
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


_MERGE_TAG = "tag:yaml.org,2002:merge"
# Nodes that aliases may add to a document once expanded. A few anchors shared by many
# entries stay far below; ten levels of ten aliases (a "billion laughs") would add 10**10
# nodes, and everything after the loader (schema checks, messages, --list) expands them.
MAX_ALIAS_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader whose constructor errors (bad timestamps, ...) carry the node's position."""

    def construct_object(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark) from exc


def _position(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def load_marked_yaml(text: str) -> MarkedDocument:
    """Safely load one YAML document and record where each node starts.

    Raises YAMLSyntaxError with the position for anything PyYAML cannot read.
    """
    loader = None
    try:
        try:
            loader = _Loader(text)
            node = loader.get_single_node()
            if node is not None:
                _refuse_alias_bombs(node)
            duplicates: dict[DocPath, tuple[int, int, int]] = {}
            if node is not None:
                _find_duplicate_keys(node, (), duplicates, set(), set())
            data = loader.construct_document(node) if node is not None else None
            value_marks: dict[DocPath, tuple[int, int]] = {}
            key_marks: dict[DocPath, tuple[int, int]] = {}
            if node is not None:
                _record_marks(loader, node, data, (), value_marks, key_marks, set())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = _position(mark)
            problem = exc.problem or "invalid YAML"
            if exc.context:
                where = f" (line {_position(exc.context_mark)[0]})" if exc.context_mark is not None else ""
                joiner = " " if problem.startswith("but ") else ": "
                problem = f"{exc.context}{where}{joiner}{problem}"
            kind = "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
            raise YAMLSyntaxError(line, column, f"{kind}: {problem}") from None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            raise YAMLSyntaxError(line, column, f"YAML syntax error: {exc.reason}") from None
        except yaml.YAMLError as exc:
            raise YAMLSyntaxError(1, 1, f"YAML syntax error: {exc}") from None
        except RecursionError:
            raise YAMLSyntaxError(1, 1, "YAML error: the document is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    return MarkedDocument(data, value_marks, key_marks, duplicates)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _refuse_alias_bombs(root: yaml.Node) -> None:
    """ConstructorError when expanding the aliases under ROOT would add more than
    MAX_ALIAS_NODES nodes, at the first node that does. Counts each distinct node once
    (sizes are remembered), without recursion."""
    expanded: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in expanded:
            continue
        children = _children(node)
        if not children_done:
            if id(node) in open_nodes:
                raise yaml.constructor.ConstructorError(
                    None, None, "a recursive alias is not allowed here", node.start_mark)
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in expanded)
            continue
        open_nodes.discard(id(node))
        expanded[id(node)] = min(1 + sum(expanded[id(child)] for child in children), 1 << 62)
        if expanded[id(node)] - len(expanded) > MAX_ALIAS_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"expanding its aliases would add more than {MAX_ALIAS_NODES} nodes "
                "(a 'billion laughs'?); write the repeated values out", node.start_mark)


def _find_duplicate_keys(node: yaml.Node, path: DocPath, found: dict[DocPath, tuple[int, int, int]],
                         active: set[int], visited: set[int]) -> None:
    if id(node) in active:
        raise yaml.constructor.ConstructorError(
            None, None, "a recursive alias is not allowed here", node.start_mark)
    if id(node) in visited:  # an alias of a node already checked
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            child = path + (key_node.value if isinstance(key_node, yaml.ScalarNode) else "?",)
            if isinstance(key_node, yaml.ScalarNode):
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    found[child] = (seen[identity], *_position(key_node.start_mark))
                seen.setdefault(identity, key_node.start_mark.line + 1)
            _find_duplicate_keys(value_node, child, found, active, visited)
        active.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for index, item in enumerate(node.value):
            _find_duplicate_keys(item, path + (index,), found, active, visited)
        active.discard(id(node))


def _record_marks(loader: yaml.SafeLoader, node: yaml.Node, data: Any, path: DocPath,
                  value_marks: dict, key_marks: dict, visited: set[int]) -> None:
    value_marks[path] = _position(node.start_mark)
    if id(node) in visited:  # an alias: its inner positions are recorded once, under the anchor
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        # After construction node.value is flattened: merged ("<<") pairs first, so the
        # explicit key, which wins in the data, is also the last one recorded here.
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            try:
                key = loader.construct_object(key_node, deep=True)
                if key not in data:
                    continue
            except (yaml.YAMLError, TypeError):
                continue
            key_marks[path + (key,)] = _position(key_node.start_mark)
            _record_marks(loader, value_node, data[key], path + (key,), value_marks, key_marks, visited)
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for index, (item_node, item) in enumerate(zip(node.value, data)):
            _record_marks(loader, item_node, item, path + (index,), value_marks, key_marks, visited)
