"""Verify a stored ledger (pure): its segments, its chain, its signatures and the status agree.

1. The segments form one continuous series (indexes, names, links with name + uid + final hash,
   seals) — `segments.structure_problems`;
2. every entry's hash and link — `audit.verify`, which also rejects other chains' entries and
   duplicate logIds;
3. every signed checkpoint found (in the segments and in the execution's status) has a valid
   signature from a known key and matches the chain at its count: fewer entries than a
   checkpoint records means the tail was cut off;
4. when the execution object still exists, its `status.audit` count, head and recent entries
   match the ledger (the ledger may be ahead: it is written before the status).

The first problem in ledger order is the headline: `TAMPERED at entry N (segment S, line L): …`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from runbook_engine.audit import GENESIS_HASH, verify
from runbook_operator.ledger.checkpoint import checkpoint_problem
from runbook_operator.ledger.segments import (
    LedgerFault,
    Segment,
    all_entries,
    structure_problems,
)
from runbook_operator.names import ExecutionRef

KeyLookup = Callable[[str], Ed25519PublicKey | None]
"""keyId → the trusted public key to check a checkpoint with, or None when not trusted."""


@dataclass(slots=True)
class Report:
    """What `verify_ledger` found; `problems` in ledger order, `notes` are not failures."""

    lid: ExecutionRef
    segments: int
    count: int
    head: str
    problems: list[LedgerFault] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoint: Mapping[str, Any] | None = None
    status_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def headline(self) -> str:
        if self.problems:
            return f"TAMPERED at {self.problems[0]}"
        return (
            f"OK {self.lid.execution_id}: {self.count} entries in {self.segments} segment(s), "
            f"head {self.head}"
        )

    def wire(self) -> dict[str, Any]:
        return {
            "executionId": self.lid.execution_id,
            "uid": self.lid.uid,
            "valid": self.ok,
            "count": self.count,
            "head": self.head,
            "segments": self.segments,
            "problems": [
                {"seq": p.seq, "segment": p.segment, "line": p.line, "reason": p.reason}
                for p in self.problems
            ],
            "notes": list(self.notes),
            "checkpoint": dict(self.checkpoint) if self.checkpoint else None,
            "statusChecked": self.status_checked,
        }


def locate(segments: Sequence[Segment], seq: int) -> tuple[str, int | None]:
    """The segment and 1-based line holding entry `seq` (the last segment past the end)."""
    start = 0
    for seg in segments:
        if seq < start + len(seg.lines):
            return seg.name, seq - start + 1
        start += len(seg.lines)
    return (segments[-1].name if segments else "-"), None


def _problem(segments: Sequence[Segment], seq: int, reason: str) -> LedgerFault:
    name, line = locate(segments, seq)
    return LedgerFault(name, reason, seq, line)


def _hash_at(entries: Sequence[Any], count: int) -> str | None:
    """The chain's head after `count` entries, or None if it is shorter."""
    if count == 0:
        return GENESIS_HASH
    if count > len(entries) or not isinstance(entries[count - 1], Mapping):
        return None
    return str(entries[count - 1].get("hash"))


def checkpoints(
    segments: Sequence[Segment], status_audit: Mapping[str, Any] | None
) -> Iterator[tuple[str, Any]]:
    """Every checkpoint found, with where: the segments' and the status's."""
    for seg in segments:
        if seg.checkpoint is not None:
            yield f"segment {seg.name}", seg.checkpoint
    if status_audit and status_audit.get("checkpoint") is not None:
        yield "status.audit.checkpoint", status_audit["checkpoint"]


def _checkpoint_problem(
    lid: ExecutionRef, cp: Any, entries: Sequence[Any], keys: KeyLookup
) -> str | None:
    key_id = str(cp.get("keyId")) if isinstance(cp, Mapping) else ""
    key = keys(key_id)
    if key is None:
        return f"signed by key {key_id[:16]}…, which is not a trusted public key"
    problem = checkpoint_problem(cp, key, execution_id=lid.execution_id)
    if problem:
        return problem
    count = int(cp["count"])
    at = _hash_at(entries, count)
    if at is None:
        return (
            f"records {count} entries but the ledger holds {len(entries)}: "
            "the tail was cut off or a segment deleted"
        )
    return None if at == cp["head"] else f"head does not match ledger entry {count - 1}"


def _check_checkpoints(
    report: Report,
    segments: Sequence[Segment],
    entries: Sequence[Any],
    status: Any,
    keys: KeyLookup,
) -> None:
    for where, cp in checkpoints(segments, status):
        problem = _checkpoint_problem(report.lid, cp, entries, keys)
        if problem:
            count = cp.get("count") if isinstance(cp, Mapping) else None
            seq = min(count, len(entries)) if type(count) is int else len(entries)
            report.problems.append(_problem(segments, seq, f"checkpoint in {where}: {problem}"))
        elif report.checkpoint is None or cp["count"] > report.checkpoint["count"]:
            report.checkpoint = cp
    if report.checkpoint is None:
        report.notes.append("no signed checkpoint: a cut-off tail would go unnoticed")
    elif report.checkpoint["count"] < len(entries):
        extra = len(entries) - report.checkpoint["count"]
        report.notes.append(f"the last {extra} entries are newer than the newest checkpoint")


def _check_status(
    report: Report, segments: Sequence[Segment], entries: Sequence[Any], audit: Mapping[str, Any]
) -> None:
    report.status_checked = True
    count, head = audit.get("count"), audit.get("head")
    if type(count) is int and _hash_at(entries, count) != head:
        at = min(count, len(entries))
        reason = (
            f"status.audit records {count} entries with head {str(head)[:16]}…; the ledger "
            + ("holds fewer" if count > len(entries) else f"differs at entry {count - 1}")
        )
        report.problems.append(_problem(segments, at, reason))
    for recent in audit.get("recent") or ():
        seq = recent.get("seq") if isinstance(recent, Mapping) else None
        if type(seq) is int and _hash_at(entries, seq + 1) != recent.get("hash"):
            reason = "differs from the copy in status.audit.recent"
            report.problems.append(_problem(segments, seq, reason))
    if type(count) is int and count < len(entries):
        report.notes.append(f"the ledger is {len(entries) - count} entries ahead of the status")


def verify_ledger(
    lid: ExecutionRef,
    segments: Sequence[Segment],
    *,
    keys: KeyLookup,
    status_audit: Mapping[str, Any] | None = None,
    require_checkpoint: bool = False,
) -> Report:
    """Check segments, chain, checkpoints and (if given) the execution's status.audit."""
    entries = all_entries(segments)
    chain = verify(entries, execution_id=lid.execution_id)
    report = Report(lid, len(segments), len(entries), chain.head)
    report.problems.extend(structure_problems(lid, segments))
    if not chain.valid and chain.bad_index is not None:
        report.problems.append(_problem(segments, chain.bad_index, str(chain.error)))
    _check_checkpoints(report, segments, entries, status_audit, keys)
    if status_audit is not None:
        _check_status(report, segments, entries, status_audit)
    if require_checkpoint and report.checkpoint is None:
        report.problems.append(_problem(segments, len(entries), "no valid signed checkpoint"))
    report.problems.sort(key=lambda p: -1 if p.seq is None else p.seq)
    return report
