"""Reading the user's files: bounded in size, UTF-8 checked, errors as InvalidRunbook problems.

The engine parses text; this shell reads it. A path may name anything (`/dev/zero`, a FIFO, a
directory): no more than the limit plus one byte is ever read.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from runbook_engine.limits import MAX_DOCUMENT_BYTES
from runbook_engine.loader import definition_from_text, parse_documents, plan_from_text
from runbook_engine.model import RunbookDefinition
from runbook_engine.plan import Plan
from runbook_engine.problems import InvalidRunbook, Problem
from runbook_executors.files import FileTooLarge, read_bytes_bounded


def read_text(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> str:
    """A UTF-8 text file of at most `limit` bytes; InvalidRunbook (field "") otherwise."""
    try:
        data = read_bytes_bounded(path, limit, setting="MAX_DOCUMENT_BYTES, fixed")
    except OSError as exc:
        raise InvalidRunbook(
            [Problem("", f"cannot read file: {exc.strerror or exc}")], source=str(path)
        ) from None
    except FileTooLarge as exc:
        raise InvalidRunbook([Problem("", f"file {exc}")], source=str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRunbook(
            [Problem("", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}")],
            source=str(path),
        ) from None


def read_yaml_documents(path: Path) -> list[Any]:
    """The YAML/JSON documents of a file, within the document limits."""
    return parse_documents(read_text(path), source=str(path))


def load_runbook_file(path: Path) -> RunbookDefinition:
    """The single Runbook in a YAML/JSON file (other kinds in the same file are ignored)."""
    return definition_from_text(read_text(path), source=str(path))


def load_plan(path: Path, known_action_types: Collection[str] | None = None) -> Plan:
    """Read, parse and fully validate a runbook file."""
    return plan_from_text(read_text(path), known_action_types, source=str(path))
