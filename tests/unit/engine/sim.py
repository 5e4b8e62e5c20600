"""A deterministic simulated-clock driver for the pure scheduler.

The simulated world is scripted: every ``StartAttempt`` asks ``outcome(step_id, attempt)`` what
happens, and gets back either ``(duration_seconds, success, output, kpis)`` or ``HANG`` (the
attempt never reports, so only its timeout ends it). Events are processed in time order:
attempt completions, the scheduler's ``next_wakeup``, and scripted control changes of the request
(pause/resume/cancel at given times). ``Lost(duration)`` makes the worker vanish instead
(an ``AttemptLost`` observation). Everything that happens at the same instant is folded into a
single ``schedule`` call, observations in the order their attempts were started.

``StopAttempt`` drops the attempt's pending completion (unless ``deliver_late_results`` is set, in
which case the result still arrives and the scheduler must ignore it).

The sim is a shell like the local runner and the operator: each instant is one
``runbook_engine.driver.drive`` call (schedule, then record the events in an ``AuditChain``).
Each call is recorded in ``SimResult.trace`` (inputs and decision), so tests can check invariants
and replay individual calls.

Times are whole milliseconds, so the state survives the wire form (millisecond precision) exactly.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from runbook_engine.audit import AuditChain
from runbook_engine.contract import StepExecutorResult
from runbook_engine.driver import Actors, drive
from runbook_engine.model import ExecutionRequest, RunbookRef
from runbook_engine.plan import Plan
from runbook_engine.scheduler import (
    AttemptFinished,
    AttemptLost,
    Decision,
    Observation,
    StartAttempt,
    StopAttempt,
    new_execution,
)
from runbook_engine.state import ExecutionState

T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC)
HANG: Literal["hang"] = "hang"

OutcomeTuple = tuple[float, bool, Mapping[str, Any], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Lost:
    """The attempt's worker vanishes after ``duration`` seconds: an ``AttemptLost`` observation."""

    duration: float
    reason: str = "worker vanished"


@dataclass(frozen=True, slots=True)
class Full:
    """A complete executor result (evidence, citations, error text) after ``duration`` seconds."""

    duration: float
    result: StepExecutorResult


Outcome = OutcomeTuple | Lost | Full | Literal["hang"]
OutcomeFn = Callable[[str, int], Outcome]


class SimulationError(AssertionError):
    """The simulation could not finish (iteration cap hit or nothing left to wait for)."""


def at(seconds: float, start: datetime = T0) -> datetime:
    """``start`` plus ``seconds``, rounded to whole milliseconds."""
    return start + timedelta(milliseconds=round(seconds * 1000))


def ok(
    duration: float = 1.0,
    output: Mapping[str, Any] | None = None,
    kpis: Mapping[str, Any] | None = None,
) -> OutcomeTuple:
    return (duration, True, dict(output or {}), dict(kpis or {}))


def fail(duration: float = 1.0) -> OutcomeTuple:
    return (duration, False, {}, {})


def request_for(plan: Plan, **fields: Any) -> ExecutionRequest:
    return ExecutionRequest(runbook_ref=RunbookRef(name=plan.definition.id), **fields)


@dataclass(frozen=True, slots=True)
class Control:
    """At ``time`` (seconds after start), update the request with ``changes`` (e.g. paused=True)."""

    time: float
    changes: Mapping[str, Any]


def pause(t: float) -> Control:
    return Control(t, {"paused": True})


def resume(t: float) -> Control:
    return Control(t, {"paused": False})


def cancel(t: float) -> Control:
    return Control(t, {"cancel": True})


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded ``schedule`` call: its inputs and its decision."""

    now: datetime
    request: ExecutionRequest
    before: ExecutionState
    observations: tuple[Observation, ...]
    decision: Decision

    @property
    def after(self) -> ExecutionState:
        return self.decision.state

    @property
    def starts(self) -> list[StartAttempt]:
        return [a for a in self.decision.actions if isinstance(a, StartAttempt)]

    @property
    def stops(self) -> list[StopAttempt]:
        return [a for a in self.decision.actions if isinstance(a, StopAttempt)]


@dataclass
class SimResult:
    plan: Plan
    trace: list[Call]
    chain: AuditChain
    duplicate_events: int
    """Events the chain already held (the same key emitted again): dropped by the chain."""
    late_results: int
    """Results delivered for attempts the scheduler had stopped (deliver_late_results=True)."""

    @property
    def final(self) -> ExecutionState:
        return self.trace[-1].after

    @property
    def end(self) -> datetime:
        return self.trace[-1].now

    def starts(self) -> list[tuple[datetime, StartAttempt]]:
        return [(c.now, a) for c in self.trace for a in c.starts]

    def stops(self) -> list[tuple[datetime, StopAttempt]]:
        return [(c.now, a) for c in self.trace for a in c.stops]

    def start_times(self, step_id: str) -> list[datetime]:
        return [now for now, a in self.starts() if a.step_id == step_id]

    def events(self) -> list[dict[str, Any]]:
        return self.chain.entries

    def event_types(self, step_id: str | None = None) -> list[str]:
        return [
            e["eventType"] for e in self.chain.entries if step_id is None or e["stepId"] == step_id
        ]

    def status(self, step_id: str) -> str:
        return str(self.final.steps[step_id].status)

    def warnings(self) -> list[str]:
        return [w for c in self.trace for w in c.decision.warnings]


_FINISH, _CONTROL, _WAKEUP = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Instant:
    """Everything that happens at one simulated time: folded into a single `drive` call."""

    now: datetime
    observations: list[Observation]
    changes: dict[str, Any]


@dataclass
class Sim:
    """The simulated shell: `drive` (as the runner and the operator call it) in a scripted world."""

    plan: Plan
    outcome: OutcomeFn
    request: ExecutionRequest | None = None
    controls: Sequence[Control] = ()
    execution_id: str = "exec-1"
    start: datetime = T0
    actor_id: str = "sim"
    max_iterations: int = 5_000
    deliver_late_results: bool = False
    stop_when_terminal: bool = True
    initial: ExecutionState | None = None
    """Start from this state (a re-run's) instead of a new execution."""
    _queue: list[tuple[datetime, int, int, Any]] = field(default_factory=list, init=False)
    _seq: int = field(default=0, init=False)
    _pending: dict[tuple[str, int], datetime] = field(default_factory=dict, init=False)
    """Live attempts with a scripted completion, and when it arrives."""
    _stopped: set[tuple[str, int]] = field(default_factory=set, init=False)
    _wakeup: datetime | None = field(default=None, init=False)

    def _push(self, when: datetime, kind: int, payload: Any) -> None:
        heapq.heappush(self._queue, (when, kind, self._seq, payload))
        self._seq += 1

    def run(self) -> SimResult:
        request = self.request or request_for(self.plan)
        state = self.initial or new_execution(self.plan, self.execution_id, self.start)
        result = SimResult(self.plan, [], AuditChain(self.execution_id), 0, 0)
        actors = Actors(self.actor_id, started_by=request.started_by)
        for control in self.controls:
            self._push(at(control.time, self.start), _CONTROL, control)
        instant = _Instant(self.start, [], {})
        for _ in range(self.max_iterations):
            now, observations = instant.now, tuple(instant.observations)
            step = drive(self.plan, request, state, result.chain, observations, now, actors)
            result.trace.append(Call(now, request, state, observations, step.decision))
            result.duplicate_events += len(step.decision.events) - len(step.entries)
            state = step.state
            self._carry_out(step.decision, now)
            if state.status.terminal and self.stop_when_terminal:
                return result
            next_instant = self._next_instant(result)
            if next_instant is None:
                if state.status.terminal:
                    return result
                raise SimulationError(
                    f"stuck at {now.isoformat()}: execution {state.status}, nothing to wait for; "
                    f"steps {[(s.step_id, str(s.status)) for s in state.steps.values()]}"
                )
            if next_instant.now < now:
                raise SimulationError(f"time went backwards: {next_instant.now} < {now}")
            instant = next_instant
            if instant.changes:
                request = request.model_copy(update=instant.changes)
        raise SimulationError(f"no terminal phase after {self.max_iterations} schedule() calls")

    def _carry_out(self, decision: Decision, now: datetime) -> None:
        """Script each started attempt's end; a stop drops it (unless late results are wanted)."""
        for action in decision.actions:
            key = (action.step_id, action.attempt)
            if isinstance(action, StopAttempt):
                self._stopped.add(key)
                if not self.deliver_late_results:
                    self._pending.pop(key, None)
                continue
            ending = _scripted_end(action, self.outcome(action.step_id, action.attempt))
            if ending is not None:
                done = at(ending[0], now)
                self._pending[key] = done
                self._push(done, _FINISH, ending[1])
        if decision.next_wakeup is not None and decision.next_wakeup != self._wakeup:
            self._wakeup = decision.next_wakeup
            self._push(self._wakeup, _WAKEUP, self._wakeup)

    def _next_instant(self, result: SimResult) -> _Instant | None:
        """Pop everything queued for the next time at which something happens."""
        instant: _Instant | None = None
        while self._queue:
            when, kind, _, payload = self._queue[0]
            if instant is not None and when != instant.now:
                break
            heapq.heappop(self._queue)
            if kind == _FINISH:
                key = (payload.step_id, payload.attempt)
                if self._pending.get(key) != when:
                    continue  # dropped by a StopAttempt
                del self._pending[key]
                if key in self._stopped:
                    result.late_results += 1
            elif kind == _WAKEUP and payload != self._wakeup:
                continue  # superseded wakeup
            instant = instant or _Instant(when, [], {})
            if kind == _FINISH:
                instant.observations.append(payload)
            elif kind == _CONTROL:
                instant.changes.update(payload.changes)
        return instant


def _scripted_end(action: StartAttempt, outcome: Outcome) -> tuple[float, Observation] | None:
    """After how many seconds the attempt reports, and what; None: it hangs until stopped."""
    if outcome == HANG:
        return None
    if isinstance(outcome, Lost):
        return outcome.duration, AttemptLost(action.step_id, action.attempt, outcome.reason)
    if isinstance(outcome, Full):
        duration, result = outcome.duration, outcome.result
    else:
        duration, success, output, kpis = outcome
        result = StepExecutorResult(
            success=success,
            output=dict(output),
            kpis=dict(kpis),
            error=None if success else f"scripted failure of attempt {action.attempt}",
        )
    return duration, AttemptFinished(action.step_id, action.attempt, result)


def run(
    plan: Plan,
    outcome: OutcomeFn | Mapping[str, Outcome | list[Outcome]],
    *,
    controls: Iterable[Control] = (),
    **kwargs: Any,
) -> SimResult:
    """Convenience: ``outcome`` may be a function or {step: outcome or [outcome per attempt]}."""
    fn = outcome if callable(outcome) else scripted(outcome)
    return Sim(plan, fn, controls=tuple(controls), **kwargs).run()


def scripted(
    table: Mapping[str, Outcome | list[Outcome]], default: Outcome = (1.0, True, {}, {})
) -> OutcomeFn:
    """{step: outcome} or {step: [attempt 1 outcome, attempt 2 outcome, ...]} (last one repeats)."""

    def fn(step_id: str, attempt: int) -> Outcome:
        entry = table.get(step_id, default)
        if isinstance(entry, list):
            return entry[min(attempt, len(entry)) - 1]
        return entry

    return fn


def step(
    step_id: str,
    *deps: str,
    action: str = "TRANSFORM",
    retry: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A step document (camelCase keys accepted in ``fields``)."""
    doc: dict[str, Any] = {"id": step_id, "actionType": action, "dependsOn": list(deps), **fields}
    if retry is not None:
        doc["retryPolicy"] = dict(retry)
    return doc


def make_plan(*steps: Mapping[str, Any], **definition: Any) -> Plan:
    """Compile a plan from step documents; ``definition`` adds runbook fields (camelCase)."""
    from runbook_engine.model import RunbookDefinition
    from runbook_engine.plan import compile_plan

    doc = {"id": "rb-test", "steps": [dict(s) for s in steps], **definition}
    return compile_plan(RunbookDefinition.model_validate(doc))
