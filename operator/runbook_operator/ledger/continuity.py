"""Is the stored ledger the one this operator wrote? (pure)

The operator records the ledger's length and head hash in the execution's status after every
write, and signs checkpoints of it. A chain that does not extend both — shorter, or with another
hash at a recorded position — was rewritten, truncated or replaced by someone else, even if it
is consistent with itself (the chain hash has no key: anyone can recompute it). The operator
then stops the execution and never signs that chain (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _marks(audit: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(what recorded it, count, head) for the status and its last checkpoint."""
    out = []
    checkpoint = audit.get("checkpoint")
    for what, mark in (("status", audit), ("signed checkpoint", checkpoint)):
        if not isinstance(mark, Mapping):
            continue
        count, head = mark.get("count"), mark.get("head")
        if isinstance(count, int) and count > 0 and isinstance(head, str) and head:
            out.append((what, count, head))
    return out


def rewritten(entries: Sequence[Mapping[str, Any]], audit: Mapping[str, Any]) -> str | None:
    """Why `entries` are not an extension of what `audit` (status.audit) recorded, or None."""
    for what, count, head in _marks(audit):
        if len(entries) < count:
            return (
                f"the ledger holds {len(entries)} entries, fewer than the {count} the {what} "
                "recorded: it was truncated or replaced"
            )
        found = entries[count - 1].get("hash")
        if found != head:
            return (
                f"entry {count - 1} of the ledger hashes to {str(found)[:16]}…, not to the head "
                f"{head[:16]}… the {what} recorded: the ledger was rewritten"
            )
    return None
