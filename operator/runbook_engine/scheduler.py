"""The pure scheduler: (plan, request, state, observations, now) → (new state, actions, events).

Shared by the local runner and the operator. It never performs I/O and never mutates its inputs;
the caller carries out `actions` (start/stop attempts), appends `events` to the audit chain and
calls again when an attempt ends, the request changes, or `next_wakeup` passes.

Work per call is proportional to what changed (observations, released dependents, free slots),
not to the size of the runbook; only `reindex` (after loading state from the wire) is O(steps).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from immutables import Map, MapMutation

from runbook_engine import approval
from runbook_engine.audit import AuditEvent
from runbook_engine.canonical import canonical_json, canonical_sha256
from runbook_engine.contract import StepExecutorResult
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.kpis import merge_step_kpis
from runbook_engine.limits import clip_message, output_too_large
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan, legal_problems
from runbook_engine.problems import Problem
from runbook_engine.state import ExecutionState, StepState
from runbook_engine.timeutil import format_time

# --- observations (what happened) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """An attempt ended with a result (success or failure)."""

    step_id: str
    attempt: int
    result: StepExecutorResult
    ran_on: Mapping[str, str] | None = None
    """Where the shell ran it (image, image digest, node): recorded as the attempt's `ranOn`."""


@dataclass(frozen=True, slots=True)
class AttemptLost:
    """An attempt's worker vanished without a result (process killed, Job deleted, pod evicted)."""

    step_id: str
    attempt: int
    reason: str
    ran_on: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ApprovalObserved:
    """Every decision a shell holds for a waiting APPROVAL step, in `approval.in_order` order
    (the scheduler re-evaluates them all; the ledger deduplicates what it recorded before)."""

    step_id: str
    attempt: int
    decisions: tuple[approval.ApprovalDecision, ...]
    requester: str | None
    """The authenticated creator of the execution (excluded unless allowRequester)."""
    execution: str = "this execution"
    ran_on: Mapping[str, str] | None = None


Observation = AttemptFinished | AttemptLost | ApprovalObserved

# --- actions (what the shell must do) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartAttempt:
    step_id: str
    attempt: int
    timeout_ms: int
    deadline: datetime


@dataclass(frozen=True, slots=True)
class StopAttempt:
    step_id: str
    attempt: int
    reason: str
    """``timeout`` or ``cancelled``."""


@dataclass(frozen=True, slots=True)
class AwaitApproval:
    """An APPROVAL step started waiting: the shell asks for decisions (no Job, no process)
    and reports them with `ApprovalObserved` until the step ends or `deadline` passes."""

    step_id: str
    attempt: int
    deadline: datetime


Action = StartAttempt | StopAttempt | AwaitApproval


@dataclass(frozen=True, slots=True)
class Decision:
    state: ExecutionState
    actions: tuple[Action, ...]
    events: tuple[AuditEvent, ...]
    next_wakeup: datetime | None
    warnings: tuple[str, ...] = ()


# --- construction -----------------------------------------------------------------------------


def new_execution(plan: Plan, execution_id: str, now: datetime) -> ExecutionState:
    """A PENDING execution with every step PENDING."""
    state = ExecutionState(
        execution_id=execution_id,
        runbook_id=plan.definition.id,
        status=ExecutionStatus.PENDING,
        steps=Map({sid: StepState(step_id=sid) for sid in plan.order}),
        order=plan.order,
        created_at=now,
    )
    return reindex(plan, state)


def is_done_for_dependents(step: StepState) -> bool:
    """Dependents may start after SUCCEEDED, or after SKIPPED by the step's own skipOnFailure."""
    return step.status is StepStatus.SUCCEEDED or (
        step.status is StepStatus.SKIPPED and step.blocked_by is None
    )


def reindex(plan: Plan, state: ExecutionState) -> ExecutionState:
    """Rebuild the derived indexes from step statuses (after loading state from the wire)."""
    remaining: dict[str, int] = {}
    ready: list[str] = []
    running: set[str] = set()
    waiting: set[str] = set()
    unfinished = failed = 0
    for sid in plan.order:
        step = state.steps[sid]
        if step.status is StepStatus.FAILED:
            failed += 1
        if step.status is StepStatus.RUNNING:
            running.add(sid)
            unfinished += 1
        elif step.status is StepStatus.PENDING:
            unfinished += 1
            left = sum(
                1 for d in plan.dependencies[sid] if not is_done_for_dependents(state.steps[d])
            )
            remaining[sid] = left
            if left == 0:
                ready.append(sid)
                if step.next_attempt_at is not None:
                    waiting.add(sid)
    return state.evolve(
        steps=Map(state.steps),
        outputs=Map(state.outputs),
        artifacts=Map(state.artifacts),
        order=plan.order,
        ready=tuple(ready),
        remaining=Map(remaining),
        running=frozenset(running),
        retry_waiting=frozenset(waiting),
        unfinished=unfinished,
        failed=failed,
    )


# --- the transition ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GivenUp:
    """How a step that ran out of attempts ends, and how the audit log says so."""

    status: StepStatus
    event: LogEventType
    key: str
    note: str
    details: Mapping[str, str]


_FAILED = _GivenUp(StepStatus.FAILED, LogEventType.STEP_FAILED, "failed", "", {})
_SKIPPED_ON_FAILURE = _GivenUp(
    StepStatus.SKIPPED,
    LogEventType.STEP_SKIPPED,
    "skipped",
    "; skipped (skipOnFailure)",
    {"reason": "skipOnFailure"},
)


class _Transition:
    """Copy-on-write working set for one `schedule` call."""

    def __init__(self, plan: Plan, request: ExecutionRequest, state: ExecutionState, now: datetime):
        self.plan = plan
        self.request = request
        self.old = state
        self.now = now
        self.status = state.status
        self.steps: MapMutation[str, StepState] | None = None
        self.remaining: MapMutation[str, int] | None = None
        self.outputs: MapMutation[str, Mapping[str, Any]] | None = None
        self.kpis: dict[str, Any] | None = None
        self.kpi_sources: dict[str, int] | None = None
        self.ready = list(state.ready)
        self.running = set(state.running)
        self.waiting = set(state.retry_waiting)
        self.unfinished = state.unfinished
        self.failed = state.failed
        self.changes: dict[str, Any] = {}
        self.actions: list[Action] = []
        self.events: list[AuditEvent] = []
        self.warnings: list[str] = []
        self.evaluations: dict[str, approval.Evaluation] = {}
        """APPROVAL step → the evaluation of this call's decisions (its output at a timeout)."""

    # reads
    def step(self, sid: str) -> StepState:
        return (self.steps if self.steps is not None else self.old.steps)[sid]

    # writes
    def put(self, step: StepState) -> None:
        if self.steps is None:
            self.steps = self.old.steps.mutate()
        self.steps[step.step_id] = step

    def emit(
        self, key: str, event_type: LogEventType, step_id: str | None = None, **details: Any
    ) -> None:
        self.events.append(AuditEvent(key, event_type, step_id, details))

    def set_status(self, status: ExecutionStatus, reason: str) -> None:
        if status is self.status:
            return
        old = self.status
        self.status = status
        self.emit(
            f"status/{old}->{status}/{self.old.pauses}/{self.old.resumes}",
            LogEventType.EXECUTION_STATUS_CHANGED,
            None,
            **{"from": str(old), "to": str(status), "reason": reason},
        )

    def build(self) -> ExecutionState:
        changes = dict(self.changes)
        changes.update(
            status=self.status,
            ready=tuple(self.ready),
            running=frozenset(self.running),
            retry_waiting=frozenset(self.waiting),
            unfinished=self.unfinished,
            failed=self.failed,
        )
        if self.steps is not None:
            changes["steps"] = self.steps.finish()
        if self.remaining is not None:
            changes["remaining"] = self.remaining.finish()
        if self.outputs is not None:
            changes["outputs"] = self.outputs.finish()
        if self.kpis is not None:
            changes["kpis"] = self.kpis
        if self.kpi_sources is not None:
            changes["kpi_sources"] = self.kpi_sources
        return self.old.evolve(**changes)

    # helpers
    def _remaining(self) -> MapMutation[str, int]:
        if self.remaining is None:
            self.remaining = self.old.remaining.mutate()
        return self.remaining

    def release_dependents(self, sid: str) -> None:
        """`sid` is done: dependents with no other pending dependency join the ready queue."""
        remaining = self._remaining()
        position = self.plan.position
        for child in self.plan.dependents[sid]:
            if child not in remaining:
                continue
            left = remaining[child] - 1
            remaining[child] = left
            if left == 0:
                bisect.insort(self.ready, child, key=position.__getitem__)

    def finish_step(self, step: StepState) -> None:
        """Bookkeeping for a step that reached a terminal status."""
        self.put(step)
        self.running.discard(step.step_id)
        self._remaining().pop(step.step_id, None)
        self.unfinished -= 1
        if step.status is StepStatus.FAILED:
            self.failed += 1

    def skip_descendants(self, sid: str, why: str) -> None:
        """Dependents of a FAILED (or dependency-skipped) step are SKIPPED, transitively."""
        stack = [(child, sid) for child in reversed(self.plan.dependents[sid])]
        while stack:
            child, parent = stack.pop()
            current = self.step(child)
            if current.status is not StepStatus.PENDING:
                continue
            reason = f"dependency {parent!r} {why if parent == sid else 'was skipped'}"
            if child in self.ready:
                self.ready.remove(child)
            self.waiting.discard(child)
            self.finish_step(
                current.with_outcome(
                    StepStatus.SKIPPED, self.now, message=f"skipped: {reason}", blocked_by=parent
                )
            )
            self.emit(
                f"step/{child}/skipped",
                LogEventType.STEP_SKIPPED,
                child,
                reason=reason,
                blockedBy=parent,
            )
            stack.extend(
                (grandchild, child) for grandchild in reversed(self.plan.dependents[child])
            )

    def attempt_failed(self, current: StepState, error: str, *, retryable: bool = True) -> None:
        """Retry with backoff if attempts remain and the failure may change on another attempt;
        else give up on the step."""
        spec = self.plan.steps[current.step_id]
        self.running.discard(current.step_id)
        attempts_left = current.attempt < spec.max_attempts
        if attempts_left and not retryable:
            error = f"{error} (not retryable)"
        if attempts_left and retryable:
            self.retry_later(current, error)
        else:
            self.give_up(current, error)

    def retry_later(self, current: StepState, error: str) -> None:
        """PENDING again, ready, and waiting for the retry policy's backoff."""
        sid = current.step_id
        spec = self.plan.steps[sid]
        assert spec.retry_policy is not None  # max_attempts > 1 implies a policy
        delay = spec.retry_policy.delay_after(current.attempt)
        retry_at = self.now + timedelta(seconds=delay)
        message = (
            f"attempt {current.attempt}/{spec.max_attempts} failed: {error}; retrying in {delay:g}s"
        )
        self.put(current.with_retry(retry_at, message))
        self._remaining()[sid] = 0
        bisect.insort(self.ready, sid, key=self.plan.position.__getitem__)
        self.waiting.add(sid)
        self.emit(
            f"step/{sid}/{current.attempt}/attempt-failed",
            LogEventType.STEP_ATTEMPT_FAILED,
            sid,
            attempt=current.attempt,
            maxAttempts=spec.max_attempts,
            error=error,
            retryAt=format_time(retry_at),
        )

    def give_up(self, current: StepState, error: str) -> None:
        """Out of attempts: FAILED and its dependents SKIPPED, or (skipOnFailure) SKIPPED and
        its dependents still run."""
        sid = current.step_id
        skip = self.plan.steps[sid].skip_on_failure
        end = _SKIPPED_ON_FAILURE if skip else _FAILED
        message = f"failed after {_attempts(current.attempt)}: {error}{end.note}"
        self.finish_step(current.with_outcome(end.status, self.now, message=message))
        details = {**end.details, "attempt": current.attempt, "error": error}
        self.emit(f"step/{sid}/{end.key}", end.event, sid, **details)
        if skip:
            self.release_dependents(sid)
        else:
            self.skip_descendants(sid, "failed")

    def succeeded(self, current: StepState, result: StepExecutorResult, output_hash: str) -> None:
        sid = current.step_id
        self.finish_step(
            current.with_outcome(StepStatus.SUCCEEDED, self.now, output_hash=output_hash)
        )
        if self.outputs is None:
            self.outputs = self.old.outputs.mutate()
        self.outputs[sid] = result.output
        if result.evidence or result.citations:
            self.changes["artifacts"] = self.changes.get("artifacts", self.old.artifacts).set(
                sid,
                {
                    "evidence": [e.wire() for e in result.evidence],
                    "citations": [c.wire() for c in result.citations],
                },
            )
        if result.kpis:
            if self.kpis is None:
                self.kpis = dict(self.old.kpis)
                self.kpi_sources = dict(self.old.kpi_sources)
            assert self.kpi_sources is not None
            merge_step_kpis(self.kpis, self.kpi_sources, self.plan.position[sid], result.kpis)
        started = current.attempt_started_at or self.now
        self.emit(
            f"step/{sid}/{current.attempt}/succeeded",
            LogEventType.STEP_SUCCEEDED,
            sid,
            attempt=current.attempt,
            durationMs=(self.now - started) // timedelta(milliseconds=1),
            outputHash=output_hash,
            kpis=dict(result.kpis),
            evidenceHashes=[e.hash for e in result.evidence],
        )
        self.release_dependents(sid)


def _attempts(n: int) -> str:
    return f"{n} attempt{'s' if n != 1 else ''}"


def _start(t: _Transition) -> None:
    """PENDING → RUNNING, or → FAILED when a legal gate refuses the request."""
    plan, request = t.plan, t.request
    problems = legal_problems(plan.definition, request.legal_basis, request.data_licenses)
    input_hash = ""
    try:
        input_hash = canonical_sha256(request.input)
    except (TypeError, ValueError) as exc:  # e.g. an int beyond 2^53: the audit cannot hash it
        problems.append(Problem("input", f"not canonical JSON (RFC 8785): {exc}"))
    if problems:
        _reject(t, problems)
        return
    definition = plan.definition
    t.emit(
        "started",
        LogEventType.EXECUTION_STARTED,
        None,
        runbookId=definition.id,
        runbookVersion=definition.version,
        definitionHash=canonical_sha256(definition.model_dump(mode="json", by_alias=True)),
        inputHash=input_hash,
        **request.provenance(),
        stepCount=len(plan.order),
        **_rerun_details(t.old),
    )
    _record_reused(t)
    t.set_status(ExecutionStatus.RUNNING, "started")
    t.changes.update(started_at=t.now, rerun=None)


def _rerun_details(state: ExecutionState) -> dict[str, Any]:
    """A re-run's first entry links its parent (runbook_engine.rerun.RerunLink.wire)."""
    return {"rerunOf": dict(state.rerun)} if state.rerun is not None else {}


def _record_reused(t: _Transition) -> None:
    """One STEP_REUSED entry per step a re-run took from its parent, in definition order."""
    if t.old.rerun is None:
        return
    for sid in t.plan.order:
        step = t.step(sid)
        if step.reused_from is not None:
            t.emit(
                f"step/{sid}/reused",
                LogEventType.STEP_REUSED,
                sid,
                fromExecution=step.reused_from,
                outputHash=step.output_hash,
            )


def _reject(t: _Transition, problems: list[Problem]) -> None:
    """The request is refused before any step runs: every step SKIPPED, the execution FAILED."""
    now = t.now
    text = "; ".join(str(p) for p in problems)
    asked = t.request.provenance()
    t.emit(
        "rejected",
        LogEventType.EXECUTION_REJECTED,
        None,
        problems=[{"field": p.field, "reason": p.reason} for p in problems],
        legalBasis=asked["legalBasis"],
        dataLicenses=asked["dataLicenses"],
        **_rerun_details(t.old),
    )
    for sid in t.plan.order:
        if t.step(sid).status.terminal:
            continue  # a re-run's reused or not-selected step: already ended
        t.finish_step(
            t.step(sid).with_outcome(
                StepStatus.SKIPPED,
                now,
                message="not run: execution rejected",
                blocked_by="<rejected>",
            )
        )
    t.ready.clear()
    t.waiting.clear()
    t.set_status(ExecutionStatus.FAILED, "rejected")
    t.changes.update(finished_at=now, message=f"rejected: {text}", rerun=None)
    t.emit("failed", LogEventType.EXECUTION_FAILED, None, reason="rejected", message=text)


def _apply(t: _Transition, observation: Observation) -> None:
    """Fold one observation in, and record where the attempt ran in the entries it caused."""
    first = len(t.events)
    _fold(t, observation)
    if observation.ran_on:
        ran_on = dict(observation.ran_on)
        for i in range(first, len(t.events)):
            event = t.events[i]
            if event.step_id == observation.step_id:
                t.events[i] = replace(event, details={**event.details, "ranOn": ran_on})


def _fold(t: _Transition, observation: Observation) -> None:
    """Fold one observation in; stale or duplicate ones (wrong attempt, not running) are ignored."""
    if observation.step_id not in t.plan.steps:
        t.warnings.append(f"observation for unknown step {observation.step_id!r} ignored")
        return
    current = t.step(observation.step_id)
    if current.status is not StepStatus.RUNNING or current.attempt != observation.attempt:
        return
    if isinstance(observation, ApprovalObserved):
        _decide(t, current, observation)
    elif isinstance(observation, AttemptLost):
        t.attempt_failed(current, clip_message(f"lost: {observation.reason}"))
    elif observation.result.success:
        # The audit hashes output and KPIs (RFC 8785): a result it cannot hash (NaN, an int
        # beyond 2^53) is a failed attempt, not an exception that would wedge the execution.
        try:
            output_json = canonical_json(observation.result.output)
            canonical_json(observation.result.kpis)
        except (TypeError, ValueError) as exc:
            t.attempt_failed(current, f"result is not canonical JSON (RFC 8785): {exc}")
            return
        limit = t.plan.definition.output_limit
        if len(output_json) > limit:  # the shells check when reading; this is the backstop
            t.attempt_failed(current, output_too_large(len(output_json), limit))
            return
        output_hash = hashlib.sha256(output_json).hexdigest()
        t.succeeded(current, observation.result, output_hash)
    else:
        t.attempt_failed(
            current,
            clip_message(observation.result.error or "failed without an error message"),
            retryable=observation.result.retryable,
        )


def _is_approval(t: _Transition, sid: str) -> bool:
    return t.plan.steps[sid].action_type == approval.APPROVAL


def _decide(t: _Transition, current: StepState, observation: ApprovalObserved) -> None:
    """Evaluate a waiting APPROVAL step's decisions: record each (counted or refused, and
    why), then end the step when they approve or reject it."""
    sid = current.step_id
    if not _is_approval(t, sid):
        t.warnings.append(f"decisions for step {sid!r}, which is not an APPROVAL step, ignored")
        return
    spec = t.plan.steps[sid]
    config = approval.parse_config(spec.config)
    opened = current.attempt_started_at or t.now
    evaluation = approval.evaluate(
        config,
        observation.decisions,
        step_id=sid,
        requester=observation.requester,
        opened_at=opened,
        deadline=approval.deadline_of(opened, spec.timeout_ms),
        execution=observation.execution,
    )
    t.evaluations[sid] = evaluation
    for decision, verdict in evaluation.verdicts:
        t.emit(
            f"step/{sid}/{current.attempt}/decision/{decision.id}",
            LogEventType.APPROVAL_DECISION,
            sid,
            **decision.wire(),
            **verdict.wire(),
        )
    _end_approval(t, current, evaluation, timed_out=False)


def _end_approval(
    t: _Transition, current: StepState, evaluation: approval.Evaluation, *, timed_out: bool
) -> None:
    """Approved (or timed out with onTimeout: approve): SUCCEEDED, the decisions its output.
    Rejected (or timed out with onTimeout: reject): given up at once, no retry."""
    if evaluation.outcome == "approved" or (
        timed_out
        and evaluation.outcome == "waiting"
        and _on_timeout(t, current.step_id) == "approve"
    ):
        output = evaluation.output(timed_out=timed_out)
        output_hash = hashlib.sha256(canonical_json(output)).hexdigest()
        t.succeeded(current, StepExecutorResult(success=True, output=output), output_hash)
    elif evaluation.outcome == "rejected":
        rejection = evaluation.rejection
        assert rejection is not None
        comment = f": {rejection.comment}" if rejection.comment else ""
        t.give_up(current, clip_message(f"rejected by {rejection.user}{comment}"))
    elif timed_out:
        timeout_ms = t.plan.steps[current.step_id].timeout_ms
        t.give_up(current, f"no decision within {timeout_ms} ms (onTimeout: reject)")


def _on_timeout(t: _Transition, sid: str) -> str:
    return approval.parse_config(t.plan.steps[sid].config).on_timeout


def _expire(t: _Transition) -> None:
    """Running attempts past their deadline are stopped and count as failed attempts; a
    waiting APPROVAL step takes its `onTimeout` outcome instead."""
    for sid in sorted(t.running, key=t.plan.position.__getitem__):
        current = t.step(sid)
        timeout_ms = t.plan.steps[sid].timeout_ms
        started = current.attempt_started_at
        if started is not None and t.now >= started + timedelta(milliseconds=timeout_ms):
            if _is_approval(t, sid):
                seen = t.evaluations.get(sid) or approval.Evaluation("waiting")
                _end_approval(t, current, seen, timed_out=True)
                continue
            t.actions.append(StopAttempt(sid, current.attempt, "timeout"))
            t.attempt_failed(current, f"timed out after {timeout_ms} ms")


def _cancel(t: _Transition) -> None:
    for sid in t.plan.order:
        current = t.step(sid)
        if current.status is StepStatus.RUNNING and not _is_approval(t, sid):
            t.actions.append(StopAttempt(sid, current.attempt, "cancelled"))
        if current.status in (StepStatus.RUNNING, StepStatus.PENDING):
            was = str(current.status)
            t.finish_step(
                current.with_outcome(StepStatus.CANCELLED, t.now, message=f"cancelled while {was}")
            )
            t.emit(
                f"step/{sid}/cancelled",
                LogEventType.STEP_CANCELLED,
                sid,
                was=was,
                attempt=current.attempt,
            )
    t.ready.clear()
    t.waiting.clear()
    t.set_status(ExecutionStatus.CANCELLED, "cancel requested")
    t.changes.update(finished_at=t.now, message="cancelled")
    t.emit("cancelled", LogEventType.EXECUTION_CANCELLED, None)


def _launch(t: _Transition) -> None:
    """Start ready steps in definition order while slots are free."""
    limit = t.request.max_parallel_steps
    if limit is None:  # 0 is a limit too: a shell may allow no new attempt (a namespace's cap)
        limit = t.plan.definition.max_parallel_steps
    if len(t.running) >= limit or not t.ready:
        return
    still_ready: list[str] = []
    for i, sid in enumerate(t.ready):
        if len(t.running) >= limit:
            still_ready.extend(t.ready[i:])
            break
        current = t.step(sid)
        if current.next_attempt_at is not None and current.next_attempt_at > t.now:
            still_ready.append(sid)
            continue
        t.waiting.discard(sid)
        spec = t.plan.steps[sid]
        started = current.with_attempt(t.now)
        attempt = started.attempt
        t.put(started)
        t.running.add(sid)
        t._remaining().pop(sid, None)
        deadline = t.now + timedelta(milliseconds=spec.timeout_ms)
        waits = spec.action_type == approval.APPROVAL
        t.actions.append(
            AwaitApproval(sid, attempt, deadline)
            if waits
            else StartAttempt(sid, attempt, spec.timeout_ms, deadline)
        )
        t.emit(
            f"step/{sid}/{attempt}/started",
            LogEventType.STEP_STARTED,
            sid,
            attempt=attempt,
            actionType=spec.action_type,
            deadline=format_time(deadline),
        )
        if waits:
            t.emit(
                f"step/{sid}/{attempt}/approval-requested",
                LogEventType.APPROVAL_REQUESTED,
                sid,
                **approval.request_details(approval.parse_config(spec.config), deadline),
            )
    t.ready = still_ready


def _finish_if_done(t: _Transition) -> None:
    if t.unfinished > 0:
        return
    if t.failed:
        failed = [sid for sid in t.plan.order if t.step(sid).status is StepStatus.FAILED]
        message = f"{len(failed)} step(s) failed: {', '.join(failed)}"
        t.set_status(ExecutionStatus.FAILED, "step failed")
        t.changes.update(finished_at=t.now, message=message)
        t.emit(
            "failed",
            LogEventType.EXECUTION_FAILED,
            None,
            failedSteps=failed,
            kpis=dict(t.kpis if t.kpis is not None else t.old.kpis),
        )
    else:
        t.set_status(ExecutionStatus.COMPLETED, "all steps done")
        t.changes.update(finished_at=t.now, message="completed")
        t.emit(
            "completed",
            LogEventType.EXECUTION_COMPLETED,
            None,
            kpis=dict(t.kpis if t.kpis is not None else t.old.kpis),
        )


def _next_wakeup(t: _Transition) -> datetime | None:
    """Earliest deadline of a running attempt or retry time of a waiting step."""
    candidates: list[datetime] = []
    for sid in t.running:
        current = t.step(sid)
        if current.attempt_started_at is not None:
            candidates.append(
                current.attempt_started_at + timedelta(milliseconds=t.plan.steps[sid].timeout_ms)
            )
    if t.status is ExecutionStatus.RUNNING:
        for sid in t.waiting:
            at = t.step(sid).next_attempt_at
            if at is not None and at > t.now:
                candidates.append(at)
    return min(candidates) if candidates else None


def _reject_late_control(t: _Transition) -> None:
    """A pause or cancel asked of a finished execution is refused (once in the log).

    `paused: true` left over from before the finish (more pauses than resumes: it finished
    while paused) is not a new request and is not reported.
    """
    request, state = t.request, t.old
    wants = []
    if request.paused and state.pauses <= state.resumes:
        wants.append("PAUSE")
    if request.cancel and t.status is not ExecutionStatus.CANCELLED:
        wants.append("CANCEL")
    for action in wants:
        reason = f"execution already {t.status}"
        t.warnings.append(f"cannot {action.lower()}: {reason}")
        t.emit(
            f"control-rejected/{action.lower()}",
            LogEventType.CONTROL_REJECTED,
            None,
            action=action,
            reason=reason,
        )


def schedule(
    plan: Plan,
    request: ExecutionRequest,
    state: ExecutionState,
    observations: Iterable[Observation],
    now: datetime,
) -> Decision:
    """One deterministic transition. Safe to call repeatedly: replays change nothing."""
    t = _Transition(plan, request, state, now)
    if t.status.terminal:
        # Late results never overwrite a terminal state; observations are dropped.
        _reject_late_control(t)
        return Decision(t.build(), (), tuple(t.events), None, tuple(t.warnings))

    if t.status is ExecutionStatus.PENDING:
        if request.cancel:
            _cancel(t)
            return Decision(t.build(), tuple(t.actions), tuple(t.events), None, tuple(t.warnings))
        _start(t)
        if t.status.terminal:
            return Decision(t.build(), (), tuple(t.events), None, tuple(t.warnings))

    for obs in observations:
        if request.cancel and isinstance(obs, AttemptLost):
            continue  # the cancel itself stops attempts: their loss is not a failure
        _apply(t, obs)
    _expire(t)

    if request.cancel:
        _cancel(t)
        return Decision(t.build(), tuple(t.actions), tuple(t.events), None, tuple(t.warnings))

    if request.paused and t.status is ExecutionStatus.RUNNING:
        n = t.old.pauses + 1
        t.set_status(ExecutionStatus.PAUSED, "pause requested")
        t.changes["pauses"] = n
        t.emit(f"paused/{n}", LogEventType.EXECUTION_PAUSED, None, running=sorted(t.running))
    elif not request.paused and t.status is ExecutionStatus.PAUSED:
        n = t.old.resumes + 1
        t.set_status(ExecutionStatus.RUNNING, "resume requested")
        t.changes["resumes"] = n
        t.emit(f"resumed/{n}", LogEventType.EXECUTION_RESUMED, None, remaining=t.unfinished)

    if t.status is ExecutionStatus.RUNNING:
        _launch(t)
    _finish_if_done(t)
    return Decision(
        t.build(), tuple(t.actions), tuple(t.events), _next_wakeup(t), tuple(t.warnings)
    )
