"""RunbookApprovals → decisions for the engine, and the verdict written back on each (pure).

A RunbookApproval is one person's decision on an APPROVAL step of an execution in its
namespace. Who decided is the user the apiserver authenticated, stamped by admission in the
created-by annotations (execution/stamps.py, the same policies as executions); the time is the
object's creationTimestamp. The engine judges them (runbook_engine.approval) and records every
decision in the ledger; the ledger's entry is then the verdict written on the object's status,
once. Decisions are objects, so an operator restart re-reads them and, because recorded
decisions keep their place (`approval.in_order`) and their recorded eligibility, reaches the
same verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from runbook_engine.approval import (
    APPROVAL,
    NOT_ELIGIBLE,
    ApprovalDecision,
    Verdict,
    in_order,
    not_waiting,
    parse_config,
)
from runbook_engine.audit import AuditChain
from runbook_engine.enums import LogEventType, StepStatus
from runbook_engine.identity import Identity
from runbook_engine.plan import Plan
from runbook_engine.scheduler import ApprovalObserved
from runbook_engine.state import ExecutionState
from runbook_engine.timeutil import format_time, parse_time
from runbook_operator.apigroup import API_GROUP
from runbook_operator.execution.stamps import Stamps
from runbook_operator.names import ExecutionRef

UNAUTHENTICATED = "Unauthenticated"
INVALID = "Invalid"
MAX_PER_EXECUTION = 500
"""RunbookApprovals read per execution per reconcile (the engine judges 200 per step)."""


@dataclass(frozen=True, slots=True)
class Received:
    """One RunbookApproval for this execution, read."""

    name: str
    step_id: str
    decision: ApprovalDecision | None
    """None when it cannot be a decision (no authenticated user, a bad spec): `refused` says why."""
    refused: Verdict | None
    judged: bool
    """It carries a verdict already (written once, never again)."""
    who: Identity | None = None
    """The authenticated user admission stamped (for the RBAC question)."""


def for_execution(objects: Iterable[Mapping[str, Any]], execution: str) -> list[Received]:
    """The RunbookApprovals naming `execution`, oldest first, at most MAX_PER_EXECUTION."""
    mine = [
        o
        for o in objects
        if ((o.get("spec") or {}).get("executionRef") or {}).get("name") == execution
    ]
    mine.sort(
        key=lambda o: (str(o["metadata"].get("creationTimestamp") or ""), o["metadata"]["name"])
    )
    return [_read(o) for o in mine[:MAX_PER_EXECUTION]]


def _read(obj: Mapping[str, Any]) -> Received:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    name = str(meta["name"])
    step_id = str(spec.get("stepId") or "")
    judged = bool((obj.get("status") or {}).get("verdict"))
    creator = Stamps.of(meta.get("annotations") or {}, False, False).creator
    if creator is None:
        why = Verdict(
            False,
            UNAUTHENTICATED,
            "no authenticated user stamped at admission (created-by annotation missing)",
        )
        return Received(name, step_id, None, why, judged)
    decision = spec.get("decision")
    created = meta.get("creationTimestamp")
    if decision not in ("approve", "reject") or not created:
        return Received(
            name, step_id, None, Verdict(False, INVALID, "spec.decision: approve|reject"), judged
        )
    made = ApprovalDecision(
        id=name,
        user=creator.username,
        groups=creator.groups,
        decision=decision,
        time=parse_time(str(created)),
        comment=str(spec.get("comment") or "")[:1024],
    )
    return Received(name, step_id, made, None, judged, creator)


def _waiting(plan: Plan, state: ExecutionState) -> list[str]:
    return [
        sid
        for sid in state.order
        if sid in state.running and plan.steps[sid].action_type == APPROVAL
    ]


def awaiting(plan: Plan, state: ExecutionState) -> str | None:
    """The `awaitingApproval` status field: waiting APPROVAL steps, comma-separated."""
    return ",".join(_waiting(plan, state)) or None


def recorded(chain: AuditChain, step_id: str, attempt: int) -> dict[str, Mapping[str, Any]]:
    """Decision id → the ledger's APPROVAL_DECISION details for that step attempt, in order."""
    prefix = f"{chain.execution_id}/step/{step_id}/{attempt}/decision/"
    return {
        str(e["logId"])[len(prefix) :]: e["details"]
        for e in chain.entries
        if e["eventType"] == LogEventType.APPROVAL_DECISION and str(e["logId"]).startswith(prefix)
    }


def to_review(
    plan: Plan, state: ExecutionState, received: Sequence[Received], chain: AuditChain
) -> list[Received]:
    """Decisions the shell must ask RBAC about (verb `approve`): for waiting steps that list
    no approvers, and not yet recorded (a recorded one keeps its recorded eligibility)."""
    out = []
    for sid in _waiting(plan, state):
        if parse_config(plan.steps[sid].config).approvers.listed:
            continue
        seen = recorded(chain, sid, state.steps[sid].attempt)
        out += [r for r in received if r.step_id == sid and r.decision and r.name not in seen]
    return out


def observations(
    plan: Plan,
    state: ExecutionState,
    received: Sequence[Received],
    chain: AuditChain,
    authorized: Mapping[str, bool],
    requester: str | None,
    execution: str,
) -> list[ApprovalObserved]:
    """One ApprovalObserved per waiting APPROVAL step: its decisions, recorded ones first."""
    out = []
    for sid in _waiting(plan, state):
        attempt = state.steps[sid].attempt
        seen = recorded(chain, sid, attempt)
        decisions = []
        for r in received:
            if r.step_id != sid or r.decision is None:
                continue
            if r.name in seen:  # eligibility as recorded: RBAC may have changed since
                may = seen[r.name].get("code") != NOT_ELIGIBLE
            else:
                may = authorized.get(r.name, False)
            decisions.append(_with_may(r.decision, may))
        ordered = tuple(in_order(decisions, list(seen)))
        out.append(
            ApprovalObserved(sid, attempt, ordered, requester, f"runbookexecution {execution}")
        )
    return out


def _with_may(decision: ApprovalDecision, may: bool) -> ApprovalDecision:
    return replace(decision, may_approve=may)


def verdicts(
    plan: Plan,
    state: ExecutionState,
    received: Sequence[Received],
    chain: AuditChain,
    now: datetime,
) -> list[tuple[str, dict[str, Any]]]:
    """(RunbookApproval name, status) for each one without a verdict yet: the ledger's verdict
    for a judged decision, else why it cannot count (not waiting, unauthenticated)."""
    out = []
    for r in received:
        if r.judged:
            continue
        verdict, user = _verdict(plan, state, r, chain)
        status: dict[str, Any] = {
            "verdict": "Counted" if verdict.counted else "Refused",
            "evaluatedAt": format_time(now),
        }
        if not verdict.counted:
            status.update(code=verdict.code, reason=verdict.reason)
        if user:
            status["user"] = user
        out.append((r.name, status))
    return out


def _verdict(
    plan: Plan, state: ExecutionState, r: Received, chain: AuditChain
) -> tuple[Verdict, str | None]:
    if r.refused is not None:
        return r.refused, None
    assert r.decision is not None
    user = r.decision.user
    step = plan.steps.get(r.step_id)
    if step is None:
        return not_waiting(r.step_id, "no such step in this runbook"), user
    if step.action_type != APPROVAL:
        return not_waiting(r.step_id, f"it is a {step.action_type} step, not an APPROVAL"), user
    current = state.steps[r.step_id]
    details = recorded(chain, r.step_id, current.attempt).get(r.name)
    if details is not None:
        counted = bool(details.get("counted"))
        return Verdict(counted, details.get("code"), details.get("reason")), user
    if current.status is StepStatus.PENDING:
        return not_waiting(r.step_id, "it has not started"), user
    if current.status is StepStatus.RUNNING:
        return not_waiting(r.step_id, "decided before it waited"), user
    return not_waiting(r.step_id, f"it is already {current.status}"), user


def gates(plan: Plan) -> list[str]:
    """The plan's APPROVAL steps."""
    return [sid for sid in plan.order if plan.steps[sid].action_type == APPROVAL]


def approve_attributes(ref: ExecutionRef) -> dict[str, str]:
    """The SubjectAccessReview for "may approve this execution": the custom verb `approve` on
    the runbookexecution (granted by the chart's runbook-approver role, not by `edit`)."""
    return {
        "group": API_GROUP,
        "resource": "runbookexecutions",
        "verb": "approve",
        "namespace": ref.namespace,
        "name": ref.name,
    }


def late_verdict(
    body: Mapping[str, Any], execution: str, phase: str | None, now: datetime
) -> dict[str, Any] | None:
    """The verdict of a RunbookApproval whose execution is finished or absent (None: it has
    one already, or its execution is still driven and will judge it)."""
    if (body.get("status") or {}).get("verdict"):
        return None
    step = str((body.get("spec") or {}).get("stepId") or "")
    if phase is None:
        why = f"runbookexecution {execution!r} not found"
    elif phase in ("COMPLETED", "FAILED", "CANCELLED"):
        why = f"runbookexecution {execution!r} is already {phase}"
    else:
        return None
    verdict = not_waiting(step, why)
    return {
        "verdict": "Refused",
        "code": verdict.code,
        "reason": verdict.reason,
        "evaluatedAt": format_time(now),
    }
