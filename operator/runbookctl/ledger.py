"""The JSON Lines ledger file: appending safely after a crash, and reading it back bounded.

A crash can leave a partial last line. Appending right after it would glue the next entry onto
it and damage two chains; so an append always starts on a fresh line, and the reader reports a
damaged line and goes on with the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 1024 * 1024
"""A ledger line longer than this is reported as damaged, not parsed (entries are small:
error messages are clipped, outputs are recorded by hash)."""


class JsonlLedger:
    """Appends entries to a JSON Lines file, one per line, flushed as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a+b")
        if self._fh.tell() > 0:
            self._fh.seek(-1, 2)
            if self._fh.read(1) != b"\n":  # a crash left a partial line: start a fresh one
                self._fh.write(b"\n")
                self._fh.flush()

    def __call__(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass(frozen=True, slots=True)
class Line:
    """One non-empty ledger line: its entry, or why it cannot be read."""

    number: int
    entry: Any = None
    damage: str | None = None


def read_lines(path: Path) -> Iterator[Line]:
    """Every non-empty line, streamed; OSError if the file cannot be opened."""
    with path.open("rb") as handle:
        number = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the long line
                    raw = handle.readline(MAX_LINE_BYTES + 1)
                yield Line(number, damage=f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            if raw.strip():
                yield _parse(number, raw)


def _parse(number: int, raw: bytes) -> Line:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Line(number, damage=f"not UTF-8 (byte 0x{raw[exc.start]:02x})")
    try:
        return Line(number, entry=json.loads(text))
    except json.JSONDecodeError as exc:
        return Line(number, damage=f"not valid JSON ({exc.msg})")
    except RecursionError:
        return Line(number, damage="not valid JSON (nested too deeply)")


def has_chain(path: Path, execution_id: str) -> bool:
    """True if the ledger already holds an entry of `execution_id` (False if there is no file)."""
    try:
        lines = read_lines(path)
        return any(
            isinstance(line.entry, dict) and line.entry.get("executionId") == execution_id
            for line in lines
        )
    except OSError:
        return False
