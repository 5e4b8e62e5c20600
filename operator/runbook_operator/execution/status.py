"""ExecutionState + audit chain → the RunbookExecution's status (pure).

Compact on purpose (argo#1186, tekton#3140): per step only status, attempt, times, message,
Job name and output hash; outputs stay in their result ConfigMaps, the full log in the ledger.
And bounded (`within_budget`): whatever the steps report, the status fits STATUS_BUDGET_BYTES,
so it can always be written (docs/limits.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runbook_engine.audit import AuditChain
from runbook_engine.enums import ExecutionStatus
from runbook_engine.limits import KIB, clip_message
from runbook_engine.state import ExecutionState
from runbook_operator import names
from runbook_operator.crd.conditions import Verdict, condition, gitops_conditions, replaced
from runbook_operator.names import ExecutionRef

RECENT_ENTRIES = 5
CONDITION_MESSAGE_CHARS = 2000
STEP_MESSAGE_CHARS = 1000
"""A step's message in status: the engine keeps up to MAX_MESSAGE_CHARS (4,000) and the ledger
keeps that whole; status shows head and tail of it (`…[N characters cut]…`)."""
MIN_STEP_MESSAGE_CHARS = 100
"""How far step messages shrink, all alike, when the status would exceed its budget."""
KPI_VALUE_CHARS = 256
"""A KPI's string value in status once messages alone cannot bring it under the budget."""
STATUS_BUDGET_BYTES = 768 * KIB
"""Most a status may take (compact JSON). The whole object must fit etcd's 1.5 MiB: the spec
(input up to 128 KiB), the annotations (at most 256 KiB; kopf keeps a copy of the spec there),
managed fields, and this. 1,000 steps (the CRD's limit) take up to ~550 KB without messages,
~4.4 MB with the engine's 4,000-character messages."""

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
        *gitops_conditions(
            verdict, reason, message, generation, now, previous, limit=CONDITION_MESSAGE_CHARS
        ),
        condition(
            "Succeeded",
            *succeeded,
            message,
            generation,
            now,
            previous,
            limit=CONDITION_MESSAGE_CHARS,
        ),
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
        if entry["attempt"] > 0 and "reusedFrom" not in entry:  # a reused step had no Job
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
    return within_budget(dict(without_nulls(wire)))


def status_bytes(status: Mapping[str, Any]) -> int:
    """Size of `status` as compact JSON (as sent to the apiserver, near enough as stored)."""
    return len(json.dumps(status, separators=(",", ":"), ensure_ascii=False).encode())


def within_budget(status: dict[str, Any], budget: int = STATUS_BUDGET_BYTES) -> dict[str, Any]:
    """`status` cut to fit `budget` bytes, least useful parts first.

    Always: step messages clipped to STEP_MESSAGE_CHARS, the execution message to
    CONDITION_MESSAGE_CHARS. Then, while over the budget: step messages shrink together (halved,
    down to MIN_STEP_MESSAGE_CHARS); the details of the recent audit entries are left out (their
    seq and hash stay, for `runbookctl verify`; the ledger has them all); KPI strings are clipped
    to KPI_VALUE_CHARS; the KPIs that still do not fit are left out, the last steps' first.

    The status is also the engine's state: what is cut here is what a later reconcile reads
    back. Each cut is idempotent (a clipped text is clipped to the same text), so a status that
    fits is written once and then stays the same; nothing the engine decides on is cut."""
    out = dict(status)
    if out.get("message"):
        out["message"] = clip_message(str(out["message"]), CONDITION_MESSAGE_CHARS)
    steps, limit = out.get("steps") or [], STEP_MESSAGE_CHARS
    out["steps"] = _step_messages_clipped(steps, limit)
    size = status_bytes(out)
    while size > budget and limit > MIN_STEP_MESSAGE_CHARS:
        limit = max(limit // 2, MIN_STEP_MESSAGE_CHARS)
        out["steps"] = _step_messages_clipped(steps, limit)  # from the originals: true counts
        size = status_bytes(out)
    audit = out.get("audit")
    if size > budget and isinstance(audit, Mapping) and audit.get("recent"):
        recent = [{k: v for k, v in e.items() if k != "details"} for e in audit["recent"]]
        out["audit"] = {**audit, "recent": recent}
        size = status_bytes(out)
    kpis = out.get("kpis")
    if size > budget and isinstance(kpis, Mapping) and kpis:
        out["kpis"] = {
            k: clip_message(v, KPI_VALUE_CHARS) if isinstance(v, str) else v
            for k, v in kpis.items()
        }
        size = status_bytes(out)
        if size > budget:
            out["kpis"] = _kpis_that_fit(out["kpis"], size - budget)
    return out


def _step_messages_clipped(steps: Sequence[Mapping[str, Any]], limit: int) -> list[Any]:
    return [
        {**s, "message": clip_message(s["message"], limit)}
        if isinstance(s.get("message"), str) and len(s["message"]) > limit
        else s
        for s in steps
    ]


def _kpis_that_fit(kpis: Mapping[str, Any], excess: int) -> dict[str, Any]:
    """`kpis` without the last ones (in status order: by the step that set them), enough to
    save `excess` bytes."""
    kept = list(kpis.items())
    while kept and excess > 0:
        name, value = kept.pop()
        excess -= status_bytes({name: value}) - 1
    return dict(kept)


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
