"""A re-run on the cluster (`spec.rerunOf`): checking the parent and preparing the start (pure).

The controller fetches the parent — its object, its pinned definition ConfigMap, its ledger and
the result ConfigMaps of the steps to reuse — and this module decides:

- at pinning (`effective_request`, `parent_problem`): the parent exists in the namespace and has
  finished; the re-run's request takes the parent's input when `spec.input` is absent; without
  `latest` the definition is the one the parent pinned (`pinned_runbook`), with it the Runbook
  as it is now;
- at the first reconcile (`prepare`): which steps run and which are reused
  (runbook_engine.rerun.select), every reused output read from the parent's result ConfigMap
  and hashing to what the parent's ledger recorded, and the result ConfigMaps the re-run gets
  (copies under its own attempt names, so downstream pods mount them as any upstream result).

Anything wrong is a `Refusal`: the re-run ends FAILED before any step, with a condition naming
the reason (ParentNotFound, ParentNotFinished, ParentLedgerTampered, OutputTampered, …).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runbook_engine.contract import StepExecutorResult
from runbook_engine.enums import StepStatus
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan
from runbook_engine.problems import Problem
from runbook_engine.rerun import (
    ParentRecord,
    RerunLink,
    RerunRefused,
    Selection,
    output_problems,
    parent_not_finished,
    recorded_output_hashes,
    rerun_execution,
    select,
)
from runbook_engine.state import ExecutionState, StepState
from runbook_operator import names
from runbook_operator.execution.pinning import Pinned, Refusal
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import results


def _refusal(refused: RerunRefused) -> Refusal:
    return Refusal(refused.reason, refused.problems)


def parent_ref(parent: Mapping[str, Any]) -> ExecutionRef:
    meta = parent["metadata"]
    return ExecutionRef(str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))


def parent_problem(
    request: ExecutionRequest, parent: Mapping[str, Any] | None, namespace: str
) -> Refusal | None:
    """Why the parent cannot be re-run at all: missing, unfinished, another Runbook."""
    assert request.rerun_of is not None
    name = request.rerun_of.name
    if parent is None:
        reason = f"RunbookExecution {name!r} not found in namespace {namespace}"
        return Refusal("ParentNotFound", (Problem("spec.rerunOf.name", reason),))
    status = parent.get("status") or {}
    refused = parent_not_finished(status.get("phase"))
    if refused is not None:
        return Refusal(
            refused.reason,
            (
                Problem(
                    "spec.rerunOf",
                    f"{name} is {status.get('phase') or 'not started'}: a re-run needs it "
                    "COMPLETED, FAILED or CANCELLED (create the re-run when it has finished)",
                ),
            ),
        )
    parent_runbook = ((parent.get("spec") or {}).get("runbookRef") or {}).get("name")
    if parent_runbook != request.runbook_ref.name:
        reason = (
            f"{name} ran Runbook {parent_runbook!r}, not {request.runbook_ref.name!r}: a re-run "
            "runs the same Runbook"
        )
        return Refusal("RunbookMismatch", (Problem("spec.runbookRef.name", reason),))
    return None


def effective_request(
    request: ExecutionRequest, spec: Mapping[str, Any], parent: Pinned
) -> ExecutionRequest:
    """The request the re-run pins: its own, with the parent's input when `spec.input` is
    absent, and without the re-run options. Those stay in the (immutable) spec: the pinned
    request is what step pods read, and a pod of an older image refuses fields it does not
    know."""
    plain = request.model_copy(
        update={"rerun_of": None, "rerun_from": [], "only": [], "latest": False}
    )
    if "input" in spec:
        return plain
    return plain.model_copy(update={"input": dict(parent.request.input)})


def pinned_runbook(parent: Pinned, runbook_name: str) -> dict[str, Any]:
    """The parent's pinned definition as a Runbook document (what `pinning.pin` takes)."""
    return {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": runbook_name},
        "spec": parent.plan.definition.model_dump(mode="json", by_alias=True),
    }


@dataclass(frozen=True, slots=True)
class ParentFacts:
    """What the controller read of the parent for the re-run's first reconcile."""

    body: Mapping[str, Any]
    """The parent RunbookExecution (its status names step outcomes, attempts, KPIs)."""
    entries: Sequence[Mapping[str, Any]]
    """The parent's ledger, read and checked (LedgerStore + continuity)."""
    results: Mapping[str, StepExecutorResult | str]
    """Step id → the result read from the parent's result ConfigMap, or why it could not be."""


def parent_steps(body: Mapping[str, Any]) -> dict[str, StepState]:
    """The parent's final step states, from its status."""
    out = {}
    for wire in (body.get("status") or {}).get("steps") or []:
        try:
            step = StepState.from_wire(wire)
        except (KeyError, TypeError, ValueError):
            continue
        out[step.step_id] = step
    return out


def result_configmap_of(ref: ExecutionRef, step_id: str, attempt: int) -> str:
    """The result ConfigMap of `step_id`'s attempt in execution `ref`."""
    return names.result_configmap(names.job_name(ref.name, ref.uid, step_id, attempt))


def selection_of(plan: Plan, request: ExecutionRequest, body: Mapping[str, Any]) -> Selection:
    """`select` over the parent's outcomes (RerunRefused when the options cannot be met)."""
    statuses = {sid: s.status for sid, s in parent_steps(body).items()}
    return select(plan, statuses, rerun_from=request.rerun_from, only=request.only)


def reused_reads(
    plan: Plan, request: ExecutionRequest, body: Mapping[str, Any]
) -> dict[str, str] | Refusal:
    """Step id → the parent's result ConfigMap to read, for every step the re-run reuses."""
    try:
        selection = selection_of(plan, request, body)
    except RerunRefused as refused:
        return _refusal(refused)
    steps = parent_steps(body)
    ref = parent_ref(body)
    return {sid: result_configmap_of(ref, sid, steps[sid].attempt) for sid in selection.reused}


@dataclass(frozen=True, slots=True)
class RerunStart:
    """The re-run's PENDING state and the result ConfigMaps it gets from its parent."""

    state: ExecutionState
    configmaps: tuple[dict[str, Any], ...]


def prepare(
    pinned: Pinned,
    request: ExecutionRequest,
    ref: ExecutionRef,
    spec: Mapping[str, Any],
    parent: ParentFacts,
    now: datetime,
) -> RerunStart | Refusal:
    """Everything checked, the re-run's start (or why it is refused). `request` is the spec's
    (with the re-run options), `pinned` what was pinned from it."""
    plan = pinned.plan
    try:
        selection = selection_of(plan, request, parent.body)
    except RerunRefused as refused:
        return _refusal(refused)
    unreadable = [
        Problem(f"steps.{sid}", why)
        for sid in selection.reused
        if isinstance(why := parent.results.get(sid, "the parent's result is missing"), str)
    ]
    if unreadable:
        return Refusal("OutputTampered", tuple(unreadable))
    read = {sid: r for sid, r in parent.results.items() if isinstance(r, StepExecutorResult)}
    outputs = {sid: dict(read[sid].output) for sid in selection.reused}
    problems = output_problems(selection.reused, outputs, recorded_output_hashes(parent.entries))
    if problems:
        return Refusal("OutputTampered", tuple(problems))
    status = parent.body.get("status") or {}
    pref = parent_ref(parent.body)
    steps = parent_steps(parent.body)
    order = [s["stepId"] for s in status.get("steps") or [] if isinstance(s, Mapping)]
    kpi_steps = {
        k: order[v]
        for k, v in (status.get("kpiSources") or {}).items()
        if isinstance(v, int) and 0 <= v < len(order)
    }
    artifacts = {
        sid: {
            "evidence": [e.wire() for e in read[sid].evidence],
            "citations": [c.wire() for c in read[sid].citations],
        }
        for sid in selection.reused
        if read[sid].evidence or read[sid].citations
    }
    record = ParentRecord(
        pref.execution_id,
        steps,
        outputs,
        artifacts,
        dict(status.get("kpis") or {}),
        kpi_steps,
    )
    audit = status.get("audit") or {}
    link = RerunLink(
        parent_execution_id=record.execution_id,
        parent_head=str(parent.entries[-1]["hash"]) if parent.entries else "",
        parent_count=len(parent.entries),
        parent_checkpoint=audit.get("checkpoint"),
        input_source="given" if "input" in spec else "parent",
        definition="latest" if request.latest else "pinned",
        selection=selection,
        rerun_from=tuple(request.rerun_from),
        only=tuple(request.only),
        parent_name=pref.name,
        extra={"uid": pref.uid},
    )
    state = rerun_execution(plan, ref.execution_id, now, record, link)
    copies = []
    for sid in selection.reused:
        raw, sha = results.encode(read[sid])
        attempt = state.steps[sid].attempt
        labels = names.labels(ref.name, ref.uid, "result", step_id=sid, attempt=attempt)
        copies.append(
            results.configmap(
                result_configmap_of(ref, sid, attempt),
                raw,
                sha,
                labels,
                ref.owner(controller=False),
            )
        )
    return RerunStart(state, tuple(copies))


def is_fresh(state: ExecutionState, status: Mapping[str, Any]) -> bool:
    """The re-run has not started: no step status written yet."""
    return not status.get("steps") and all(
        s.status is StepStatus.PENDING for s in state.steps.values()
    )
