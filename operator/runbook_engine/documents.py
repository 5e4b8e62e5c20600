"""Bounded YAML/JSON parsing: no alias bombs, no runaway nesting, no silent duplicate keys.

PyYAML's safe loader shares aliased nodes, so a 450-byte document can stand for billions of
nodes once something walks it (hashing, validation, JSON output). Like the YAML libraries of
Kubernetes, this loader refuses a document whose aliases expand past a budget, and it counts
nesting while composing, so a deep document fails with the path where it got too deep instead
of a RecursionError somewhere later.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runbook_engine.limits import MAX_DOCUMENT_DEPTH, MAX_DOCUMENT_NODES

_MERGE_TAG = "tag:yaml.org,2002:merge"
_SHOWN_SEGMENTS = 8


class DocumentTooDeep(ValueError):
    """Nesting past MAX_DOCUMENT_DEPTH; `field` is the path where it happened (shortened)."""

    def __init__(self, path: list[str | int], line: int | None) -> None:
        self.field = _format_path(path)
        at = f" (line {line + 1})" if line is not None else ""
        super().__init__(f"nested deeper than {MAX_DOCUMENT_DEPTH} levels{at}")


class DocumentTooLarge(ValueError):
    """Aliases expand the document past MAX_DOCUMENT_NODES nodes."""


def _format_path(path: list[str | int]) -> str:
    shown = path[:_SHOWN_SEGMENTS]
    out = ""
    for part in shown:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    if len(path) > len(shown):
        out += f"…({len(path)} levels)"
    return out


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that tracks the path and depth while composing and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str | int] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if isinstance(index, ScalarNode):
            self._path.append(str(index.value))
        elif isinstance(index, int):
            self._path.append(index)
        else:
            self._path.append("(key)" if parent is not None else "")
        try:
            if len(self._path) > MAX_DOCUMENT_DEPTH + 1:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise DocumentTooDeep([p for p in self._path[1:] if p != ""], mark.line)
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node) -> None:
    """Raise when the node graph, with every alias expanded, is too large or too deep."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, height)

    def walk(node: Node, level: int) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is None:
            count, height = 1, 1
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = list(node.value)
            elif isinstance(node, MappingNode):
                children = [n for pair in node.value for n in pair]
            for child in children:
                c_count, c_height = walk(child, level + 1)
                count += c_count
                height = max(height, c_height + 1)
                if count > MAX_DOCUMENT_NODES:
                    raise DocumentTooLarge(
                        f"aliases expand the document past {MAX_DOCUMENT_NODES} nodes "
                        f"(line {node.start_mark.line + 1}); refusing an alias bomb"
                    )
            known = sizes[id(node)] = (count, height)
        if level + known[1] - 1 > MAX_DOCUMENT_DEPTH:
            raise DocumentTooDeep([], node.start_mark.line)
        return known

    walk(root, 1)


def yaml_documents(text: str) -> Iterator[Any]:
    """Every document in `text`, each checked against the limits before it is constructed."""
    loader = _BoundedLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _expanded_size(node)
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def depth_problem(value: Any, field: str) -> str | None:
    """Why `value` (already parsed, e.g. an input built from key=value pairs) nests deeper than
    MAX_DOCUMENT_DEPTH, or None. Iterative: a value too deep to recurse into is still judged."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DOCUMENT_DEPTH:
            return f"{field}: nested deeper than {MAX_DOCUMENT_DEPTH} levels"
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None
