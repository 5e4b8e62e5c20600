"""Pause, resume, cancel and delete: how a person's change to an execution reaches the engine.

People control an execution by patching `spec.paused` / `spec.cancel` or deleting it; the engine
sees them as the request's `paused`/`cancel` flags and records who asked. Deletion is a cancel
made by the finalizer, after which only the Jobs still running are deleted (finished ones go
with the execution through their ownerReferences). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runbook_engine.model import ExecutionRequest
from runbook_operator.execution.view import ExecutionView
from runbook_operator.steps import observe

DELETE_ACTOR = "kubectl-delete (finalizer)"


def control_actor(view: ExecutionView) -> str | None:
    """Who last set spec.paused/spec.cancel, from managedFields (the field manager's name)."""
    latest: tuple[str, str] | None = None
    for entry in (view.body.get("metadata") or {}).get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:paused" in spec or "f:cancel" in spec:
            stamp = str(entry.get("time") or "")
            if latest is None or stamp >= latest[0]:
                latest = (stamp, str(entry.get("manager") or ""))
    return latest[1] if latest and latest[1] else None


def requested(
    request: ExecutionRequest, view: ExecutionView, *, deleting: bool
) -> ExecutionRequest:
    """The pinned request with the controls as they are now (a deletion cancels)."""
    return request.model_copy(update={"paused": view.paused, "cancel": view.cancel or deleting})


def actor(view: ExecutionView, *, deleting: bool) -> str | None:
    return DELETE_ACTOR if deleting else control_actor(view)


def reconcile_after_finish(view: ExecutionView) -> bool:
    """A finished execution patched with pause/cancel: run once more so the engine records the
    refused control (CONTROL_REJECTED) instead of ignoring it silently."""
    return view.finished and view.control_requested


def jobs_to_delete(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """At deletion: the Jobs still running (deleting 1,000 finished ones would cost 1,000 calls)."""
    return [str(j["metadata"]["name"]) for j in jobs if not observe.finished(j)]
