"""BaseStepExecutor: the reference design's executor API, in Python."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

from runbook_engine.canonical import canonical_sha256
from runbook_engine.contract import (
    MAX_MESSAGE_CHARS,
    Citation,
    Evidence,
    KpiValue,
    StepExecutorContext,
    StepExecutorResult,
    clip_message,
)

__all__ = ["BaseStepExecutor", "ConfigError", "NonRetryableError", "canonical_sha256", "invoke"]

T = TypeVar("T")


class NonRetryableError(Exception):
    """Raise from `execute` when another attempt cannot succeed (bad config, invalid input):
    the step fails at once instead of spending its retry policy on the same error."""


class ConfigError(NonRetryableError, ValueError):
    """A step's config or input is unusable (wrong type, range or shape); the message starts
    with the offending field, e.g. ``config.maxDepth: must be between 1 and 5``. Not retried:
    the same config fails the same way on every attempt."""


class BaseStepExecutor(ABC):
    """Subclass, set `action_type`, implement `execute` (sync or async).

    An exception raised from `execute` is a failed attempt carrying the exception's message;
    `NonRetryableError` (or `failure(..., retryable=False)`) also skips the remaining retries.
    """

    action_type: ClassVar[str]
    preload_modules: ClassVar[tuple[str, ...]] = ()
    """Modules `execute` imports lazily (to keep a Job pod's start fast) that a long-lived
    process about to fork many attempts (the local runner's fork server) imports up front."""

    @abstractmethod
    def execute(
        self, ctx: StepExecutorContext
    ) -> StepExecutorResult | Awaitable[StepExecutorResult]:
        """Do the step's work for one attempt."""

    # -- reading -----------------------------------------------------------------------------
    def get_input(self, ctx: StepExecutorContext, key: str, default: T | None = None) -> Any:
        """A key of the execution input, or `default`."""
        return ctx.input.get(key, default)

    def get_config(self, ctx: StepExecutorContext, key: str, default: T | None = None) -> Any:
        """A key of the step's config, or `default`."""
        return ctx.config.get(key, default)

    def find_previous_output(
        self, ctx: StepExecutorContext, key: str, default: T | None = None
    ) -> Any:
        """The value of `key` in the nearest upstream output that has it.

        Upstream outputs are searched from the most recently declared step backwards
        (`previous_outputs` keeps dependency order), as the reference did.
        """
        for output in reversed(list(ctx.previous_outputs.values())):
            if isinstance(output, dict) and key in output:
                return output[key]
        return default

    # -- results -----------------------------------------------------------------------------
    def success(
        self,
        output: dict[str, Any] | None = None,
        *,
        kpis: dict[str, KpiValue] | None = None,
        evidence: list[Evidence] | None = None,
        citations: list[Citation] | None = None,
    ) -> StepExecutorResult:
        return StepExecutorResult(
            success=True,
            output=output or {},
            kpis=kpis or {},
            evidence=evidence or [],
            citations=citations or [],
        )

    def failure(
        self,
        error: str,
        *,
        output: dict[str, Any] | None = None,
        kpis: dict[str, KpiValue] | None = None,
        retryable: bool = True,
    ) -> StepExecutorResult:
        return StepExecutorResult(
            success=False, error=error, output=output or {}, kpis=kpis or {}, retryable=retryable
        )

    def create_evidence(
        self,
        evidence_type: str,
        data: Any,
        *,
        step_id: str | None = None,
        citations: list[Citation] | None = None,
    ) -> Evidence:
        """Evidence whose id and hash derive from its content, so re-runs produce the same ids."""
        digest = canonical_sha256({"type": evidence_type, "data": data})
        return Evidence(
            id=f"ev-{digest[:16]}",
            type=evidence_type,
            data=data,
            hash=digest,
            step_id=step_id,
            citations=citations or [],
        )

    def create_citation(
        self,
        source: str,
        *,
        version: str | None = None,
        reference: str | None = None,
        url: str | None = None,
        note: str | None = None,
    ) -> Citation:
        return Citation(source=source, version=version, reference=reference, url=url, note=note)


async def invoke(executor: BaseStepExecutor, ctx: StepExecutorContext) -> StepExecutorResult:
    """Run one attempt; exceptions become failed results (an attempt never crashes the runner)."""
    from runbook_executors.secrets import attempt_scope, scrub_result

    with attempt_scope() as secrets:
        result = await _attempt(executor, ctx)
    if result.error is not None and len(result.error) > MAX_MESSAGE_CHARS:
        result = result.model_copy(update={"error": clip_message(result.error)})
    return scrub_result(result, secrets)  # no secret leaves, not even in an error message


async def _attempt(executor: BaseStepExecutor, ctx: StepExecutorContext) -> StepExecutorResult:
    try:
        result = executor.execute(ctx)
        if inspect.isawaitable(result):
            result = await result
    except NonRetryableError as exc:
        return StepExecutorResult(success=False, error=str(exc), retryable=False)
    except Exception as exc:  # any executor error is a failed attempt
        return StepExecutorResult(success=False, error=f"{type(exc).__name__}: {exc}")
    if not isinstance(result, StepExecutorResult):
        return StepExecutorResult(
            success=False,
            error=f"executor {type(executor).__name__} returned {type(result).__name__}, "
            "expected StepExecutorResult",
        )
    return result
