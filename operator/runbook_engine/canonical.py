"""Canonical JSON (RFC 8785 / JCS) and its SHA-256: the bytes every hash in the project covers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

_INT_LIMIT = 2**53


def _plain(value: Any) -> bool:
    """True when json.dumps(sort_keys) gives exactly the JCS bytes: no floats, ASCII keys only.

    JCS differs from Python's json only in float formatting and in key order for non-BMP
    characters (UTF-16 vs code points); for everything else the output is byte-identical.
    Iterative and type-exact because verification runs this on every ledger entry.
    """
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -_INT_LIMIT < item < _INT_LIMIT:
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        else:
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of `value` (fast path through the C json encoder when provably equal)."""
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(value)


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()
