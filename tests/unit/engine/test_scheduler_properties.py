"""Property tests: random DAGs, policies, outcomes and control timings through the simulator.

Each example runs a whole execution with `sim.Sim` and then checks the scheduler's invariants on
every recorded `schedule()` call, plus idempotency and the wire round trip of every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runbook_engine.audit import AuditChain, verify
from runbook_engine.canonical import canonical_sha256
from runbook_engine.contract import Citation, Evidence, StepExecutorResult
from runbook_engine.driver import Actors, drive
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.plan import Plan
from runbook_engine.scheduler import (
    AttemptFinished,
    AttemptLost,
    Decision,
    StartAttempt,
    is_done_for_dependents,
    new_execution,
    reindex,
    schedule,
)
from runbook_engine.state import ExecutionState
from runbook_engine.timeutil import format_time

from .sim import (
    HANG,
    T0,
    Call,
    Control,
    Full,
    Lost,
    Outcome,
    Sim,
    SimResult,
    make_plan,
    request_for,
    step,
)

MAX_ATTEMPTS = 4
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Scenario:
    plan: Plan
    max_parallel: int
    outcomes: dict[tuple[str, int], Outcome]
    controls: tuple[Control, ...]
    rejected: bool = False
    """The runbook needs a legal basis the request does not give: nothing may start."""

    def outcome(self, step_id: str, attempt: int) -> Outcome:
        return self.outcomes[(step_id, attempt)]

    def run(self, **kwargs: Any) -> SimResult:
        request = request_for(self.plan, max_parallel_steps=self.max_parallel)
        return Sim(self.plan, self.outcome, request=request, controls=self.controls, **kwargs).run()


retry_policies = st.one_of(
    st.none(),
    st.builds(
        lambda attempts, base, mult, cap: {
            "maxAttempts": attempts,
            "backoffSeconds": base,
            "backoffMultiplier": mult,
            **({"maxBackoffSeconds": base + cap} if cap is not None else {}),
        },
        st.integers(1, MAX_ATTEMPTS),
        st.sampled_from([0, 0.5, 1, 2.5]),
        st.sampled_from([1, 2, 3]),
        st.one_of(st.none(), st.sampled_from([0, 1, 4])),
    ),
)


def _outcome(kind: str, duration_ms: int, v: int, kpis: dict[str, int]) -> Outcome:
    duration = duration_ms / 1000
    if kind == "hang":
        return HANG
    if kind == "lost":
        return Lost(duration)
    if kind == "evidence":
        data = {"v": v}
        result = StepExecutorResult(
            success=True,
            output={"v": v},
            kpis=kpis,
            evidence=[Evidence(id=f"ev{v}", type="test", data=data, hash=canonical_sha256(data))],
            citations=[Citation(source="sim", version=str(v))],
        )
        return Full(duration, result)
    return (duration, kind == "ok", {"v": v}, kpis)


WORLDS = {
    # outcome kinds an attempt draws from (repeats weight them)
    "reliable": ["ok"] * 40 + ["evidence"] * 4 + ["fail"],
    "flaky": ["ok"] * 4 + ["evidence", "fail", "lost", "hang"],
    "hostile": ["ok", "fail", "fail", "hang", "lost"],
}


def outcomes(world: str) -> st.SearchStrategy[Outcome]:
    return st.builds(
        _outcome,
        st.sampled_from(WORLDS[world]),
        # whole milliseconds; mostly on a 250 ms grid so that things happen at the same instant
        st.builds(
            lambda quarters, jitter: quarters * 250 + jitter,
            st.integers(0, 40),
            st.sampled_from([0, 0, 0, 0, 1, 333]),
        ),
        st.integers(0, 9),
        st.sampled_from([{}, {}, {"k1": 1}, {"k1": 2, "k2": 3}, {"k2": 4}]),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 25))
    world = outcomes(draw(st.sampled_from(["reliable", "flaky", "reliable", "hostile"])))
    ids = [f"s{i:02d}" for i in range(n)]
    docs = []
    table: dict[tuple[str, int], Outcome] = {}
    for i, sid in enumerate(ids):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        retry = draw(retry_policies)
        docs.append(
            step(
                sid,
                *[ids[d] for d in deps],
                retry=retry,
                timeoutMs=draw(st.sampled_from([1000, 2500, 6000, 20_000])),
                skipOnFailure=draw(st.booleans()),
            )
        )
        for attempt in range(1, (retry["maxAttempts"] if retry else 1) + 1):
            table[(sid, attempt)] = draw(world)
    rejected = all(draw(st.booleans()) for _ in range(3))  # about 1 in 8
    plan = make_plan(*docs, **({"legalBasisRequired": ["consent"]} if rejected else {}))
    controls: list[Control] = []
    for _ in range(draw(st.integers(0, 2))):
        start = draw(st.integers(0, 30)) * 0.5
        length = draw(st.integers(0, 20)) * 0.5
        controls += [Control(start, {"paused": True}), Control(start + length, {"paused": False})]
    if draw(st.booleans()) and draw(st.booleans()):
        controls.append(Control(draw(st.integers(0, 24)) * 0.5, {"cancel": True}))
    return Scenario(plan, draw(st.integers(1, 5)), table, tuple(controls), rejected)


def _decision_view(d: Decision) -> tuple[Any, ...]:
    """What a caller can observe of a decision (the state as stored on the wire)."""
    return (
        d.state.to_wire(),
        d.actions,
        [(e.key, e.event_type, e.step_id, dict(e.details)) for e in d.events],
        d.next_wakeup,
        d.warnings,
    )


def _from_wire(plan: Plan, state: ExecutionState) -> ExecutionState:
    return reindex(plan, ExecutionState.from_wire(state.to_wire()))


def check_invariants(sc: Scenario, res: SimResult) -> None:
    history = _History()
    for call in res.trace:
        check_call(sc, call, history)
    final = res.final
    assert final.status.terminal, final.status
    if sc.rejected:
        check_rejected(res)
        return
    check_final_steps(sc, res)
    check_kpis_and_artifacts(sc, final)
    check_audit(res)


@dataclass
class _History:
    """What earlier calls did, for the checks that span calls (no re-run, retry backoff)."""

    succeeded_at: dict[str, Any] = field(default_factory=dict)
    failed_at: dict[tuple[str, int], Any] = field(default_factory=dict)


def check_call(sc: Scenario, call: Call, history: _History) -> None:
    """Invariants of one `schedule` call: parallelism, starts, events, terminal steps stay put."""
    before, after, now = call.before, call.after, call.now
    running = [s for s in after.steps.values() if s.status is StepStatus.RUNNING]
    assert len(running) <= sc.max_parallel, f"{len(running)} running > {sc.max_parallel}"
    assert after.running == {s.step_id for s in running}
    if call.starts:
        assert after.status is ExecutionStatus.RUNNING, "StartAttempt while not RUNNING"
        assert not call.request.paused, "StartAttempt while pause requested"
        assert not call.request.cancel
    check_events(sc, call, history)
    for start in call.starts:
        check_start(sc, call, start, history)
    for sid, s in after.steps.items():
        if s.status is StepStatus.SUCCEEDED:
            history.succeeded_at.setdefault(sid, now)
        if before.steps[sid].status.terminal:
            assert s == before.steps[sid], f"terminal step {sid} changed"
    # work-conserving: a ready step waits only for a free slot (or its backoff)
    if after.status is ExecutionStatus.RUNNING:
        plan = sc.plan
        ready_now = [
            sid
            for sid, s in after.steps.items()
            if s.status is StepStatus.PENDING
            and all(is_done_for_dependents(after.steps[d]) for d in plan.dependencies[sid])
            and (s.next_attempt_at is None or s.next_attempt_at <= now)
        ]
        assert not ready_now or len(running) == sc.max_parallel, f"idle slot, {ready_now} ready"
    if before.status.terminal:
        assert after == before


def check_events(sc: Scenario, call: Call, history: _History) -> None:
    """A failed attempt's retry time follows the policy; a success's duration is its attempt's."""
    plan, before, after, now = sc.plan, call.before, call.after, call.now
    for ev in call.decision.events:
        if ev.event_type is LogEventType.STEP_ATTEMPT_FAILED:
            sid, n = str(ev.step_id), int(ev.details["attempt"])
            assert before.steps[sid].status is StepStatus.RUNNING
            assert before.steps[sid].attempt == n < plan.steps[sid].max_attempts
            delay = plan.steps[sid].retry_policy.delay_after(n)  # type: ignore[union-attr]
            retry_at = now + timedelta(seconds=delay)
            assert ev.details["retryAt"] == format_time(retry_at)
            if after.steps[sid].status is StepStatus.PENDING:
                assert after.steps[sid].next_attempt_at == retry_at
            history.failed_at[(sid, n)] = now
        if ev.event_type is LogEventType.STEP_SUCCEEDED:
            prev = before.steps[str(ev.step_id)]
            assert prev.status is StepStatus.RUNNING
            assert prev.attempt_started_at is not None
            duration = (now - prev.attempt_started_at) // timedelta(milliseconds=1)
            assert ev.details["durationMs"] == duration


def check_start(sc: Scenario, call: Call, start: StartAttempt, history: _History) -> None:
    """A start: never after success, within maxAttempts, after its dependencies and backoff."""
    plan, now = sc.plan, call.now
    sid = start.step_id
    spec = plan.steps[sid]
    assert sid not in history.succeeded_at, f"{sid} started again after SUCCEEDED"
    assert 1 <= start.attempt <= spec.max_attempts
    assert start.attempt == call.before.steps[sid].attempt + 1
    assert start.deadline == now + timedelta(milliseconds=spec.timeout_ms)
    for dep in plan.dependencies[sid]:
        d = call.after.steps[dep]
        assert is_done_for_dependents(d), f"{sid} started before {dep} ({d.status})"
        assert d.status is StepStatus.SUCCEEDED or (
            d.status is StepStatus.SKIPPED and d.blocked_by is None
        )
    if start.attempt > 1:
        delay = spec.retry_policy.delay_after(start.attempt - 1)  # type: ignore[union-attr]
        failed = history.failed_at[(sid, start.attempt - 1)]
        assert now >= failed + timedelta(seconds=delay), "retry before its backoff"


def check_rejected(res: SimResult) -> None:
    final = res.final
    assert res.starts() == []
    assert final.status is ExecutionStatus.FAILED
    assert all(
        s.status is StepStatus.SKIPPED and s.blocked_by == "<rejected>"
        for s in final.steps.values()
    )
    types = res.event_types()
    assert "EXECUTION_REJECTED" in types and "EXECUTION_STARTED" not in types
    assert verify(res.chain.entries).valid


def check_final_steps(sc: Scenario, res: SimResult) -> None:
    """The final phase follows from the steps; failures skip descendants; skips say why."""
    plan, final = sc.plan, res.final
    for s in final.steps.values():
        assert s.status.terminal, f"{s.step_id} ended {s.status}"
        assert s.attempt <= plan.steps[s.step_id].max_attempts
    statuses = {sid: s.status for sid, s in final.steps.items()}
    cancelled = any(c.request.cancel for c in res.trace)
    any_failed = StepStatus.FAILED in statuses.values()
    by_steps = ExecutionStatus.FAILED if any_failed else ExecutionStatus.COMPLETED
    if not cancelled:
        assert final.status is by_steps
        assert StepStatus.CANCELLED not in statuses.values()
    else:
        assert final.status in (ExecutionStatus.CANCELLED, by_steps)
    for sid, status in statuses.items():
        s = final.steps[sid]
        if status is StepStatus.FAILED:
            for child in plan.descendants(sid):
                c = final.steps[child]
                assert c.status is StepStatus.SKIPPED and c.blocked_by is not None, (child, c)
        if status is StepStatus.SKIPPED and s.blocked_by is None:
            assert plan.steps[sid].skip_on_failure
            assert s.attempt == plan.steps[sid].max_attempts
        if status is StepStatus.SKIPPED and s.blocked_by is not None:
            assert s.blocked_by in plan.dependencies[sid]
            assert s.attempt == 0
        if status is StepStatus.SUCCEEDED:
            assert sid in final.outputs


def check_kpis_and_artifacts(sc: Scenario, final: ExecutionState) -> None:
    """KPIs: for each name, the value of the latest-in-definition-order succeeded step."""
    expected_kpis: dict[str, Any] = {}
    for sid in sc.plan.order:
        s = final.steps[sid]
        if s.status is StepStatus.SUCCEEDED:
            outcome = sc.outcomes[(sid, s.attempt)]
            if isinstance(outcome, Full):
                expected_kpis.update(outcome.result.kpis)
                assert final.artifacts[sid]["evidence"] == [
                    e.wire() for e in outcome.result.evidence
                ]
            else:
                assert isinstance(outcome, tuple)
                expected_kpis.update(outcome[3])
                assert sid not in final.artifacts
    assert dict(final.kpis) == expected_kpis


def check_audit(res: SimResult) -> None:
    entries = res.chain.entries
    v = verify(entries, execution_id="exec-1")
    assert v.valid, str(v)
    assert len({e["logId"] for e in entries}) == len(entries)
    assert res.duplicate_events == 0
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps), "audit timestamps go backwards"
    started = [e for e in entries if e["eventType"] == LogEventType.STEP_STARTED]
    assert len(started) == len(res.starts())
    assert entries[-1]["eventType"] in {
        LogEventType.EXECUTION_COMPLETED,
        LogEventType.EXECUTION_FAILED,
        LogEventType.EXECUTION_CANCELLED,
    }


def check_replays(sc: Scenario, res: SimResult) -> None:
    """Every call: duplicated observations, a repeated call and a wire round trip change nothing."""
    plan = sc.plan
    for call in res.trace:
        base = _decision_view(call.decision)
        if call.observations:
            doubled = schedule(plan, call.request, call.before, call.observations * 2, call.now)
            assert _decision_view(doubled) == base
        again = schedule(plan, call.request, call.after, call.observations, call.now)
        assert again.state == call.after
        assert again.actions == ()
        assert [e for e in again.events if e.event_type is not LogEventType.CONTROL_REJECTED] == []
        loaded = _from_wire(plan, call.before)
        replay = schedule(plan, call.request, loaded, call.observations, call.now)
        assert _decision_view(replay) == base


@SETTINGS
@given(scenarios())
def test_random_executions_keep_the_invariants(sc: Scenario) -> None:
    res = sc.run()
    event(f"phase {res.final.status}")
    types = set(res.event_types())
    for t in (
        LogEventType.STEP_ATTEMPT_FAILED,
        LogEventType.STEP_SKIPPED,
        LogEventType.EXECUTION_PAUSED,
    ):
        if t in types:
            event(str(t))
    if any(a.reason == "timeout" for _, a in res.stops()):
        event("timeout")
    if any(isinstance(o, Lost) for o in sc.outcomes.values()):
        event("lost attempts")
    if sc.rejected:
        event("rejected")
    check_invariants(sc, res)
    check_replays(sc, res)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_late_results_of_stopped_attempts_are_ignored(sc: Scenario) -> None:
    """Workers that finish after being stopped (timeout/cancel) must not change anything."""
    res = sc.run(deliver_late_results=True)
    check_invariants(sc, res)
    for call in res.trace:
        fresh = tuple(
            o
            for o in call.observations
            if call.before.steps[o.step_id].status is StepStatus.RUNNING
            and call.before.steps[o.step_id].attempt == o.attempt
        )
        if fresh != call.observations:
            without = schedule(sc.plan, call.request, call.before, fresh, call.now)
            assert _decision_view(without) == _decision_view(call.decision)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_same_script_same_run(sc: Scenario) -> None:
    """Determinism: the same world gives the same trace and the same audit chain."""
    a, b = sc.run(), sc.run()
    assert [e["hash"] for e in a.chain.entries] == [e["hash"] for e in b.chain.entries]
    assert a.final == b.final


@st.composite
def chaos(draw: st.DrawFn) -> tuple[Scenario, list[tuple[int, dict[str, Any], list[Any]]]]:
    """A scenario plus arbitrary calls: any step (or an unknown one), any attempt number, any
    result, at non-decreasing times with arbitrary pause/cancel levels."""
    sc = draw(scenarios())
    ids = [*sc.plan.order, "ghost"]
    observation = st.one_of(
        st.builds(
            AttemptFinished,
            st.sampled_from(ids),
            st.integers(0, MAX_ATTEMPTS + 1),
            st.builds(
                StepExecutorResult,
                success=st.booleans(),
                output=st.dictionaries(st.sampled_from("xy"), st.integers(0, 3), max_size=1),
                kpis=st.dictionaries(st.sampled_from(["k1"]), st.integers(0, 3), max_size=1),
            ),
        ),
        st.builds(
            AttemptLost, st.sampled_from(ids), st.integers(0, MAX_ATTEMPTS + 1), st.just("x")
        ),
    )
    calls = draw(
        st.lists(
            st.tuples(
                st.integers(0, 3000),  # ms since the previous call
                st.fixed_dictionaries(
                    {"paused": st.booleans(), "cancel": st.integers(0, 9).map(lambda x: x == 9)}
                ),
                st.lists(observation, max_size=4),
            ),
            max_size=30,
        )
    )
    return sc, calls


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chaos())
def test_arbitrary_observations_never_break_the_state(
    case: tuple[Scenario, list[tuple[int, dict[str, Any], list[Any]]]],
) -> None:
    sc, calls = case
    plan = sc.plan
    request = request_for(plan, max_parallel_steps=sc.max_parallel)
    now = T0
    state = new_execution(plan, "exec-1", now)
    chain = AuditChain("exec-1")
    for delta_ms, levels, observations in [(0, {}, []), *calls]:
        now += timedelta(milliseconds=delta_ms)
        request = request.model_copy(update=levels)
        before = state
        d = drive(plan, request, state, chain, observations, now, Actors("chaos")).decision
        state = d.state
        running = [s for s in state.steps.values() if s.status is StepStatus.RUNNING]
        assert len(running) <= sc.max_parallel
        assert state.running == {s.step_id for s in running}
        if d.actions and any(isinstance(a, StartAttempt) for a in d.actions):
            assert state.status is ExecutionStatus.RUNNING
        for s in state.steps.values():
            assert s.attempt <= plan.steps[s.step_id].max_attempts
            if before.steps[s.step_id].status.terminal:
                assert s == before.steps[s.step_id]
        if state.status.terminal:
            assert all(s.status.terminal for s in state.steps.values())
        # the derived indexes always match a rebuild from the step statuses
        rebuilt = reindex(plan, ExecutionState.from_wire(state.to_wire()))
        assert (
            rebuilt.ready,
            rebuilt.unfinished,
            rebuilt.failed,
            rebuilt.running,
            rebuilt.retry_waiting,
        ) == (state.ready, state.unfinished, state.failed, state.running, state.retry_waiting)
        assert dict(rebuilt.remaining) == dict(state.remaining)
        # a ready step with a retry time is waiting for its backoff (its wakeup is kept)
        waiting = {sid for sid in state.ready if state.steps[sid].next_attempt_at is not None}
        assert waiting == state.retry_waiting
    assert verify(chain.entries).valid
