"""StepState transitions: what carries over from status to status and what is reset."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_engine.enums import StepStatus
from runbook_engine.state import StepState

from .sim import T0

times = st.none() | st.integers(0, 10_000).map(lambda ms: T0 + timedelta(milliseconds=ms))
texts = st.none() | st.text(max_size=5)
states = st.builds(
    StepState,
    step_id=st.sampled_from(["a", "b"]),
    status=st.sampled_from(list(StepStatus)),
    attempt=st.integers(0, 5),
    started_at=times,
    attempt_started_at=times,
    finished_at=times,
    next_attempt_at=times,
    message=texts,
    blocked_by=texts,
    output_hash=texts,
)
NOW = T0 + timedelta(seconds=20)


@given(states)
def test_an_attempt_starts_running_with_a_clean_slate(step: StepState) -> None:
    started = step.with_attempt(NOW)
    assert started == StepState(
        step.step_id,
        StepStatus.RUNNING,
        attempt=step.attempt + 1,
        started_at=step.started_at or NOW,
        attempt_started_at=NOW,
    )


@given(states)
def test_a_retry_waits_pending_and_keeps_the_attempt_history(step: StepState) -> None:
    retry_at = NOW + timedelta(seconds=3)
    waiting = step.with_retry(retry_at, "attempt 1/3 failed")
    assert waiting == StepState(
        step.step_id,
        StepStatus.PENDING,
        attempt=step.attempt,
        started_at=step.started_at,
        attempt_started_at=step.attempt_started_at,
        next_attempt_at=retry_at,
        message="attempt 1/3 failed",
    )


@given(states, st.sampled_from([s for s in StepStatus if s.terminal]), texts, texts, texts)
def test_an_outcome_ends_the_step_and_says_only_what_it_is_given(
    step: StepState,
    status: StepStatus,
    message: str | None,
    blocked_by: str | None,
    output_hash: str | None,
) -> None:
    ended = step.with_outcome(
        status, NOW, message=message, blocked_by=blocked_by, output_hash=output_hash
    )
    assert ended == StepState(
        step.step_id,
        status,
        attempt=step.attempt,
        started_at=step.started_at,
        attempt_started_at=step.attempt_started_at,
        finished_at=NOW,
        message=message,
        blocked_by=blocked_by,
        output_hash=output_hash,
    )


@pytest.mark.parametrize("status", [s for s in StepStatus if not s.terminal])
def test_an_outcome_must_be_terminal(status: StepStatus) -> None:
    with pytest.raises(ValueError, match=f"{status} is not a terminal step status"):
        StepState("a").with_outcome(status, NOW)


def test_the_wire_form_repeats_the_attempt_start_only_after_a_retry() -> None:
    t0 = T0
    first = StepState("a").with_attempt(t0)
    assert "attemptStartedAt" not in first.to_wire()
    assert StepState.from_wire(first.to_wire()) == first
    second = first.with_retry(t0 + timedelta(seconds=1), "boom").with_attempt(
        t0 + timedelta(seconds=5)
    )
    assert second.to_wire()["attemptStartedAt"] != second.to_wire()["startedAt"]
    assert StepState.from_wire(second.to_wire()) == second
