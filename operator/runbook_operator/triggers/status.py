"""A RunbookTrigger's status: counts the receiver adds, conditions the operator sets (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook_operator.crd.conditions import Verdict, gitops_conditions
from runbook_operator.triggers.model import MAX_ACTIVE_LISTED
from runbook_operator.triggers.plan import Started

COUNT_KEYS = ("received", "started", "duplicates", "cancelled", "skipped")


@dataclass(frozen=True, slots=True)
class CountsDelta:
    """What one webhook message (or one schedule tick) did."""

    received: int = 0
    started: int = 0
    duplicates: int = 0
    cancelled: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    last_execution: str | None = None
    last_triggered: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.received or self.started or self.duplicates or self.cancelled) and not any(
            self.skipped.values()
        )


def with_counts(status: Mapping[str, Any], delta: CountsDelta) -> dict[str, Any]:
    """The status fields `delta` changes (a merge patch: other fields are left alone)."""
    counts = dict(status.get("counts") or {})
    added = {
        "received": delta.received,
        "started": delta.started,
        "duplicates": delta.duplicates,
        "cancelled": delta.cancelled,
        "skipped": sum(delta.skipped.values()),
    }
    for key in COUNT_KEYS:
        counts[key] = int(counts.get(key) or 0) + added[key]
    skipped = dict(status.get("skipped") or {})
    for reason, n in delta.skipped.items():
        skipped[reason] = int(skipped.get(reason) or 0) + n
    out: dict[str, Any] = {"counts": counts, "skipped": skipped}
    if delta.last_triggered is not None:
        out["lastTriggered"] = delta.last_triggered
    if delta.last_execution is not None:
        out["lastExecution"] = delta.last_execution
    return out


def trigger_status(
    status: Mapping[str, Any],
    *,
    problem: str | None,
    runbook_found: bool,
    suspended: bool,
    started: Sequence[Started],
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """Conditions (kstatus: Ready settled, Reconciling waiting, Stalled until someone acts),
    observedGeneration and the running executions, from what the operator read."""
    if problem is not None:
        verdict, reason, message = Verdict.STALLED, "InvalidSpec", problem
    elif not runbook_found:
        verdict, reason = Verdict.WORKING, "RunbookNotFound"
        message = "the Runbook in spec.runbookRef does not exist (yet)"
    elif suspended:
        verdict, reason, message = (
            Verdict.SETTLED,
            "Suspended",
            "spec.suspend is true: nothing fires",
        )
    else:
        verdict, reason, message = Verdict.SETTLED, "Armed", "waiting for events"
    previous = status.get("conditions") or []
    active = sorted((s for s in started if s.active), key=lambda s: (s.created, s.name))
    return {
        **dict(status),
        "observedGeneration": generation,
        "conditions": gitops_conditions(verdict, reason, message, generation, now, previous),
        "active": [
            {"name": s.name, "startedAt": s.created.strftime("%Y-%m-%dT%H:%M:%SZ")}
            for s in active[-MAX_ACTIVE_LISTED:]
        ],
        "activeCount": len(active),
        "message": message,
    }


def history_to_delete(
    started: Sequence[Started], succeeded: int, failed: int, now: datetime, keep_younger: Any
) -> list[str]:
    """Finished executions beyond the trigger's history limits, oldest first. Executions
    younger than `keep_younger` (the rate-limit window) stay: the limit counts them."""
    done_ok = sorted((s for s in started if s.phase == "COMPLETED"), key=lambda s: s.created)
    done_bad = sorted(
        (s for s in started if s.phase in ("FAILED", "CANCELLED")), key=lambda s: s.created
    )
    doomed = (
        done_ok[: max(0, len(done_ok) - succeeded)] + done_bad[: max(0, len(done_bad) - failed)]
    )
    return [s.name for s in doomed if now - s.created >= keep_younger]
