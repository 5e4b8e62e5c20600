"""What a trigger does with one event, and the execution it creates (pure).

The receiver (and the scheduler) gather what exists, then ask: is this occurrence already
started (its name exists: a duplicate), may it start now (suspend, `maxConcurrent`, `rateLimit`),
and what does its RunbookExecution look like. No I/O here; the shell holds a per-trigger lock
around read-decide-create so the limits hold exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runbook_engine.enums import ExecutionStatus
from runbook_engine.timeutil import parse_time
from runbook_operator.apigroup import API_VERSION
from runbook_operator.execution.stamps import (
    CREATED_BY,
    TRIGGER_CREATED_BY,
    TRIGGER_EVENT,
    TRIGGER_LABEL,
    TRIGGERED_BY,
)
from runbook_operator.names import label_value
from runbook_operator.triggers.model import RunbookTriggerSpec

RATE_WINDOW = timedelta(minutes=1)
TERMINAL = frozenset(str(s) for s in ExecutionStatus if s.terminal)

SKIP_SUSPENDED = "suspended"
SKIP_MAX_CONCURRENT = "maxConcurrent"
SKIP_RATE_LIMIT = "rateLimit"
SKIP_INVALID_INPUT = "invalidInput"


@dataclass(frozen=True, slots=True)
class Started:
    """One execution of the trigger, as the limits see it."""

    name: str
    created: datetime
    phase: str | None

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Started:
        meta = body.get("metadata") or {}
        created = parse_time(str(meta.get("creationTimestamp")))
        phase = (body.get("status") or {}).get("phase")
        return cls(str(meta.get("name")), created, str(phase) if phase else None)


def trigger_selector(trigger: str) -> str:
    """Label selector of the executions a trigger created."""
    return f"{TRIGGER_LABEL}={label_value(trigger)}"


def skip_reason(spec: RunbookTriggerSpec, started: Sequence[Started], now: datetime) -> str | None:
    """Why a new execution may not start now (None: it may). `started`: the trigger's
    executions as they are, read after the last one this receiver created."""
    if spec.suspend:
        return SKIP_SUSPENDED
    running = sum(1 for s in started if s.active)
    if spec.max_concurrent is not None and running >= spec.max_concurrent:
        return SKIP_MAX_CONCURRENT
    if spec.rate_limit is not None:
        recent = sum(1 for s in started if now - s.created < RATE_WINDOW)
        if recent >= spec.rate_limit.per_minute:
            return SKIP_RATE_LIMIT
    return None


def execution_manifest(
    trigger: Mapping[str, Any],
    spec: RunbookTriggerSpec,
    name: str,
    execution_input: Mapping[str, Any],
    event: Mapping[str, Any],
    creator: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The RunbookExecution a trigger starts: the trigger's request fields, the mapped input,
    and (in annotations admission guards) which trigger, who made it, and the event.

    `creator`: the receiver's own userInfo, stamped for clusters without the
    MutatingAdmissionPolicy (the ValidatingAdmissionPolicy checks it names the caller)."""
    meta = trigger.get("metadata") or {}
    trigger_name = str(meta["name"])
    annotations = {
        TRIGGERED_BY: trigger_name,
        TRIGGER_CREATED_BY: str((meta.get("annotations") or {}).get(CREATED_BY) or ""),
        TRIGGER_EVENT: json.dumps(dict(event), sort_keys=True, separators=(",", ":")),
    }
    if creator is not None:
        annotations.update(
            {
                CREATED_BY: str(creator.get("username") or ""),
                f"{CREATED_BY}-uid": str(creator.get("uid") or ""),
                f"{CREATED_BY}-groups": ",".join(creator.get("groups") or []),
            }
        )
    request: dict[str, Any] = {
        "runbookRef": {"name": spec.runbook_ref.name},
        "input": dict(execution_input),
        "startedBy": f"trigger:{meta.get('namespace')}/{trigger_name}",
    }
    if spec.legal_basis is not None:
        request["legalBasis"] = str(spec.legal_basis)
    if spec.data_licenses:
        request["dataLicenses"] = [str(x) for x in spec.data_licenses]
    return {
        "apiVersion": API_VERSION,
        "kind": "RunbookExecution",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": {TRIGGER_LABEL: label_value(trigger_name)},
            "annotations": annotations,
        },
        "spec": request,
    }


def started_by(body: Mapping[str, Any], trigger: str) -> bool:
    """Whether execution `body` was created by trigger `trigger` (admission guards the
    annotation: only the receiver sets it), so the trigger may cancel it."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(TRIGGERED_BY) == trigger
