"""Reading data files named in step configs, bounded: a path may name anything readable
(`/dev/zero`, a FIFO, a multi-gigabyte dump), so no more than the limit plus one byte is read.

The limit is RUNBOOK_MAX_FILE_BYTES (default 32 MiB) from the step's environment: on a cluster
the operator may set it on step pods; locally export it before `runbookctl run`.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_FILE_BYTES_ENV = "RUNBOOK_MAX_FILE_BYTES"
DEFAULT_MAX_FILE_BYTES = 32 * 1024 * 1024


class FileTooLarge(ValueError):
    """The file holds more than the limit; the message says how to raise it."""


def max_file_bytes() -> int:
    """The data-file limit from RUNBOOK_MAX_FILE_BYTES (a bad value falls back to the default)."""
    value = os.environ.get(MAX_FILE_BYTES_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_FILE_BYTES


def read_bytes_bounded(
    path: Path, limit: int | None = None, *, setting: str = MAX_FILE_BYTES_ENV
) -> bytes:
    """At most `limit` bytes of `path`; OSError if unreadable, FileTooLarge if larger."""
    limit = max_file_bytes() if limit is None else limit
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{path} is larger than the limit of {limit} bytes ({setting})")
    return data
