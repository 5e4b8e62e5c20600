"""The hash-chained audit log (pure).

Each entry's ``hash`` is SHA-256 over the RFC 8785 canonical JSON of the entry without ``hash``;
``previousHash`` links it to the entry before (``GENESIS_HASH`` for the first). ``logId`` is
derived from the event's key, so a replayed event is recognised and not appended twice.

A chain detects edited, deleted, inserted and reordered entries. It cannot detect the tail being
cut off, nor the whole log being rolled back to an older valid prefix: that needs a signed
checkpoint kept out of the attacker's reach (see docs/audit.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook_engine.canonical import (
    INT_LIMIT,
    NOT_PLAIN,
    canonical_sha256,
    ordered_json,
    sorted_plain,
)
from runbook_engine.enums import LogEventType
from runbook_engine.timeutil import format_time

GENESIS_HASH = "0" * 64
"""previousHash of entry 0: 64 zero hex digits (SHA-256 width), documented in docs/audit.md."""

ENTRY_FIELDS = (
    "seq",
    "logId",
    "executionId",
    "timestamp",
    "actorId",
    "eventType",
    "stepId",
    "details",
    "previousHash",
    "hash",
)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """An event for the audit chain. `key` is unique per execution: replays deduplicate on it."""

    key: str
    event_type: LogEventType
    step_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def log_id(execution_id: str, key: str) -> str:
    return f"{execution_id}/{key}"


_ENTRY_FIELD_SET = frozenset(ENTRY_FIELDS)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """Hash of an entry: canonical JSON of every field except `hash` itself."""
    if type(entry) is dict and entry.keys() == _ENTRY_FIELD_SET:
        return _stored_entry_hash(entry)
    return canonical_sha256({k: v for k, v in entry.items() if k != "hash"})


_BODY_FIELDS = tuple(sorted(f for f in ENTRY_FIELDS if f != "hash"))


def _stored_entry_hash(entry: dict[str, Any]) -> str:
    """`entry_hash` of an entry with exactly the ENTRY_FIELDS, the shape verification meets
    100,000s of times: the same bytes, found cheaper. The body is built in JCS key order
    (known in advance) and only its nested values are walked (`sorted_plain`); anything not
    provably plain takes the general path (canonical_sha256 → rfc8785)."""
    body = {}
    for name in _BODY_FIELDS:
        value = entry[name]
        kind = type(value)
        if not (kind is str or value is None or (kind is int and -INT_LIMIT < value < INT_LIMIT)):
            try:
                value = sorted_plain(value)
            except RecursionError:
                value = NOT_PLAIN
            if value is NOT_PLAIN:
                return canonical_sha256({k: v for k, v in entry.items() if k != "hash"})
        body[name] = value
    data = ordered_json(body)
    if data is None:
        return canonical_sha256({k: v for k, v in entry.items() if k != "hash"})
    return hashlib.sha256(data).hexdigest()


def make_entry(
    *,
    seq: int,
    execution_id: str,
    event: AuditEvent,
    actor_id: str,
    timestamp: datetime,
    previous_hash: str,
) -> dict[str, Any]:
    """A new hashed entry (a plain JSON-ready dict: that is what gets stored and verified)."""
    entry: dict[str, Any] = {
        "seq": seq,
        "logId": log_id(execution_id, event.key),
        "executionId": execution_id,
        "timestamp": format_time(timestamp),
        "actorId": actor_id,
        "eventType": str(event.event_type),
        "stepId": event.step_id,
        "details": _json_ready(dict(event.details)),
        "previousHash": previous_hash,
    }
    entry["hash"] = entry_hash(entry)
    return entry


def _json_ready(value: Any) -> Any:
    """Drop None values inside details so the stored form round-trips through any JSON store."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


class AuditChain:
    """An in-memory chain for one execution, with idempotent append."""

    def __init__(self, execution_id: str, entries: Iterable[Mapping[str, Any]] = ()) -> None:
        self.execution_id = execution_id
        self.entries: list[dict[str, Any]] = [dict(e) for e in entries]
        self._ids = {e["logId"] for e in self.entries}

    @property
    def head(self) -> str:
        return self.entries[-1]["hash"] if self.entries else GENESIS_HASH

    def append(
        self, event: AuditEvent, *, actor_id: str, timestamp: datetime
    ) -> dict[str, Any] | None:
        """Append and return the entry, or None if this event is already in the chain."""
        if log_id(self.execution_id, event.key) in self._ids:
            return None
        entry = make_entry(
            seq=len(self.entries),
            execution_id=self.execution_id,
            event=event,
            actor_id=actor_id,
            timestamp=timestamp,
            previous_hash=self.head,
        )
        self.entries.append(entry)
        self._ids.add(entry["logId"])
        return entry


@dataclass(frozen=True, slots=True)
class Verification:
    """Result of `verify`: on failure, the first bad entry's index and why."""

    valid: bool
    count: int
    head: str
    bad_index: int | None = None
    error: str | None = None

    def __str__(self) -> str:
        if self.valid:
            return f"OK: {self.count} entries, head {self.head}"
        return f"TAMPERED at entry {self.bad_index}: {self.error}"


def verify(
    entries: Sequence[Mapping[str, Any]],
    *,
    execution_id: str | None = None,
    expected_head: str | None = None,
    expected_count: int | None = None,
) -> Verification:
    """Recompute every hash and link. `expected_*` come from a checkpoint and catch truncation."""
    previous = GENESIS_HASH
    seen_ids: set[str] = set()
    exec_id = execution_id
    for i, entry in enumerate(entries):
        problem = _entry_problem(entry, i, previous, exec_id, seen_ids)
        if problem is not None:
            return Verification(False, len(entries), previous, i, problem)
        if exec_id is None:
            exec_id = entry["executionId"]
        seen_ids.add(entry["logId"])
        previous = entry["hash"]
    return _against_checkpoint(entries, previous, expected_head, expected_count)


def _entry_problem(
    entry: Any, i: int, previous: str, exec_id: str | None, seen_ids: set[str]
) -> str | None:
    """Why entry `i` does not continue the chain whose last hash is `previous`, or None.

    One function, not a table of rules: verification runs it on every entry of every ledger,
    and its throughput is a documented target (docs/engine.md, `make bench`).
    """
    if type(entry) is not dict and not isinstance(entry, Mapping):
        return "not a JSON object"
    if entry.keys() != _ENTRY_FIELD_SET:  # one set comparison for the usual case
        missing = [f for f in ENTRY_FIELDS if f not in entry]
        if missing:
            return f"missing field(s) {', '.join(missing)}"
        extra = sorted(set(entry) - set(ENTRY_FIELDS))
        if extra:
            return f"unexpected field(s) {', '.join(extra)}"
    if entry["seq"] != i:
        return f"seq is {entry['seq']!r}, expected {i} (entry deleted, inserted or moved)"
    if exec_id is not None and entry["executionId"] != exec_id:
        return f"executionId {entry['executionId']!r} does not belong to chain {exec_id!r}"
    if entry["previousHash"] != previous:
        return (
            f"previousHash {str(entry['previousHash'])[:16]}… does not match the hash of entry "
            f"{i - 1 if i else 'genesis'} ({previous[:16]}…): entry deleted, inserted or moved"
        )
    try:
        recomputed = entry_hash(entry)
    except (TypeError, ValueError) as exc:
        return f"cannot canonicalise: {exc}"
    if recomputed != entry["hash"]:
        return (
            f"hash mismatch: content was edited (stored {str(entry['hash'])[:16]}…, "
            f"computed {recomputed[:16]}…)"
        )
    if not isinstance(entry["logId"], str):
        return f"logId is not a string: {entry['logId']!r}"
    if entry["logId"] in seen_ids:
        return f"duplicate logId {entry['logId']!r}"
    return None


def _against_checkpoint(
    entries: Sequence[Mapping[str, Any]],
    head: str,
    expected_head: str | None,
    expected_count: int | None,
) -> Verification:
    """A valid chain checked against a checkpoint's count and head (truncation, rewrites)."""
    count = len(entries)
    if expected_count is not None and count < expected_count:
        return Verification(
            False,
            count,
            head,
            count,
            f"chain has {count} entries but the checkpoint records {expected_count}: tail truncated",
        )
    if expected_head is not None and expected_count is not None:
        at = entries[expected_count - 1]["hash"] if expected_count else GENESIS_HASH
        if at != expected_head:
            return Verification(
                False,
                count,
                head,
                expected_count - 1,
                "entry does not match the checkpoint's head hash",
            )
    if expected_head is not None and expected_count is None and head != expected_head:
        return Verification(
            False,
            count,
            head,
            count,
            "head does not match the expected head hash (tail truncated or history rewritten)",
        )
    return Verification(True, count, head)
