"""Size and depth limits: one rule for every shell (runbookctl and the operator).

Hostile or careless input must not cost unbounded memory or time. Every limit lives here with its
default; docs/limits.md lists them with how to change each one. The message rule
(MAX_MESSAGE_CHARS, clip_message) lives in the contract, because executors clip too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runbook_engine.canonical import canonical_json
from runbook_engine.contract import MAX_MESSAGE_CHARS as MAX_MESSAGE_CHARS
from runbook_engine.contract import clip_message as clip_message
from runbook_engine.problems import Problem

KIB = 1024
MIB = 1024 * KIB

DEFAULT_MAX_OUTPUT_BYTES = 1 * MIB
"""A step's output (canonical JSON) may be at most this large unless the runbook says otherwise."""
MIN_OUTPUT_LIMIT_BYTES = 1 * KIB
MAX_OUTPUT_LIMIT_BYTES = 64 * MIB
"""Bounds of a runbook's `maxOutputBytes` (a shell may cap it lower)."""
OUTPUT_LIMIT_HOW = (
    "raise the runbook's spec.maxOutputBytes (at most 64 MiB); runbookctl caps it with "
    "--max-output-bytes, the operator with RUNBOOK_MAX_OUTPUT_BYTES"
)

RESULT_FILE_OVERHEAD_BYTES = 1 * MIB
"""A result file also carries evidence and KPIs: it may exceed the output limit by this much
plus the output limit again (evidence often quotes the output) before it is refused unread."""

MAX_DOCUMENT_BYTES = 4 * MIB
"""A runbook or input file (YAML/JSON) may be at most this large."""
MAX_DOCUMENT_DEPTH = 64
"""Nesting of mappings/lists in a runbook or input document."""
MAX_DOCUMENT_NODES = 200_000
"""Nodes of a document after YAML aliases are expanded (an alias bomb expands exponentially)."""


def effective_output_limit(runbook_limit: int | None, shell_cap: int | None = None) -> int:
    """The runbook's limit (or the default), never above the shell's cap."""
    limit = runbook_limit if runbook_limit is not None else DEFAULT_MAX_OUTPUT_BYTES
    return min(limit, shell_cap) if shell_cap is not None else limit


def output_too_large(size: int, limit: int, what: str = "output") -> str:
    """The failure message when a step's output (or its result file) is over the limit."""
    return f"{what} is {size} bytes, over the limit of {limit} bytes ({OUTPUT_LIMIT_HOW})"


def output_size_problem(output: Any, limit: int) -> str | None:
    """None if the canonical JSON of `output` fits in `limit` bytes, else the failure message.

    Raises TypeError/ValueError for values that are not canonical JSON (as `canonical_json`)."""
    size = len(canonical_json(output))
    return output_too_large(size, limit) if size > limit else None


def result_file_too_large(size: int, output_limit: int) -> str:
    """The failure message when a result file is refused unread (see `result_file_limit`)."""
    return (
        f"result file is {size} bytes, too large for the output limit of {output_limit} bytes "
        f"({OUTPUT_LIMIT_HOW})"
    )


def result_file_limit(output_limit: int) -> int:
    """Largest result file a shell reads for an attempt with this output limit."""
    return 2 * output_limit + RESULT_FILE_OVERHEAD_BYTES


MAX_VALUE_DEPTH = MAX_DOCUMENT_DEPTH
"""Nesting of an execution's `input` and of each step's `config`, counted from the field itself
(the field is level 1, a scalar inside it is one level more), as the loader counts documents."""
MAX_VALUE_BYTES = 128 * KIB
"""Compact JSON size of an execution's `input` and of each step's `config`. On a cluster kopf
keeps a copy of the spec in an annotation, and all annotations together may hold 256 KiB."""


@dataclass(frozen=True, slots=True)
class Shape:
    """How deep and how large a JSON-like value is (found without recursion)."""

    depth: int
    json_bytes: int
    complete: bool = True
    """False when the walk stopped early (already over the size limit): both are lower bounds."""


@dataclass(frozen=True, slots=True)
class ValueTooBig:
    """Why a value is refused: `kind` is "TooDeep" or "TooLarge"; `problem` names the field."""

    kind: str
    problem: Problem


def shape_of(value: Any, node_budget: int = MAX_VALUE_BYTES) -> Shape:
    """Depth and compact-JSON size of `value`, walked with an explicit stack.

    Iterative on purpose: the values checked here may nest thousands of levels (the apiserver
    accepts about 10,000), far past Python's recursion limit. Every node costs at least one byte
    of JSON, so the walk stops after `node_budget` + 1 nodes: a value that large is over the
    size limit whatever else it holds (this also bounds the time a hostile value costs, and ends
    the walk on a self-referencing value built in code)."""
    depth = size = nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        nodes += 1
        if nodes > node_budget + 1:
            return Shape(depth, max(size, node_budget + 1), complete=False)
        depth = max(depth, level)
        if isinstance(item, Mapping):
            size += 1 + max(len(item), 1)  # braces and commas
            for key, child in item.items():
                size += _scalar_bytes(str(key)) + 1  # the key and its colon
                stack.append((child, level + 1))
        elif isinstance(item, list | tuple):
            size += 1 + max(len(item), 1)
            stack.extend((child, level + 1) for child in item)
        else:
            size += _scalar_bytes(item)
    return Shape(depth, size)


def _scalar_bytes(value: Any) -> int:
    if value is None or value is True:
        return 4
    if value is False:
        return 5
    if isinstance(value, str):
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if isinstance(value, int):
        try:
            return len(str(value))
        except ValueError:  # past int_max_str_digits: estimate from the bits
            return value.bit_length() * 30103 // 100000 + 1
    return len(repr(value)) if isinstance(value, float) else len(str(value)) + 2


def value_too_big(
    value: Any,
    field: str,
    *,
    max_depth: int = MAX_VALUE_DEPTH,
    max_bytes: int = MAX_VALUE_BYTES,
) -> ValueTooBig | None:
    """Why `value` (an execution's input, a step's config) is too deep or too large, or None.

    The one rule for every shell: the operator refuses such an execution (condition reason
    InputTooDeep/InputTooLarge), the model refuses it anywhere (runbookctl included)."""
    shape = shape_of(value, node_budget=max_bytes)
    at_least = "" if shape.complete else "at least "
    if shape.depth > max_depth:
        reason = f"nested {at_least}{shape.depth} levels deep, the limit is {max_depth}"
        return ValueTooBig("TooDeep", Problem(field, reason))
    if shape.json_bytes > max_bytes:
        reason = f"{at_least}{shape.json_bytes} bytes of JSON, the limit is {max_bytes} bytes"
        return ValueTooBig("TooLarge", Problem(field, reason))
    return None
