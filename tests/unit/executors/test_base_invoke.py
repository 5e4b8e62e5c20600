"""`invoke`: how an executor's outcome becomes a result (retryable or not)."""

from __future__ import annotations

from collections.abc import Callable

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor, NonRetryableError

MakeCtx = Callable[..., StepExecutorContext]
RunStep = Callable[[BaseStepExecutor, StepExecutorContext], StepExecutorResult]


class _Raises(BaseStepExecutor):
    action_type = "TEST_RAISES"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        raise self.exc


def test_non_retryable_error_is_a_failed_result_that_is_not_retried(
    make_ctx: MakeCtx, run_step: RunStep
) -> None:
    result = run_step(_Raises(NonRetryableError("config.bundlePath: not a bundle")), make_ctx())
    assert result.success is False
    assert result.retryable is False
    assert result.error == "config.bundlePath: not a bundle"


def test_other_exceptions_stay_retryable(make_ctx: MakeCtx, run_step: RunStep) -> None:
    result = run_step(_Raises(TimeoutError("upstream slow")), make_ctx())
    assert result.success is False
    assert result.retryable is True
    assert result.error == "TimeoutError: upstream slow"


def test_failure_helper_can_mark_a_result_not_retryable() -> None:
    result = _Raises(ValueError()).failure("invalid", retryable=False)
    assert (result.success, result.retryable, result.error) == (False, False, "invalid")
