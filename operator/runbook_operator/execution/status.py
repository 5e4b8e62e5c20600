"""ExecutionState + audit chain → the RunbookExecution's status (pure).

Compact on purpose (argo#1186, tekton#3140): per step only status, attempt, times, message,
Job name and output hash; outputs stay in their result ConfigMaps, the full log in the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runbook_engine.audit import AuditChain
from runbook_engine.enums import ExecutionStatus
from runbook_engine.state import ExecutionState
from runbook_operator import names
from runbook_operator.crd.conditions import Verdict, condition, gitops_conditions, replaced
from runbook_operator.names import ExecutionRef

RECENT_ENTRIES = 5

_SUCCEEDED: Mapping[ExecutionStatus, tuple[str, str]] = {
    ExecutionStatus.COMPLETED: ("True", "Completed"),
    ExecutionStatus.FAILED: ("False", "Failed"),
    ExecutionStatus.CANCELLED: ("False", "Cancelled"),
}

RECONCILE_ERROR = "ReconcileError"
"""The one `with_ready_false` reason that is retried: the execution keeps Reconciling."""


def progress(state: ExecutionState) -> str:
    """Finished steps / all steps, e.g. ``3/5`` (the `kubectl get rbx` column)."""
    done = sum(1 for s in state.steps.values() if s.status.terminal)
    return f"{done}/{len(state.steps)}"


def execution_conditions(
    state: ExecutionState,
    generation: int | None,
    now: datetime,
    previous: Sequence[Mapping[str, Any]] = (),
    failure_reason: str | None = None,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled (kstatus, crd/conditions.py) and Succeeded (the outcome).

    Pending, running or paused: Reconciling (the operator is still driving it); COMPLETED:
    Ready; FAILED or CANCELLED: Stalled (nothing more happens until someone acts). The
    reason names the phase, or why it failed (StepFailed, Rejected, RunbookNotFound, …).
    """
    phase = state.status
    message = state.message or str(phase)
    if phase is ExecutionStatus.COMPLETED:
        verdict, reason = Verdict.SETTLED, "Completed"
    elif phase is ExecutionStatus.FAILED:
        verdict, reason = Verdict.STALLED, failure_reason or "StepFailed"
    elif phase is ExecutionStatus.CANCELLED:
        verdict, reason = Verdict.STALLED, "Cancelled"
    else:
        verdict, reason = Verdict.WORKING, str(phase).capitalize()
    succeeded = _SUCCEEDED.get(phase, ("Unknown", str(phase).capitalize()))
    return [
        *gitops_conditions(verdict, reason, message, generation, now, previous),
        condition("Succeeded", *succeeded, message, generation, now, previous),
    ]


def audit_head(
    chain: AuditChain, ledger: str, checkpoint: Mapping[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "count": len(chain.entries),
        "head": chain.head,
        "ledger": ledger,
        "recent": [dict(e) for e in chain.entries[-RECENT_ENTRIES:]],
    }
    if checkpoint is not None:
        out["checkpoint"] = dict(checkpoint)
    return out


def execution_status(
    state: ExecutionState,
    chain: AuditChain,
    *,
    ref: ExecutionRef,
    generation: int | None,
    now: datetime,
    previous: Mapping[str, Any],
    extra: Mapping[str, Any],
    failure_reason: str | None = None,
) -> dict[str, Any]:
    """The whole status subresource; `extra` carries definitionHash/definitionRef/checkpoint."""
    wire = state.to_wire(with_outputs=False)
    for entry in wire["steps"]:
        if entry["attempt"] > 0:
            entry["jobName"] = names.job_name(ref.name, ref.uid, entry["stepId"], entry["attempt"])
    wire.update(
        progress=progress(state),
        observedGeneration=generation,
        conditions=execution_conditions(
            state, generation, now, previous.get("conditions") or (), failure_reason
        ),
        audit=audit_head(chain, ref.ledger_segment(0), extra.get("checkpoint")),
    )
    for key in ("definitionHash", "definitionRef"):
        if extra.get(key):
            wire[key] = extra[key]
    return dict(without_nulls(wire))


def with_ready_false(
    status: Mapping[str, Any], reason: str, message: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    """`status` with Ready=False `reason` (phase, steps and Succeeded kept): what a reconcile
    that could not finish reports, so `kubectl get`/`wait` and GitOps tools see it.

    `ReconcileError` is retried, so the execution stays Reconciling (kstatus InProgress);
    any other reason (a ledger found rewritten) stops it for good: Stalled (kstatus Failed),
    with status.observedGeneration moved to `generation`, the spec seen and judged.
    """
    previous = status.get("conditions") or []
    if reason == RECONCILE_ERROR:
        return {
            **status,
            "conditions": replaced(
                previous,
                gitops_conditions(Verdict.WORKING, reason, message, generation, now, previous),
            ),
        }
    stalled = gitops_conditions(Verdict.STALLED, reason, message, generation, now, previous)
    return {**status, "observedGeneration": generation, "conditions": replaced(previous, stalled)}


def without_nulls(value: Any) -> Any:
    """`value` as the apiserver stores it: it prunes null fields (not `nullable` in the schema).

    Comparing the stored status with one that still holds nulls would always differ, and
    every reconcile would write an unchanged status again.
    """
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
