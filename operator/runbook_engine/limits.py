"""Size and depth limits: one rule for every shell (runbookctl and the operator).

Hostile or careless input must not cost unbounded memory or time. Every limit lives here with its
default; docs/limits.md lists them with how to change each one. The message rule
(MAX_MESSAGE_CHARS, clip_message) lives in the contract, because executors clip too.
"""

from __future__ import annotations

from typing import Any

from runbook_engine.canonical import canonical_json
from runbook_engine.contract import MAX_MESSAGE_CHARS as MAX_MESSAGE_CHARS
from runbook_engine.contract import clip_message as clip_message

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
