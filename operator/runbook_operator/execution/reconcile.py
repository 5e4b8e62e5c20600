"""One reconcile step of a RunbookExecution (pure: no kopf, no API calls).

The shell (`controller`) fetches the world — the execution, its pinned definition, its ledger,
its Jobs and pods, the results they point to — and carries out the `Effects` in a crash-safe
order: ledger entries, result ConfigMaps, Jobs, status. Every effect is idempotent (entries
dedupe on logId, children have deterministic names), so a step replayed after a crash or a
lost write converges to the same place.
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
from runbook_operator.execution.status import execution_status
from runbook_operator.steps import results
from runbook_operator.steps.jobs import AttemptJob, ExecutionRef, job_manifest
from runbook_operator.steps.observe import Failed, Reported, Running, classify, index_by_attempt


@dataclass(frozen=True, slots=True)
class Pinned:
    """The definition and request pinned at start (from the definition ConfigMap)."""

    plan: Plan
    request: ExecutionRequest
    definition_hash: str
    configmap: str


@dataclass(frozen=True, slots=True)
class World:
    """Everything one reconcile step looks at."""

    ref: ExecutionRef
    body: Mapping[str, Any]
    pinned: Pinned
    chain: AuditChain
    jobs: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    reads: Mapping[str, StepExecutorResult | str]
    """Job name → the result read from its ConfigMap, or why it could not be trusted."""
    now: datetime
    control: str | None = None
    """Who asked for the control change, when the shell knows better than managedFields."""


@dataclass(frozen=True, slots=True)
class KubeEvent:
    type: str
    reason: str
    message: str
    key: str
    """The audit logId it reports: the Event's name derives from it (replays post nothing)."""


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
    new_entries_for_metrics: tuple[dict[str, Any], ...] = field(default=())

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


def control_actor(body: Mapping[str, Any]) -> str | None:
    """Who last set spec.paused/spec.cancel, from managedFields (the field manager's name)."""
    latest: tuple[str, str] | None = None
    for entry in body.get("metadata", {}).get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:paused" in spec or "f:cancel" in spec:
            stamp = str(entry.get("time") or "")
            if latest is None or stamp >= latest[0]:
                latest = (stamp, str(entry.get("manager") or ""))
    return latest[1] if latest and latest[1] else None


# -- observing attempts ------------------------------------------------------------------------
def _by_attempt(world: World) -> tuple[dict[tuple[str, int], list[Mapping[str, Any]]], ...]:
    jobs = index_by_attempt(world.jobs, names.STEP_LABEL, names.ATTEMPT_LABEL)
    pods = index_by_attempt(world.pods, names.STEP_LABEL, names.ATTEMPT_LABEL)
    return jobs, pods


def _first(items: list[Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    return items[0] if items else None


def _running(state: ExecutionState) -> list[tuple[str, int]]:
    return [(sid, state.steps[sid].attempt) for sid in state.order if sid in state.running]


def wanted_reads(
    state: ExecutionState,
    jobs: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    ref: ExecutionRef,
) -> list[tuple[str, results.Pointer]]:
    """Result ConfigMaps to fetch: those that running attempts' pods point to."""
    by_job = index_by_attempt(jobs, names.STEP_LABEL, names.ATTEMPT_LABEL)
    by_pod = index_by_attempt(pods, names.STEP_LABEL, names.ATTEMPT_LABEL)
    out = []
    for sid, attempt in _running(state):
        key = (names.label_value(sid), attempt)
        outcome = classify(_first(by_job.get(key)), by_pod.get(key, []))
        if isinstance(outcome, Reported) and outcome.pointer is not None:
            out.append((names.job_name(ref.name, ref.uid, sid, attempt), outcome.pointer))
    return out


def observe(
    world: World, state: ExecutionState
) -> tuple[list[Observation], list[str], list[dict[str, Any]]]:
    """Observations for the scheduler, Jobs to delete, inline results to store."""
    jobs, pods = _by_attempt(world)
    observations: list[Observation] = []
    deletes: list[str] = []
    stores: list[dict[str, Any]] = []
    for sid, attempt in _running(state):
        key = (names.label_value(sid), attempt)
        job = _first(jobs.get(key))
        name = names.job_name(world.ref.name, world.ref.uid, sid, attempt)
        outcome = classify(job, pods.get(key, []))
        if isinstance(outcome, Running):
            continue
        if isinstance(outcome, Failed):
            observations.append(AttemptLost(sid, attempt, outcome.reason))
            if outcome.delete_job:
                deletes.append(name)
            continue
        if outcome.inline is not None:
            stores.append(_inline_configmap(world, sid, attempt, name, outcome.inline))
            observations.append(AttemptFinished(sid, attempt, outcome.inline))
            continue
        read = world.reads.get(name)
        if isinstance(read, StepExecutorResult):
            observations.append(AttemptFinished(sid, attempt, read))
        else:
            observations.append(AttemptLost(sid, attempt, read or "result ConfigMap not found"))
    return observations, deletes, stores


def _inline_configmap(
    world: World, sid: str, attempt: int, job: str, result: StepExecutorResult
) -> dict[str, Any]:
    raw, sha = results.encode(result)
    labels = names.labels(world.ref.name, world.ref.uid, "result", step_id=sid, attempt=attempt)
    owner = world.ref.owner(controller=False)
    return results.configmap(names.result_configmap(job), raw, sha, labels, owner)


def leftover_jobs(world: World, state: ExecutionState) -> list[str]:
    """Jobs still working after the execution ended (e.g. created by a write that was lost).

    While it runs, an unknown Job is left alone: the scheduler will start that attempt again
    and adopt it (same name) instead of creating a second one.
    """
    if not state.status.terminal:
        return []
    _, pods = _by_attempt(world)
    out = []
    for job in world.jobs:
        labels = job.get("metadata", {}).get("labels") or {}
        key = (str(labels.get(names.STEP_LABEL, "")), int(labels.get(names.ATTEMPT_LABEL, 0) or 0))
        if job["metadata"].get("deletionTimestamp"):
            continue
        if isinstance(classify(job, pods.get(key, [])), Running):
            out.append(str(job["metadata"]["name"]))
    return out


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


_EVENT_KINDS: Mapping[str, tuple[str, str]] = {
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
}
"""Audit event type → Kubernetes Event (type, reason); other events post nothing."""


def _describe(entry: Mapping[str, Any]) -> str:
    details = entry.get("details") or {}
    step = f"step {entry['stepId']}: " if entry.get("stepId") else ""
    text = details.get("error") or details.get("message") or details.get("reason") or ""
    if entry["eventType"] == LogEventType.EXECUTION_STARTED:
        text = f"runbook {details.get('runbookId')} with {details.get('stepCount')} steps"
    return f"{step}{text}".strip() or str(entry["eventType"])


def kube_events(entries: Sequence[Mapping[str, Any]]) -> tuple[KubeEvent, ...]:
    out = []
    for entry in entries:
        kind = _EVENT_KINDS.get(entry["eventType"])
        if kind is not None:
            out.append(KubeEvent(kind[0], kind[1], _describe(entry), str(entry["logId"])))
    return tuple(out)


def failure_reason(state: ExecutionState, chain: AuditChain) -> str | None:
    if state.status is not ExecutionStatus.FAILED:
        return None
    rejected = any(e["eventType"] == LogEventType.EXECUTION_REJECTED for e in chain.entries[-5:])
    return "Rejected" if rejected else "StepFailed"


def reconcile(world: World, state: ExecutionState, cfg: OperatorConfig) -> Effects:
    """Observe → drive → effects. `state` comes from `load_state`."""
    observations, deletes, stores = observe(world, state)
    request = world.pinned.request.model_copy(
        update={
            "paused": bool(world.body.get("spec", {}).get("paused", False)),
            "cancel": bool(world.body.get("spec", {}).get("cancel", False)),
        }
    )
    actors = Actors(cfg.actor, request.started_by, world.control or control_actor(world.body))
    step = drive(world.pinned.plan, request, state, world.chain, observations, world.now, actors)
    new = step.state
    creates = [
        _job_for(world, new, a, cfg) for a in step.decision.actions if isinstance(a, StartAttempt)
    ]
    stops = [
        names.job_name(world.ref.name, world.ref.uid, a.step_id, a.attempt)
        for a in step.decision.actions
        if isinstance(a, StopAttempt)
    ]
    meta = world.body.get("metadata", {})
    status = execution_status(
        new,
        world.chain,
        execution=world.ref.name,
        uid=world.ref.uid,
        generation=meta.get("generation"),
        now=world.now,
        previous=world.body.get("status") or {},
        extra={
            "definitionHash": world.pinned.definition_hash,
            "definitionRef": world.pinned.configmap,
        },
        failure_reason=failure_reason(new, world.chain),
    )
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
        new_entries_for_metrics=step.entries,
    )
