"""Status conditions as GitOps tools read them: `Ready`, `Reconciling`, `Stalled` (pure).

kstatus (sigs.k8s.io/cli-utils pkg/kstatus/status, read by Flux, `kubectl wait` and kpt)
judges an object in this order: deletionTimestamp → Terminating; `status.observedGeneration`
≠ `metadata.generation` → InProgress; `Reconciling=True` → InProgress; `Stalled=True` →
Failed; `Ready=True` → Current; `Ready=False/Unknown` → InProgress; else Current. Each kind
the operator owns therefore carries all three conditions, each with observedGeneration, and
exactly one of them is True: settled (Ready), still being worked on (Reconciling), or stuck
until someone acts (Stalled). The Argo CD health scripts (docs/gitops.md) read the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from runbook_engine.limits import clip_message
from runbook_engine.timeutil import format_time

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
MESSAGE_LIMIT = 2000
"""Characters of a condition's message (metav1 allows 32768; the rest is in the ledger)."""


class Verdict(StrEnum):
    """Which of the three conditions is True."""

    SETTLED = "settled"  # Ready=True: kstatus Current, Argo CD Healthy
    WORKING = "working"  # Reconciling=True: kstatus InProgress
    STALLED = "stalled"  # Stalled=True: kstatus Failed, Argo CD Degraded


def condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
    previous: Sequence[Mapping[str, Any]] = (),
    *,
    limit: int = MESSAGE_LIMIT,
) -> dict[str, Any]:
    """A metav1.Condition; lastTransitionTime moves only when `status` changes."""
    since = format_time(now)
    for old in previous:
        if old.get("type") == kind and old.get("status") == status:
            since = str(old.get("lastTransitionTime") or since)
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": clip_message(message, limit),
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def gitops_conditions(
    verdict: Verdict,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
    previous: Sequence[Mapping[str, Any]] = (),
    *,
    limit: int = MESSAGE_LIMIT,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for `verdict`, all with the same reason and message."""
    truth = {
        READY: verdict is Verdict.SETTLED,
        RECONCILING: verdict is Verdict.WORKING,
        STALLED: verdict is Verdict.STALLED,
    }
    return [
        condition(kind, str(is_true), reason, message, generation, now, previous, limit=limit)
        for kind, is_true in truth.items()
    ]


def replaced(
    existing: Iterable[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`existing` with the conditions of the types in `new` replaced (others kept, in order)."""
    types = {c["type"] for c in new}
    return [dict(c) for c in existing if c.get("type") not in types] + [dict(c) for c in new]
