"""One reconcile step of a RunbookExecution (pure: no kopf, no API calls).

The shell (`controller`) fetches the world — the execution, its pinned definition, its ledger,
its Jobs and pods, the results they point to — and carries out the `Effects` in a crash-safe
order: result ConfigMaps, then Jobs and ledger entries side by side (Events right after the
ledger), then Job deletions, the checkpoint of a finished execution, and the status last
(`Controller._apply`). Every effect is idempotent (entries dedupe on logId, children have
deterministic names), so a step replayed after a crash or a lost write converges to the same
place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook_engine.audit import AuditChain
from runbook_engine.context import context_sources
from runbook_engine.contract import StepExecutorResult
from runbook_engine.driver import Actors, drive
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.limits import effective_output_limit
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan
from runbook_engine.scheduler import (
    AttemptFinished,
    AttemptLost,
    Observation,
    StartAttempt,
    StopAttempt,
    new_execution,
    reindex,
)
from runbook_engine.state import ExecutionState
from runbook_operator import names
from runbook_operator.config import OperatorConfig
from runbook_operator.crd.conditions import condition
from runbook_operator.execution import approvals, control
from runbook_operator.execution.events import KubeEvent, kube_events
from runbook_operator.execution.pinning import Pinned
from runbook_operator.execution.status import execution_status
from runbook_operator.execution.view import ExecutionView
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import image_policy, results
from runbook_operator.steps.jobs import AttemptJob, job_manifest
from runbook_operator.steps.observe import Failed, Observed, Reported, Running


@dataclass(frozen=True, slots=True)
class World:
    """Everything one reconcile step looks at."""

    view: ExecutionView
    pinned: Pinned
    chain: AuditChain
    observed: Observed
    """The execution's Jobs and pods, classified once (steps.observe.observe_children)."""
    reads: Mapping[str, StepExecutorResult | str]
    """Job name → the result read from its ConfigMap, or why it could not be trusted (for an
    inline result: why a ConfigMap already under its name is not the one to write)."""
    now: datetime
    deleting: bool = False
    """The finalizer runs this reconcile: the execution is cancelled by its deletion."""
    start_budget: int | None = None
    """At most this many new attempts may start (the free share of the namespace's cap on
    running step Jobs, execution/job_cap.py); None: no cap."""
    approvals: tuple[approvals.Received, ...] = ()
    """The RunbookApprovals naming this execution (read only when its runbook has a gate)."""
    authorized: Mapping[str, bool] = field(default_factory=dict)
    """RunbookApproval name → may its user `approve` this execution (SubjectAccessReview)."""

    @property
    def ref(self) -> ExecutionRef:
        return self.view.ref


@dataclass(frozen=True, slots=True)
class Effects:
    entries: tuple[dict[str, Any], ...]
    result_configmaps: tuple[dict[str, Any], ...]
    create_jobs: tuple[dict[str, Any], ...]
    delete_jobs: tuple[str, ...]
    status: dict[str, Any]
    events: tuple[KubeEvent, ...]
    next_wakeup: datetime | None
    state: ExecutionState
    held: bool = False
    """Steps were ready but the namespace's cap let none (or not all) of them start."""
    notices: tuple[KubeEvent, ...] = ()
    """Events that report no audit entry (waiting for the namespace's cap)."""
    approval_verdicts: tuple[tuple[str, dict[str, Any]], ...] = ()
    """(RunbookApproval name, status) to write: each gets its verdict once."""

    @property
    def terminal(self) -> bool:
        return self.state.status.terminal


# -- reading the status back -------------------------------------------------------------------
def load_state(
    plan: Plan, status: Mapping[str, Any], execution_id: str, now: datetime
) -> ExecutionState:
    """The engine state the operator wrote last time (a new one before the first write)."""
    if not status.get("steps") or not status.get("phase"):
        return new_execution(plan, execution_id, now)
    return reindex(plan, ExecutionState.from_wire({**status, "executionId": execution_id}))


# -- observing attempts ------------------------------------------------------------------------
def _running(state: ExecutionState) -> list[tuple[str, int]]:
    return [(sid, state.steps[sid].attempt) for sid in state.order if sid in state.running]


def output_limit(world: World, cfg: OperatorConfig) -> int:
    """The output limit of this execution's attempts (the runbook's, capped by the operator)."""
    return effective_output_limit(
        world.pinned.plan.definition.max_output_bytes, cfg.max_output_bytes
    )


@dataclass(frozen=True, slots=True)
class ResultRead:
    """A result ConfigMap the controller fetches before a reconcile decides."""

    job: str
    pointer: results.Pointer
    """What the ConfigMap must hold: the pod's pointer, or the inline result's own."""
    inline: bool = False
    """The operator is about to store this inline result: no ConfigMap yet is fine, one with
    other content (someone else's, made first) fails the attempt."""


def wanted_reads(state: ExecutionState, observed: Observed, ref: ExecutionRef) -> list[ResultRead]:
    """Result ConfigMaps to fetch: those that running attempts' pods point to, when the pointer
    names that attempt's own ConfigMap (any other name is refused unread by `observe`), and
    those the operator will write for inline results (to compare what may be there already)."""
    out = []
    for sid, attempt in _running(state):
        job = names.job_name(ref.name, ref.uid, sid, attempt)
        outcome = observed.outcome(job)
        if not isinstance(outcome, Reported):
            continue
        if outcome.inline is not None:
            raw, sha = results.encode(outcome.inline)
            pointer = results.Pointer(names.result_configmap(job), sha, len(raw))
            out.append(ResultRead(job, pointer, inline=True))
        elif outcome.pointer is not None and outcome.pointer.configmap == names.result_configmap(
            job
        ):
            out.append(ResultRead(job, outcome.pointer))
    return out


def observe(
    world: World, state: ExecutionState, cfg: OperatorConfig
) -> tuple[list[Observation], list[str], list[dict[str, Any]]]:
    """Observations for the scheduler, Jobs to delete, inline results to store."""
    observations: list[Observation] = []
    deletes: list[str] = []
    stores: list[dict[str, Any]] = []
    limit = output_limit(world, cfg)
    gates = approvals.gates(world.pinned.plan)
    for sid, attempt in _running(state):
        if sid in gates:  # waits for decisions, not a Job (approvals.observations)
            continue
        name = names.job_name(world.ref.name, world.ref.uid, sid, attempt)
        outcome = world.observed.outcome(name)
        if isinstance(outcome, Running):
            continue
        where = world.observed.ran_on.get(name) or None
        if isinstance(outcome, Failed):
            reason = (
                _refused_image(world, sid, cfg) if name not in world.observed.outcomes else None
            )
            observations.append(AttemptLost(sid, attempt, reason or outcome.reason, where))
            if outcome.delete_job:
                deletes.append(name)
            continue
        read = world.reads.get(name)
        if outcome.inline is not None:
            if isinstance(read, str):  # someone else's ConfigMap under the result's name
                observations.append(AttemptLost(sid, attempt, read, where))
                continue
            stores.append(_inline_configmap(world, sid, attempt, name, outcome.inline))
            observations.append(AttemptFinished(sid, attempt, outcome.inline, where))
            continue
        assert outcome.pointer is not None
        refused = results.check_pointer(outcome.pointer, name, limit)
        if refused is not None:
            observations.append(AttemptLost(sid, attempt, refused, where))
        elif isinstance(read, StepExecutorResult):
            observations.append(AttemptFinished(sid, attempt, read, where))
        else:
            reason = read or "result ConfigMap not found"
            observations.append(AttemptLost(sid, attempt, reason, where))
    return observations, deletes, stores


def _refused_image(world: World, sid: str, cfg: OperatorConfig) -> str | None:
    """Why the image policy kept an attempt's Job from being created (no Job, and its image is
    refused: a policy tightened after the execution was pinned), instead of "Job deleted"."""
    container = world.pinned.plan.steps[sid].container
    image = container.image if container and container.image else cfg.executor_image
    why = image_policy.image_problem(image, cfg.image_policy)
    return f"not started: {why}" if why else None


def _inline_configmap(
    world: World, sid: str, attempt: int, job: str, result: StepExecutorResult
) -> dict[str, Any]:
    raw, sha = results.encode(result)
    labels = names.labels(world.ref.name, world.ref.uid, "result", step_id=sid, attempt=attempt)
    owner = world.ref.owner(controller=False)
    return results.configmap(names.result_configmap(job), raw, sha, labels, owner)


def _approval_results(
    world: World, entries: Sequence[Mapping[str, Any]], state: ExecutionState
) -> list[dict[str, Any]]:
    """An APPROVAL step that succeeded has an output (the decisions) but no Job: it is stored
    in the result ConfigMap its attempt would have had, so dependents' Jobs mount it as any
    other upstream output (and `runbookctl output` reads it). Deterministic: a replay writes
    the same ConfigMap."""
    out = []
    for entry in entries:
        sid = entry.get("stepId")
        if entry["eventType"] != LogEventType.STEP_SUCCEEDED or sid not in approvals.gates(
            world.pinned.plan
        ):
            continue
        attempt = state.steps[sid].attempt
        job = names.job_name(world.ref.name, world.ref.uid, sid, attempt)
        result = StepExecutorResult(success=True, output=dict(state.outputs[sid]))
        out.append(_inline_configmap(world, sid, attempt, job, result))
    return out


def leftover_jobs(world: World, state: ExecutionState) -> list[str]:
    """Jobs still working after the execution ended (e.g. created by a write that was lost).

    While it runs, an unknown Job is left alone: the scheduler will start that attempt again
    and adopt it (same name) instead of creating a second one.
    """
    return list(world.observed.still_running) if state.status.terminal else []


# -- acting ------------------------------------------------------------------------------------
def _job_for(
    world: World, state: ExecutionState, start: StartAttempt, cfg: OperatorConfig
) -> dict[str, Any]:
    plan, ref = world.pinned.plan, world.ref
    upstream = [
        (
            sid,
            names.result_configmap(
                names.job_name(ref.name, ref.uid, sid, state.steps[sid].attempt)
            ),
        )
        for sid in context_sources(plan, start.step_id)
        if state.steps[sid].status is StepStatus.SUCCEEDED
    ]
    job = AttemptJob(
        execution=ref,
        step=plan.steps[start.step_id],
        attempt=start.attempt,
        definition_configmap=world.pinned.configmap,
        upstream=upstream,
        max_output_bytes=effective_output_limit(
            plan.definition.max_output_bytes, cfg.max_output_bytes
        ),
        files_configmap=plan.definition.files_config_map,
    )
    return job_manifest(job, cfg)


def failure_reason(state: ExecutionState, chain: AuditChain) -> str | None:
    if state.status is not ExecutionStatus.FAILED:
        return None
    rejected = any(e["eventType"] == LogEventType.EXECUTION_REJECTED for e in chain.entries[-5:])
    return "Rejected" if rejected else "StepFailed"


# -- the namespace's cap ----------------------------------------------------------------------
THROTTLED = "Throttled"
"""Condition type (and Event reason) of an execution whose ready steps wait for the namespace's
cap on running step Jobs."""
CAP_REASON = "NamespaceJobCap"


def capped_request(
    request: ExecutionRequest,
    plan: Plan,
    state: ExecutionState,
    observations: Sequence[Observation],
    budget: int | None,
) -> ExecutionRequest:
    """`request` with maxParallelSteps lowered so that at most `budget` new attempts start: the
    attempts that stay running after this reconcile's observations, plus the budget. (An attempt
    the engine finds timed out in this reconcile is stopped in it, so its slot may be re-used
    a moment before its Job is gone.)"""
    if budget is None:
        return request
    limit = request.max_parallel_steps or plan.definition.max_parallel_steps
    ended = sum(1 for o in observations if isinstance(o, AttemptFinished | AttemptLost))
    capped = max(0, len(state.running) - ended) + budget
    if capped >= limit:
        return request
    return request.model_copy(update={"max_parallel_steps": capped})


def waiting_for_cap(
    request: ExecutionRequest, capped: ExecutionRequest, new: ExecutionState, now: datetime
) -> int:
    """How many steps could start now but did not, because the cap lowered the limit."""
    if capped is request or new.status is not ExecutionStatus.RUNNING:
        return 0
    if len(new.running) < (capped.max_parallel_steps or 0):
        return 0
    return sum(
        1 for sid in new.ready if (at := new.steps[sid].next_attempt_at) is None or at <= now
    )


def _throttled(
    world: World, new: ExecutionState, status: dict[str, Any], waiting: int, cfg: OperatorConfig
) -> tuple[dict[str, Any], tuple[KubeEvent, ...]]:
    """The status with a Throttled condition, and an Event when the wait begins."""
    ns = world.ref.namespace
    message = (
        f"{waiting} ready step(s) wait for namespace {ns}'s cap of "
        f"{cfg.max_running_jobs_per_namespace} running step Jobs; they start as Jobs there end"
    )
    previous = world.view.status.get("conditions") or ()
    throttled = condition(
        THROTTLED, "True", CAP_REASON, message, world.view.generation, world.now, previous
    )
    status = {**status, "conditions": [*status.get("conditions", []), throttled]}
    began = not any(c.get("type") == THROTTLED and c.get("status") == "True" for c in previous)
    # Named after the attempts started so far: a replay of the same transition (a Conflict, a
    # crash before the status) posts no second Event; the next wait, after more starts, does.
    started = sum(s.attempt for s in new.steps.values())
    key = f"{world.ref.uid}/{THROTTLED}/{started}"
    events = (KubeEvent("Normal", THROTTLED, message, key),) if began else ()
    return status, events


def reconcile(world: World, state: ExecutionState, cfg: OperatorConfig) -> Effects:
    """Observe → drive → effects. `state` comes from `load_state`."""
    observations, deletes, stores = observe(world, state, cfg)
    view = world.view
    creator = view.stamps.creator
    plan = world.pinned.plan
    observations += approvals.observations(
        plan,
        state,
        world.approvals,
        world.chain,
        world.authorized,
        creator.username if creator else None,
        world.ref.name,
    )
    request = control.requested(world.pinned.request, view, deleting=world.deleting)
    capped = capped_request(request, plan, state, observations, world.start_budget)
    actors = Actors(
        cfg.actor,
        request.started_by,
        control.actor(view, deleting=world.deleting),
        requester=view.stamps.creator,
        controller=view.stamps.controller,
        trigger=view.stamps.trigger,
    )
    step = drive(plan, capped, state, world.chain, observations, world.now, actors)
    new = step.state
    creates = [
        _job_for(world, new, a, cfg) for a in step.decision.actions if isinstance(a, StartAttempt)
    ]
    stops = [
        names.job_name(world.ref.name, world.ref.uid, a.step_id, a.attempt)
        for a in step.decision.actions
        if isinstance(a, StopAttempt)
    ]
    status = execution_status(
        new,
        world.chain,
        ref=world.ref,
        generation=view.generation,
        now=world.now,
        previous=view.status,
        extra={
            "definitionHash": world.pinned.definition_hash,
            "definitionRef": world.pinned.configmap,
        },
        failure_reason=failure_reason(new, world.chain),
    )
    waiting = waiting_for_cap(request, capped, new, world.now)
    notices: tuple[KubeEvent, ...] = ()
    if waiting:
        status, notices = _throttled(world, new, status, waiting, cfg)
    stores += _approval_results(world, step.entries, new)
    awaiting_approval = approvals.awaiting(plan, new)
    if awaiting_approval or view.status.get("awaitingApproval"):
        status["awaitingApproval"] = awaiting_approval  # None removes it (a merge patch)
    all_deletes = sorted({*deletes, *stops, *leftover_jobs(world, new)})
    return Effects(
        entries=step.entries,
        result_configmaps=tuple(stores),
        create_jobs=tuple(creates),
        delete_jobs=tuple(all_deletes),
        status=status,
        events=kube_events(step.entries),
        next_wakeup=step.decision.next_wakeup,
        state=new,
        held=bool(waiting),
        notices=notices,
        approval_verdicts=tuple(
            approvals.verdicts(plan, new, world.approvals, world.chain, world.now)
        ),
    )
