"""Explicit scheduler scenarios with exact (simulated) timestamps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runbook_engine.audit import verify
from runbook_engine.context import build_context
from runbook_engine.contract import StepExecutorResult
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.model import RetryPolicy
from runbook_engine.scheduler import (
    AttemptFinished,
    AttemptLost,
    StartAttempt,
    StopAttempt,
    new_execution,
    schedule,
)

from .sim import (
    HANG,
    T0,
    Full,
    SimulationError,
    at,
    cancel,
    fail,
    make_plan,
    ok,
    pause,
    request_for,
    resume,
    run,
    step,
)

S, F, K, R = StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.RUNNING


def entries_of(res, event_type):  # type: ignore[no-untyped-def]
    return [e for e in res.events() if e["eventType"] == event_type]


# --- ready queue ------------------------------------------------------------------------------


def test_a_step_starts_as_soon_as_its_own_dependencies_are_done() -> None:
    """Diamond a -> (slow, fast) -> join, plus fast -> child: the child does not wait for slow."""
    plan = make_plan(
        step("a"),
        step("slow", "a"),
        step("fast", "a"),
        step("child", "fast"),
        step("join", "slow", "child"),
    )
    res = run(plan, {"a": ok(1), "slow": ok(10), "fast": ok(1), "child": ok(2), "join": ok(1)})
    assert res.start_times("a") == [at(0)]
    assert res.start_times("slow") == [at(1)]
    assert res.start_times("fast") == [at(1)]
    assert res.start_times("child") == [at(2)]  # not at 11 (no level-by-level waves)
    assert res.start_times("join") == [at(11)]
    assert res.final.status is ExecutionStatus.COMPLETED
    assert res.final.finished_at == at(12)
    assert res.final.started_at == at(0)


def test_steps_start_in_definition_order_when_slots_are_scarce() -> None:
    plan = make_plan(step("c"), step("a"), step("b"), step("d"), maxParallelSteps=2)
    res = run(plan, {"c": ok(5), "a": ok(1), "b": ok(1), "d": ok(1)})
    assert [a.step_id for _, a in res.starts()] == ["c", "a", "b", "d"]
    assert res.start_times("b") == [at(1)]
    assert res.start_times("d") == [at(2)]


def test_request_max_parallel_steps_overrides_the_runbook() -> None:
    plan = make_plan(*[step(f"s{i}") for i in range(4)], maxParallelSteps=4)
    res = run(plan, {}, request=request_for(plan, max_parallel_steps=1))
    assert [res.start_times(f"s{i}") for i in range(4)] == [[at(0)], [at(1)], [at(2)], [at(3)]]
    res = run(plan, {})
    assert all(res.start_times(f"s{i}") == [at(0)] for i in range(4))


def test_start_attempt_carries_timeout_and_deadline() -> None:
    plan = make_plan(step("a", timeoutMs=1500))
    d = schedule(plan, request_for(plan), new_execution(plan, "e", T0), [], T0)
    assert d.actions == (StartAttempt("a", 1, 1500, T0 + timedelta(milliseconds=1500)),)
    assert d.next_wakeup == T0 + timedelta(milliseconds=1500)
    assert d.state.status is ExecutionStatus.RUNNING


# --- retries, backoff, timeouts ---------------------------------------------------------------


def test_backoff_is_base_times_multiplier_power_capped() -> None:
    policy = RetryPolicy(
        max_attempts=6, backoff_seconds=2, backoff_multiplier=3, max_backoff_seconds=10
    )
    assert [policy.delay_after(n) for n in range(1, 6)] == [2, 6, 10, 10, 10]
    assert RetryPolicy(max_attempts=3, backoff_seconds=0.5).delay_after(3) == 2.0


def test_retries_start_exactly_after_their_backoff() -> None:
    retry = {"maxAttempts": 5, "backoffSeconds": 2, "backoffMultiplier": 3, "maxBackoffSeconds": 10}
    plan = make_plan(step("a", retry=retry))
    res = run(plan, {"a": [fail(1), fail(1), fail(1), fail(1), ok(1)]})
    # fail at 1 (+2) -> 3; fail at 4 (+6) -> 10; fail at 11 (+min(18,10)) -> 21; fail at 22 -> 32
    assert res.start_times("a") == [at(0), at(3), at(10), at(21), at(32)]
    retry_at = [e["details"]["retryAt"] for e in entries_of(res, "STEP_ATTEMPT_FAILED")]
    assert retry_at == [
        "2024-01-15T10:00:03.000Z",
        "2024-01-15T10:00:10.000Z",
        "2024-01-15T10:00:21.000Z",
        "2024-01-15T10:00:32.000Z",
    ]
    final = res.final.steps["a"]
    assert (final.status, final.attempt, final.started_at, final.finished_at) == (
        S,
        5,
        at(0),
        at(33),
    )
    # while waiting, the step is PENDING with next_attempt_at, and the scheduler wakes up then
    waiting = res.trace[1]
    assert waiting.now == at(1)
    assert waiting.after.steps["a"].status is StepStatus.PENDING
    assert waiting.after.steps["a"].next_attempt_at == at(3)
    assert waiting.decision.next_wakeup == at(3)
    assert waiting.decision.actions == ()


def test_last_attempt_failure_fails_the_step() -> None:
    plan = make_plan(step("a", retry={"maxAttempts": 2, "backoffSeconds": 0}))
    res = run(plan, {"a": fail(1)})
    assert res.start_times("a") == [at(0), at(1)]  # zero backoff: restarted in the same call
    assert res.final.steps["a"].status is F
    assert res.final.steps["a"].message == (
        "failed after 2 attempts: scripted failure of attempt 2"
    )
    assert res.final.status is ExecutionStatus.FAILED


def test_timeout_stops_the_attempt_and_retries() -> None:
    plan = make_plan(step("a", timeoutMs=2000, retry={"maxAttempts": 2, "backoffSeconds": 1}))
    res = run(plan, {"a": [HANG, ok(1)]})
    assert res.stops() == [(at(2), StopAttempt("a", 1, "timeout"))]
    [attempt_failed] = entries_of(res, "STEP_ATTEMPT_FAILED")
    assert attempt_failed["details"]["error"] == "timed out after 2000 ms"
    assert attempt_failed["timestamp"] == "2024-01-15T10:00:02.000Z"
    assert res.start_times("a") == [at(0), at(3)]
    assert res.final.steps["a"].status is S
    assert res.final.finished_at == at(4)


def test_timeout_of_the_last_attempt_fails_the_step() -> None:
    plan = make_plan(step("a", timeoutMs=500), step("b", "a"))
    res = run(plan, {"a": HANG})
    assert res.stops() == [(at(0.5), StopAttempt("a", 1, "timeout"))]
    assert res.final.steps["a"].status is F
    assert res.final.steps["b"].status is K
    assert res.final.finished_at == at(0.5)


def test_a_result_arriving_at_the_deadline_instant_counts() -> None:
    plan = make_plan(step("a", timeoutMs=2000))
    res = run(plan, {"a": ok(2)})
    assert res.stops() == []
    assert res.final.steps["a"].status is S


def test_lost_attempt_is_a_failed_attempt() -> None:
    plan = make_plan(step("a", retry={"maxAttempts": 2, "backoffSeconds": 0}))
    req = request_for(plan)
    d1 = schedule(plan, req, new_execution(plan, "e", T0), [], T0)
    d2 = schedule(plan, req, d1.state, [AttemptLost("a", 1, "pod evicted")], at(1))
    assert d2.actions[0] == StartAttempt("a", 2, 300_000, at(1) + timedelta(minutes=5))
    [ev] = [e for e in d2.events if e.event_type is LogEventType.STEP_ATTEMPT_FAILED]
    assert ev.details["error"] == "lost: pod evicted"


def test_step_duration_is_exact_in_milliseconds() -> None:
    plan = make_plan(step("a"))
    res = run(plan, {"a": ok(1.001)})
    [done] = entries_of(res, "STEP_SUCCEEDED")
    assert done["details"]["durationMs"] == 1001


# --- failure handling -------------------------------------------------------------------------


def test_skip_on_failure_skips_only_the_step_and_dependents_run() -> None:
    plan = make_plan(
        step("a", skipOnFailure=True, retry={"maxAttempts": 2, "backoffSeconds": 1}),
        step("b", "a"),
    )
    res = run(plan, {"a": fail(1)})
    a = res.final.steps["a"]
    assert (a.status, a.blocked_by, a.attempt) == (K, None, 2)
    assert "skipped (skipOnFailure)" in (a.message or "")
    assert res.start_times("b") == [at(3)]
    assert res.final.steps["b"].status is S
    assert res.final.status is ExecutionStatus.COMPLETED
    [skipped] = entries_of(res, "STEP_SKIPPED")
    assert skipped["stepId"] == "a"
    assert skipped["details"]["reason"] == "skipOnFailure"


def test_failed_step_skips_dependents_transitively_and_independent_work_finishes() -> None:
    plan = make_plan(
        step("a"),
        step("b", "a"),
        step("c", "b"),
        step("x"),
        step("y", "x"),
        step("z", "c", "y"),
    )
    res = run(plan, {"a": fail(1), "x": ok(2), "y": ok(5)})
    st = res.final.steps
    assert st["a"].status is F
    for sid, parent in (("b", "a"), ("c", "b"), ("z", "c")):
        assert (st[sid].status, st[sid].blocked_by, st[sid].finished_at) == (K, parent, at(1))
    assert st["b"].message == "skipped: dependency 'a' failed"
    assert st["c"].message == "skipped: dependency 'b' was skipped"
    assert [st["x"].status, st["y"].status] == [S, S]
    assert res.start_times("y") == [at(2)]
    assert res.final.status is ExecutionStatus.FAILED
    assert res.final.finished_at == at(7)
    assert res.final.message == "1 step(s) failed: a"
    [failed] = entries_of(res, "EXECUTION_FAILED")
    assert failed["details"]["failedSteps"] == ["a"]
    assert res.start_times("b") == res.start_times("c") == res.start_times("z") == []
    skipped = [(e["stepId"], e["details"]["blockedBy"]) for e in entries_of(res, "STEP_SKIPPED")]
    assert skipped == [("b", "a"), ("c", "b"), ("z", "c")]


def test_skip_reason_names_the_failed_dependency_in_a_diamond() -> None:
    plan = make_plan(step("a"), step("b"), step("c", "a", "b"), step("d", "c"))
    res = run(plan, {"a": ok(1), "b": fail(2)})
    assert res.final.steps["c"].blocked_by == "b"
    assert res.final.steps["c"].message == "skipped: dependency 'b' failed"
    assert res.final.steps["d"].blocked_by == "c"


# --- pause / resume / cancel ------------------------------------------------------------------


def test_pause_keeps_running_result_starts_nothing_and_resume_continues() -> None:
    plan = make_plan(step("a"), step("b", "a"), step("c"), maxParallelSteps=1)
    res = run(plan, {"a": ok(3), "b": ok(1), "c": ok(1)}, controls=[pause(1), resume(10)])
    assert res.start_times("a") == [at(0)]
    assert res.final.steps["a"].finished_at == at(3)  # finished while paused: kept
    assert res.start_times("b") == [at(10)]  # nothing started while paused
    assert res.start_times("c") == [at(11)]
    assert (res.final.pauses, res.final.resumes) == (1, 1)
    assert res.final.status is ExecutionStatus.COMPLETED
    paused = [c for c in res.trace if c.now == at(3)]
    assert paused[0].after.status is ExecutionStatus.PAUSED
    assert paused[0].decision.actions == ()
    assert paused[0].decision.next_wakeup is None
    [p] = entries_of(res, "EXECUTION_PAUSED")
    assert (p["timestamp"], p["details"]) == ("2024-01-15T10:00:01.000Z", {"running": ["a"]})
    [r] = entries_of(res, "EXECUTION_RESUMED")
    assert r["timestamp"] == "2024-01-15T10:00:10.000Z"
    assert res.event_types().count("STEP_STARTED") == 3  # resume re-runs nothing


def test_pause_twice_counts_and_logs_both() -> None:
    plan = make_plan(step("a"), step("b", "a"), step("c", "b"))
    res = run(plan, {}, controls=[pause(0.5), resume(2), pause(2.5), resume(4)])
    assert res.start_times("b") == [at(2)]
    assert res.start_times("c") == [at(4)]
    assert (res.final.pauses, res.final.resumes) == (2, 2)
    assert len(entries_of(res, "EXECUTION_PAUSED")) == 2
    assert verify(res.events()).valid


def test_a_paused_execution_waits_forever() -> None:
    plan = make_plan(step("a"), step("b", "a"))
    with pytest.raises(SimulationError, match="nothing to wait for"):
        run(plan, {}, controls=[pause(0.5)])


def test_paused_before_start_starts_nothing() -> None:
    plan = make_plan(step("a"))
    d = schedule(plan, request_for(plan, paused=True), new_execution(plan, "e", T0), [], T0)
    assert d.actions == ()
    assert d.state.status is ExecutionStatus.PAUSED
    assert [e.event_type for e in d.events] == [
        LogEventType.EXECUTION_STARTED,
        LogEventType.EXECUTION_STATUS_CHANGED,
        LogEventType.EXECUTION_STATUS_CHANGED,
        LogEventType.EXECUTION_PAUSED,
    ]


def test_cancel_while_running() -> None:
    plan = make_plan(step("a"), step("b"), step("c", "a"), maxParallelSteps=1)
    res = run(plan, {"a": ok(1), "b": ok(5)}, controls=[cancel(3)])
    assert res.stops() == [(at(3), StopAttempt("b", 1, "cancelled"))]
    st = res.final.steps
    assert st["a"].status is S
    assert st["b"].status is StepStatus.CANCELLED and st["b"].message == "cancelled while RUNNING"
    assert st["c"].status is StepStatus.CANCELLED and st["c"].message == "cancelled while PENDING"
    assert res.final.status is ExecutionStatus.CANCELLED
    assert res.final.finished_at == at(3)
    cancelled = [(e["stepId"], e["details"]["was"]) for e in entries_of(res, "STEP_CANCELLED")]
    assert cancelled == [("b", "RUNNING"), ("c", "PENDING")]
    assert res.event_types()[-1] == "EXECUTION_CANCELLED"


def test_cancel_while_paused() -> None:
    plan = make_plan(step("a"), step("b", "a"))
    res = run(plan, {"a": ok(5)}, controls=[pause(1), cancel(2)])
    assert res.stops() == [(at(2), StopAttempt("a", 1, "cancelled"))]
    assert res.final.status is ExecutionStatus.CANCELLED
    assert {s.status for s in res.final.steps.values()} == {StepStatus.CANCELLED}
    changes = [
        (e["details"]["from"], e["details"]["to"])
        for e in entries_of(res, "EXECUTION_STATUS_CHANGED")
    ]
    assert changes == [("PENDING", "RUNNING"), ("RUNNING", "PAUSED"), ("PAUSED", "CANCELLED")]


def test_cancel_before_start() -> None:
    plan = make_plan(step("a"))
    d = schedule(plan, request_for(plan, cancel=True), new_execution(plan, "e", T0), [], T0)
    assert d.actions == ()
    assert d.state.status is ExecutionStatus.CANCELLED
    assert LogEventType.EXECUTION_STARTED not in [e.event_type for e in d.events]


def test_late_result_after_cancel_is_ignored() -> None:
    plan = make_plan(step("a"), step("b", "a"))
    res = run(
        plan,
        {"a": ok(5)},
        controls=[cancel(1)],
        deliver_late_results=True,
        stop_when_terminal=False,
    )
    assert res.late_results == 1
    [late] = [c for c in res.trace if c.observations]
    assert late.now == at(5)
    assert late.after == late.before
    assert late.decision.actions == () and late.decision.events == ()
    assert res.final.steps["a"].status is StepStatus.CANCELLED
    assert "a" not in res.final.outputs


def test_late_result_of_a_timed_out_attempt_is_ignored() -> None:
    plan = make_plan(step("a", timeoutMs=1000, retry={"maxAttempts": 2, "backoffSeconds": 5}))
    res = run(plan, {"a": [ok(2, {"n": 1}), ok(1, {"n": 2})]}, deliver_late_results=True)
    assert res.late_results == 1
    assert res.start_times("a") == [at(0), at(6)]
    assert res.final.outputs["a"] == {"n": 2}


def test_pausing_a_finished_execution_is_rejected() -> None:
    plan = make_plan(step("a"))
    for outcome, phase in ((ok(1), ExecutionStatus.COMPLETED), (fail(1), ExecutionStatus.FAILED)):
        res = run(plan, {"a": outcome})
        assert res.final.status is phase
        d = schedule(plan, request_for(plan, paused=True), res.final, [], at(9))
        assert d.warnings == (f"cannot pause: execution already {phase}",)
        assert [(e.event_type, e.details["action"]) for e in d.events] == [
            (LogEventType.CONTROL_REJECTED, "PAUSE")
        ]
        assert d.state == res.final and d.actions == ()


def test_cancelling_a_finished_execution_is_rejected() -> None:
    plan = make_plan(step("a"))
    res = run(plan, {"a": ok(1)})
    d = schedule(plan, request_for(plan, cancel=True), res.final, [], at(9))
    assert d.warnings == ("cannot cancel: execution already COMPLETED",)
    assert [(e.event_type, e.details["action"]) for e in d.events] == [
        (LogEventType.CONTROL_REJECTED, "CANCEL")
    ]
    assert d.state == res.final and d.actions == ()


def test_a_pause_left_over_from_before_the_finish_is_not_a_new_request() -> None:
    """Finished while paused (running work ended, nothing left): `paused: true` lingers."""
    plan = make_plan(step("a"))
    first = schedule(plan, request_for(plan), new_execution(plan, "e", T0), [], T0)
    paused = schedule(plan, request_for(plan, paused=True), first.state, [], at(1))
    assert paused.state.status is ExecutionStatus.PAUSED
    done = schedule(
        plan,
        request_for(plan, paused=True),
        paused.state,
        [AttemptFinished("a", 1, StepExecutorResult(success=True))],
        at(2),
    )
    assert done.state.status is ExecutionStatus.COMPLETED
    again = schedule(plan, request_for(plan, paused=True), done.state, [], at(3))
    assert again.warnings == () and again.events == ()


def test_terminal_execution_ignores_observations() -> None:
    plan = make_plan(step("a"))
    res = run(plan, {"a": ok(1)})
    obs = AttemptFinished("a", 1, StepExecutorResult(success=False, error="x"))
    d = schedule(plan, request_for(plan), res.final, [obs], at(2))
    assert d.state == res.final and d.events == () and d.actions == ()


# --- observations: stale, duplicate, unknown --------------------------------------------------


def test_duplicate_and_stale_observations_change_nothing() -> None:
    plan = make_plan(step("a", retry={"maxAttempts": 3, "backoffSeconds": 0}), step("b"))
    req = request_for(plan)
    d1 = schedule(plan, req, new_execution(plan, "e", T0), [], T0)
    bad = AttemptFinished("a", 1, StepExecutorResult(success=False, error="boom"))
    d2 = schedule(plan, req, d1.state, [bad, bad], at(1))
    assert d2.state.steps["a"].attempt == 2  # one failure, not two
    assert d2.state.steps["a"].status is R
    d3 = schedule(plan, req, d2.state, [bad], at(2))  # attempt 1 again: stale
    assert d3.state == d2.state and d3.actions == () and d3.events == ()
    good = AttemptFinished("b", 1, StepExecutorResult(success=True, output={"x": 1}))
    d4 = schedule(plan, req, d3.state, [good], at(3))
    d5 = schedule(plan, req, d4.state, [good], at(3))
    assert d5.state == d4.state and d5.events == ()


def test_observation_for_unknown_step_warns() -> None:
    plan = make_plan(step("a"))
    req = request_for(plan)
    d1 = schedule(plan, req, new_execution(plan, "e", T0), [], T0)
    obs = AttemptFinished("nope", 1, StepExecutorResult(success=True))
    d2 = schedule(plan, req, d1.state, [obs], at(1))
    assert d2.warnings == ("observation for unknown step 'nope' ignored",)
    assert d2.state == d1.state


# --- legal gates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"data_licenses": ["cc_by", "odbl"]},
            [("legalBasis", "required: this runbook needs one of consent, contract")],
        ),
        (
            {},
            [
                ("legalBasis", "required: this runbook needs one of consent, contract"),
                ("dataLicenses", "missing required data license(s): cc_by, odbl"),
            ],
        ),
        (
            {"legal_basis": "legitimate_interests", "data_licenses": ["cc_by", "odbl"]},
            [
                (
                    "legalBasis",
                    "legitimate_interests is not accepted by this runbook "
                    "(needs one of consent, contract)",
                )
            ],
        ),
        (
            {"legal_basis": "contract", "data_licenses": ["cc_by"]},
            [("dataLicenses", "missing required data license(s): odbl")],
        ),
    ],
)
def test_legal_gates_reject_before_anything_starts(fields, expected) -> None:  # type: ignore[no-untyped-def]
    plan = make_plan(
        step("a"),
        step("b", "a"),
        legalBasisRequired=["consent", "contract"],
        dataLicensesRequired=["cc_by", "odbl"],
    )
    res = run(plan, {}, request=request_for(plan, **fields))
    assert res.starts() == []
    assert res.final.status is ExecutionStatus.FAILED
    assert len(res.trace) == 1
    [rejected] = entries_of(res, "EXECUTION_REJECTED")
    assert [(p["field"], p["reason"]) for p in rejected["details"]["problems"]] == expected
    assert "EXECUTION_STARTED" not in res.event_types()
    assert res.event_types()[-1] == "EXECUTION_FAILED"
    assert all(s.status is K for s in res.final.steps.values())
    assert (res.final.message or "").startswith("rejected: ")


def test_legal_gates_pass_with_an_accepted_basis_and_all_licenses() -> None:
    plan = make_plan(step("a"), legalBasisRequired=["consent"], dataLicensesRequired=["cc0"])
    req = request_for(plan, legal_basis="consent", data_licenses=["cc0", "odbl"])
    res = run(plan, {}, request=req)
    assert res.final.status is ExecutionStatus.COMPLETED
    [started] = entries_of(res, "EXECUTION_STARTED")
    assert started["details"]["legalBasis"] == "consent"


# --- KPIs and context -------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [(1, 3), (3, 1)])
def test_kpi_merge_later_in_definition_order_wins(first: float, second: float) -> None:
    plan = make_plan(step("miner"), step("report"), step("failing"), step("other"))
    res = run(
        plan,
        {
            "miner": ok(first, kpis={"confidence": 0.4, "found": 3}),
            "report": ok(second, kpis={"confidence": 0.9}),
            "failing": fail(0.5),
            "other": ok(2, kpis={"extra": True}),
        },
    )
    assert dict(res.final.kpis) == {"confidence": 0.9, "found": 3, "extra": True}
    [failed] = entries_of(res, "EXECUTION_FAILED")
    assert failed["details"]["kpis"] == {"confidence": 0.9, "found": 3, "extra": True}


def test_wire_kpis_are_listed_in_definition_order_whatever_the_completion_order() -> None:
    plan = make_plan(step("first"), step("second"), step("third"))
    res = run(
        plan,
        {
            "first": ok(3, kpis={"a": 1, "b": 2}),
            "second": ok(2, kpis={"c": 3}),
            "third": ok(1, kpis={"d": 4}),
        },
    )
    assert list(res.final.kpis) == ["d", "c", "a", "b"]  # completion order
    assert list(res.final.to_wire()["kpis"]) == ["a", "b", "c", "d"]


def test_previous_outputs_hold_direct_dependencies_in_definition_order() -> None:
    plan = make_plan(
        step("z"),
        step("a"),
        step("unrelated"),
        step("b", "a"),
        step("c", "b", "z"),
        step("d", "c", "a"),
    )
    outs = {sid: ok(1, {"from": sid}) for sid in ("z", "a", "unrelated", "b", "c")}
    res = run(plan, {**outs, "d": ok(1)})
    ctx = build_context(plan, request_for(plan, input={"q": 1}), res.final, "d", 2)
    assert list(ctx.previous_outputs) == ["a", "c"]  # not the ancestors z and b
    assert ctx.previous_outputs["c"] == {"from": "c"}
    assert (ctx.attempt, ctx.input, ctx.step_id, ctx.timeout_ms) == (2, {"q": 1}, "d", 300_000)
    first = build_context(plan, request_for(plan), res.final, "z", 1)
    assert first.previous_outputs == {}


# --- results that cannot be hashed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "kpis"),
    [
        ({"id": 2**64}, {}),  # a 64-bit id: beyond the JSON safe-integer range
        ({"x": float("nan")}, {}),
        ({}, {"score": float("inf")}),
    ],
)
def test_a_result_that_is_not_canonical_json_fails_the_attempt(
    output: dict[str, object], kpis: dict[str, float]
) -> None:
    """The audit hashes outputs and KPIs (RFC 8785): an unhashable result must not crash the
    scheduler (that would wedge the execution); it is a failed attempt, retried per policy."""
    plan = make_plan(step("a", retry={"maxAttempts": 2, "backoffSeconds": 0}), step("b", "a"))
    bad = Full(1, StepExecutorResult(success=True, output=output, kpis=kpis))
    res = run(plan, {"a": [bad, ok(1, {"id": "18446744073709551616"})]})
    [failed] = entries_of(res, "STEP_ATTEMPT_FAILED")
    assert "not canonical JSON" in failed["details"]["error"]
    assert res.start_times("a") == [at(0), at(1)]
    assert res.final.status is ExecutionStatus.COMPLETED
    assert res.final.outputs["a"] == {"id": "18446744073709551616"}
    assert verify(res.events()).valid


@pytest.mark.parametrize("bad", [2**64, float("nan")])
def test_an_input_that_is_not_canonical_json_rejects_the_execution(bad: object) -> None:
    plan = make_plan(step("a"))
    res = run(plan, {}, request=request_for(plan, input={"ids": [1, bad]}))
    assert res.starts() == []
    assert res.final.status is ExecutionStatus.FAILED
    [rejected] = entries_of(res, "EXECUTION_REJECTED")
    [problem] = rejected["details"]["problems"]
    assert problem["field"] == "input"
    assert problem["reason"].startswith("not canonical JSON (RFC 8785)")


def test_a_non_retryable_failure_fails_the_step_without_spending_its_retries() -> None:
    plan = make_plan(step("a", retry={"maxAttempts": 3, "backoffSeconds": 0}), step("b", "a"))
    request = request_for(plan)
    first = schedule(plan, request, new_execution(plan, "x", T0), (), T0)
    assert [a.step_id for a in first.actions if isinstance(a, StartAttempt)] == ["a"]
    permanent = StepExecutorResult(success=False, error="bad config", retryable=False)
    second = schedule(plan, request, first.state, [AttemptFinished("a", 1, permanent)], at(1))
    assert second.actions == ()
    assert second.state.steps["a"].status is F
    assert second.state.steps["a"].attempt == 1
    assert second.state.steps["a"].message == ("failed after 1 attempt: bad config (not retryable)")
    assert second.state.steps["b"].status is K
    assert second.state.status is ExecutionStatus.FAILED
    retryable = StepExecutorResult(success=False, error="flaky")
    again = schedule(plan, request, first.state, [AttemptFinished("a", 1, retryable)], at(1))
    assert [a.attempt for a in again.actions if isinstance(a, StartAttempt)] == [2]


def test_a_lost_attempt_seen_while_cancelling_is_cancelled_not_failed() -> None:
    """A shell that stopped the attempt for the cancel and crashed before recording it sees
    the attempt gone on its next call: that is the cancel, not a failure."""
    plan = make_plan(step("a"), step("b", "a"))
    request = request_for(plan)
    running = schedule(plan, request, new_execution(plan, "x", T0), (), T0).state
    cancelling = request_for(plan, cancel=True)
    lost = AttemptLost("a", 1, "its Job was deleted before the step finished")
    decision = schedule(plan, cancelling, running, [lost], at(1))
    assert decision.state.steps["a"].status is StepStatus.CANCELLED
    assert decision.state.status is ExecutionStatus.CANCELLED
    assert LogEventType.STEP_FAILED not in [e.event_type for e in decision.events]
    finished = StepExecutorResult(success=True, output={"x": 1})
    kept = schedule(plan, cancelling, running, [AttemptFinished("a", 1, finished)], at(1))
    assert kept.state.steps["a"].status is S  # a result that arrived still counts
