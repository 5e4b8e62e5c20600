"""Canonical JSON (RFC 8785 / JCS) and its SHA-256: the bytes every hash in the project covers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785


def _plain(value: Any) -> bool:
    """True when json.dumps(sort_keys) gives exactly the JCS bytes: no floats, ASCII keys only.

    JCS differs from Python's json only in float formatting and in key order for non-BMP
    characters (UTF-16 vs code points); for everything else the output is byte-identical.
    """
    if isinstance(value, dict):
        return all(k.isascii() and _plain(v) for k, v in value.items()) and all(
            isinstance(k, str) for k in value
        )
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return False


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of `value` (fast path through the C json encoder when provably equal)."""
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(value)


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()
