"""Audit entries → Kubernetes Events (pure): which entries post one, and the Event manifest.

The ledger is the record; Events are for `kubectl describe` and alerting. An Event's name
derives from the audit entry it reports, so a replayed reconcile posts nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runbook_engine.enums import LogEventType
from runbook_engine.timeutil import format_time
from runbook_operator import names
from runbook_operator.execution.view import ExecutionView

MESSAGE_MAX = 1024
COMPONENT = "runbook-operator"


@dataclass(frozen=True, slots=True)
class KubeEvent:
    type: str
    reason: str
    message: str
    key: str
    """The audit logId it reports: the Event's name derives from it (replays post nothing)."""


EVENT_KINDS: Mapping[LogEventType, tuple[str, str]] = {
    LogEventType.EXECUTION_STARTED: ("Normal", "Started"),
    LogEventType.EXECUTION_REJECTED: ("Warning", "Rejected"),
    LogEventType.EXECUTION_PAUSED: ("Normal", "Paused"),
    LogEventType.EXECUTION_RESUMED: ("Normal", "Resumed"),
    LogEventType.EXECUTION_CANCELLED: ("Normal", "Cancelled"),
    LogEventType.EXECUTION_COMPLETED: ("Normal", "Completed"),
    LogEventType.EXECUTION_FAILED: ("Warning", "Failed"),
    LogEventType.STEP_FAILED: ("Warning", "StepFailed"),
    LogEventType.STEP_ATTEMPT_FAILED: ("Warning", "AttemptFailed"),
    LogEventType.CONTROL_REJECTED: ("Warning", "ControlRejected"),
    LogEventType.APPROVAL_REQUESTED: ("Normal", "AwaitingApproval"),
    LogEventType.APPROVAL_DECISION: ("Normal", "ApprovalDecision"),
}
"""Audit event type → Kubernetes Event (type, reason); other events post nothing."""


def _describe(entry: Mapping[str, Any]) -> str:
    details = entry.get("details") or {}
    step = f"step {entry['stepId']}: " if entry.get("stepId") else ""
    text = details.get("error") or details.get("message") or details.get("reason") or ""
    if entry["eventType"] == LogEventType.EXECUTION_STARTED:
        text = f"runbook {details.get('runbookId')} with {details.get('stepCount')} steps"
    elif entry["eventType"] == LogEventType.APPROVAL_REQUESTED:
        text = (
            f"waiting for {details.get('required')} approval(s) until {details.get('deadline')}"
            f": {details.get('instructions') or ''}"
        )
    elif entry["eventType"] == LogEventType.APPROVAL_DECISION:
        verdict = "counted" if details.get("counted") else f"refused: {details.get('reason')}"
        text = f"{details.get('user')} {details.get('decision')}d ({verdict})"
    return f"{step}{text}".strip() or str(entry["eventType"])


def kube_events(entries: Sequence[Mapping[str, Any]]) -> tuple[KubeEvent, ...]:
    out = []
    for entry in entries:
        kind = EVENT_KINDS.get(entry["eventType"])
        if kind is not None:
            out.append(KubeEvent(kind[0], kind[1], _describe(entry), str(entry["logId"])))
    return tuple(out)


def event_manifest(view: ExecutionView, event: KubeEvent, now: datetime) -> dict[str, Any]:
    """The core/v1 Event about the execution, named after the audit entry it reports."""
    ref = view.ref
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.name[:200]}.{names.short_hash(event.key, length=12)}"},
        "involvedObject": {
            "apiVersion": view.body.get("apiVersion"),
            "kind": view.body.get("kind"),
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:MESSAGE_MAX],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": format_time(now),
        "lastTimestamp": format_time(now),
        "count": 1,
    }
