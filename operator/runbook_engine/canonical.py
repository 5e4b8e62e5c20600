"""Canonical JSON (RFC 8785 / JCS) and its SHA-256: the bytes every hash in the project covers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785
from pydantic_core import PydanticSerializationError, to_json

_INT_LIMIT = 2**53
INT_LIMIT = _INT_LIMIT
"""JCS (I-JSON) integers lie strictly between -INT_LIMIT and INT_LIMIT."""


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


_NOT_PLAIN: Any = object()


def sorted_plain(value: Any) -> Any:
    """A copy of `value` with every object's keys in JCS order, or NOT_PLAIN when `_plain`
    would refuse it (a float, a non-ASCII key, an integer beyond 2^53, another type).

    Such a copy serialised in order by pydantic_core's (Rust) JSON writer gives the same
    bytes as the C json encoder with sort_keys, three times faster: the escaping (control
    characters as \\u00xx, nothing else escaped, UTF-8 kept) is the same, which the property
    tests check against rfc8785."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_INT_LIMIT < value < _INT_LIMIT else _NOT_PLAIN
    if kind is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return _NOT_PLAIN
        ordered = {}
        for key in sorted(value):
            item = sorted_plain(value[key])
            if item is _NOT_PLAIN:
                return _NOT_PLAIN
            ordered[key] = item
        return ordered
    if kind is list or kind is tuple:
        items = [sorted_plain(item) for item in value]
        return _NOT_PLAIN if any(item is _NOT_PLAIN for item in items) else items
    return _NOT_PLAIN


NOT_PLAIN = _NOT_PLAIN
"""What `sorted_plain` returns for a value the fast path cannot take."""


def ordered_json(ordered: Any) -> bytes | None:
    """JCS bytes of a `sorted_plain` copy, or None when the fast writer refuses it (a lone
    surrogate: the caller's general path then fails exactly as before)."""
    try:
        return to_json(ordered)
    except (PydanticSerializationError, ValueError):
        return None


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of `value` (fast path when provably equal: no floats, ASCII keys)."""
    try:
        ordered = sorted_plain(value)
    except RecursionError:  # deeper than the fast path goes: the general path decides
        ordered = _NOT_PLAIN
    if ordered is not _NOT_PLAIN:
        fast = ordered_json(ordered)
        if fast is not None:
            return fast
    if _plain(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(value)


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()
