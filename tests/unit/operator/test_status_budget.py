"""The execution status always fits: 1,000 steps with 4,000-character messages, huge KPIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from immutables import Map

from runbook_engine.audit import AuditChain, AuditEvent
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.limits import MAX_MESSAGE_CHARS, clip_message
from runbook_engine.state import ExecutionState, StepState
from runbook_operator.execution.status import (
    MIN_STEP_MESSAGE_CHARS,
    STATUS_BUDGET_BYTES,
    STEP_MESSAGE_CHARS,
    execution_status,
    status_bytes,
    within_budget,
)

from .kubefakes import REF

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _state(steps: int, message_chars: int, kpis: dict[str, Any] | None = None) -> ExecutionState:
    order = tuple(f"step-{i:04d}-{'x' * 40}" for i in range(steps))
    started = NOW - timedelta(minutes=5)
    states = {
        sid: StepState(
            step_id=sid,
            status=StepStatus.FAILED,
            attempt=3,
            started_at=started,
            attempt_started_at=started + timedelta(seconds=2),
            finished_at=NOW,
            message=clip_message(f"{sid}: " + "boom! " * message_chars),
        )
        for sid in order
    }
    return ExecutionState(
        execution_id=REF.execution_id,
        runbook_id="big",
        status=ExecutionStatus.FAILED,
        steps=Map(states),
        created_at=started,
        order=order,
        started_at=started,
        finished_at=NOW,
        message="step failed: " + "why " * 2000,
        kpis=kpis or {},
        kpi_sources={k: i for i, k in enumerate(kpis or {})},
    )


def _chain(detail_chars: int) -> AuditChain:
    chain = AuditChain(REF.execution_id)
    for i in range(8):
        details = {"error": "e" * detail_chars, "n": i}
        chain.append(
            AuditEvent(f"k{i}", LogEventType.STEP_FAILED, f"s{i}", details),
            actor_id="runbook-operator",
            timestamp=NOW,
        )
    return chain


def _status(
    state: ExecutionState, chain: AuditChain, previous: dict[str, Any] | None = None
) -> Any:
    return execution_status(
        state,
        chain,
        ref=REF,
        generation=1,
        now=NOW,
        previous=previous or {},
        extra={"definitionHash": "a" * 64, "definitionRef": "cm"},
        failure_reason="StepFailed",
    )


def test_a_1000_step_status_with_4000_character_messages_fits_the_budget() -> None:
    state = _state(1000, MAX_MESSAGE_CHARS)
    assert all(len(s.message or "") > MAX_MESSAGE_CHARS - 100 for s in state.steps.values())
    unbounded = state.to_wire(with_outputs=False)
    assert status_bytes(unbounded) > 3 * 1024 * 1024  # what it was: far over etcd's 1.5 MiB

    status = _status(state, _chain(MAX_MESSAGE_CHARS))
    assert status_bytes(status) <= STATUS_BUDGET_BYTES
    messages = [s["message"] for s in status["steps"]]
    assert len(messages) == 1000
    assert all(MIN_STEP_MESSAGE_CHARS - 30 < len(m) <= STEP_MESSAGE_CHARS for m in messages)
    assert all(
        m.startswith(s["stepId"][:20]) and "characters cut]" in m
        for m, s in zip(messages, status["steps"], strict=True)
    )


def test_a_bounded_status_read_back_gives_the_same_status() -> None:
    """The status is the engine's state: a second reconcile must not rewrite it."""
    first = _status(_state(1000, MAX_MESSAGE_CHARS), _chain(MAX_MESSAGE_CHARS))
    reloaded = ExecutionState.from_wire(first).evolve(
        order=tuple(s["stepId"] for s in first["steps"])
    )
    second = _status(reloaded, _chain(MAX_MESSAGE_CHARS), previous=first)
    assert second == first


def test_a_small_status_is_left_whole_but_step_messages_are_clipped() -> None:
    state = _state(3, MAX_MESSAGE_CHARS)
    status = _status(state, _chain(100))
    assert all(
        STEP_MESSAGE_CHARS - 60 < len(s["message"]) <= STEP_MESSAGE_CHARS for s in status["steps"]
    )
    assert all(e.get("details") for e in status["audit"]["recent"])
    short = _state(3, 10)
    assert [s["message"] for s in _status(short, _chain(10))["steps"]] == [
        short.steps[sid].message for sid in short.order
    ]


def test_huge_kpis_are_clipped_then_left_out_until_the_status_fits() -> None:
    kpis = {f"kpi{i}": "v" * 100_000 for i in range(20)} | {"score": 0.93}
    status = _status(_state(10, 10, kpis), _chain(10))
    assert status_bytes(status) <= STATUS_BUDGET_BYTES
    assert all(len(v) <= 256 for v in status["kpis"].values() if isinstance(v, str))
    assert status["kpis"]["kpi0"].startswith("vvv")

    many = {f"kpi{i:05d}": "v" * 300 for i in range(10_000)}
    status = _status(_state(10, 10, many), _chain(10))
    assert status_bytes(status) <= STATUS_BUDGET_BYTES
    kept = list(status["kpis"])
    assert kept == sorted(many)[: len(kept)] and 0 < len(kept) < len(many)


def test_the_audit_details_go_before_the_kpis_but_seq_and_hash_stay() -> None:
    status = within_budget(
        {
            "steps": [],
            "kpis": {"k": "v" * 1000},
            "audit": {"recent": [{"seq": 1, "hash": "h", "details": {"x": "y" * 5000}}]},
        },
        budget=2000,
    )
    assert status["audit"]["recent"] == [{"seq": 1, "hash": "h"}]
    assert status["kpis"] == {"k": "v" * 1000}
