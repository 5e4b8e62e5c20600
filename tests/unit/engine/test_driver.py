"""The shared drive step: actor rules, control refusal, and replay safety."""

from __future__ import annotations

import pytest

from runbook_engine.audit import AuditChain, AuditEvent, verify
from runbook_engine.contract import StepExecutorResult
from runbook_engine.control import REQUEST_CHANGES, ControlError, apply_control, refusal
from runbook_engine.driver import Actors, actor_for, drive, with_identity
from runbook_engine.enums import ControlAction, ExecutionStatus, LogEventType
from runbook_engine.identity import Identity
from runbook_engine.scheduler import AttemptFinished, AttemptLost, new_execution

from .sim import T0, at, make_plan, request_for, step


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        (LogEventType.EXECUTION_STARTED, "alice"),
        (LogEventType.EXECUTION_REJECTED, "alice"),
        (LogEventType.EXECUTION_PAUSED, "bob"),
        (LogEventType.EXECUTION_RESUMED, "bob"),
        (LogEventType.EXECUTION_CANCELLED, "bob"),
        (LogEventType.STEP_STARTED, "shell"),
        (LogEventType.EXECUTION_COMPLETED, "shell"),
    ],
)
def test_actor_rules(event_type: LogEventType, expected: str) -> None:
    assert actor_for(event_type, Actors("shell", started_by="alice", control="bob")) == expected


def test_unknown_people_fall_back_to_the_shell() -> None:
    assert actor_for(LogEventType.EXECUTION_STARTED, Actors("shell")) == "shell"
    assert actor_for(LogEventType.EXECUTION_PAUSED, Actors("shell")) == "shell"


@pytest.mark.parametrize("status", [s for s in ExecutionStatus if s.terminal])
@pytest.mark.parametrize("action", list(ControlAction))
def test_a_finished_execution_refuses_every_control_action(
    status: ExecutionStatus, action: ControlAction
) -> None:
    plan = make_plan(step("a"))
    reason = refusal(action, status, "x-1")
    assert reason == f"cannot {action.lower()}: execution x-1 is already {status}"
    with pytest.raises(ControlError, match="already"):
        apply_control(request_for(plan), action, status, "x-1")


@pytest.mark.parametrize("status", [s for s in ExecutionStatus if not s.terminal])
@pytest.mark.parametrize("action", list(ControlAction))
def test_control_sets_the_request_level(status: ExecutionStatus, action: ControlAction) -> None:
    plan = make_plan(step("a"))
    assert refusal(action, status, "x-1") is None
    changed = apply_control(request_for(plan, paused=True), action, status, "x-1")
    for field, value in REQUEST_CHANGES[action].items():
        assert getattr(changed, field) is value


def test_drive_records_events_once_even_when_replayed() -> None:
    """A shell that crashed after writing the ledger replays the same transition: no duplicates."""
    plan = make_plan(step("a"), step("b", "a"))
    request = request_for(plan, started_by="alice")
    chain = AuditChain("x-1")
    state = new_execution(plan, "x-1", T0)
    actors = Actors("op", started_by=request.started_by)
    first = drive(plan, request, state, chain, (), T0, actors)
    assert [e["eventType"] for e in first.entries] == [
        "EXECUTION_STARTED",
        "EXECUTION_STATUS_CHANGED",
        "STEP_STARTED",
    ]
    assert first.entries[0]["actorId"] == "alice"
    assert first.entries[2]["actorId"] == "op"
    replay = drive(plan, request, state, chain, (), at(1), actors)
    assert replay.entries == ()
    assert replay.state.steps["a"].attempt == 1
    assert verify(chain.entries).valid


ALICE = Identity("alice", ("tenant-a", "system:authenticated"), "u-1")
BOB = Identity("bob", ("sre",), None)


def test_the_authenticated_user_wins_over_the_claim_and_is_recorded_beside_it() -> None:
    plan = make_plan(step("a"))
    request = request_for(plan, started_by="ceo@corp")
    chain = AuditChain("x-1")
    state = new_execution(plan, "x-1", T0)
    actors = Actors("op", started_by="ceo@corp", requester=ALICE)
    started = drive(plan, request, state, chain, (), T0, actors).entries[0]
    assert started["eventType"] == "EXECUTION_STARTED"
    assert started["actorId"] == "alice"
    assert started["details"]["startedBy"] == "ceo@corp"  # the claim, kept as such
    assert started["details"]["authenticatedUser"] == {
        "username": "alice",
        "groups": ["tenant-a", "system:authenticated"],
        "uid": "u-1",
        "source": "kubernetes",
    }
    assert verify(chain.entries, execution_id="x-1").valid


@pytest.mark.parametrize(
    "event_type",
    [
        LogEventType.EXECUTION_PAUSED,
        LogEventType.EXECUTION_RESUMED,
        LogEventType.EXECUTION_CANCELLED,
    ],
)
def test_a_control_names_its_authenticated_user(event_type: LogEventType) -> None:
    actors = Actors("op", control="kubectl-patch", controller=BOB)
    assert actor_for(event_type, actors) == "bob"
    event = with_identity(AuditEvent("k", event_type), actors)
    assert event.details["authenticatedUser"]["username"] == "bob"


def test_events_no_person_caused_carry_no_identity() -> None:
    actors = Actors("op", requester=ALICE, controller=BOB)
    event = with_identity(AuditEvent("k", LogEventType.STEP_STARTED, "a"), actors)
    assert "authenticatedUser" not in event.details
    assert actor_for(LogEventType.STEP_STARTED, actors) == "op"


def test_where_an_attempt_ran_is_recorded_in_its_end_entry() -> None:
    plan = make_plan(step("a"))
    request = request_for(plan)
    chain = AuditChain("x-1")
    state = drive(plan, request, new_execution(plan, "x-1", T0), chain, (), T0, Actors("op")).state
    where = {"image": "img:1", "imageID": "img@sha256:" + "ab" * 32, "node": "node-1"}
    done = AttemptFinished("a", 1, StepExecutorResult(success=True, output={}), where)
    entries = drive(plan, request, state, chain, [done], at(1), Actors("op")).entries
    ended = [e for e in entries if e["eventType"] == "STEP_SUCCEEDED"]
    assert ended and ended[0]["details"]["ranOn"] == where
    lost = AttemptLost("a", 1, "gone", where)
    assert lost.ran_on == where
