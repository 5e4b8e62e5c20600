"""The contract between the engine and an executor: what a step receives and what it returns.

Serialised with camelCase keys (the reference design's spelling); the same JSON travels in the
context/result files of a Job pod (`python -m runbook_executors run`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from runbook_engine.wire import CamelModel


class ActionType(StrEnum):
    """Built-in action types (`StepExecutorContext.action_type`). Plugins may register more
    (any UPPER_SNAKE name)."""

    INGEST = "INGEST"
    LOOKUP_GRAPH = "LOOKUP_GRAPH"
    PATTERN_MINER = "PATTERN_MINER"
    GENERATE_REPORT = "GENERATE_REPORT"
    ENRICH_INTEL = "ENRICH_INTEL"
    VALIDATE = "VALIDATE"
    TRANSFORM = "TRANSFORM"
    NOTIFY = "NOTIFY"
    CUSTOM = "CUSTOM"


class Citation(CamelModel):
    """Where a claim comes from: a data set, a document, a STIX object."""

    source: str
    version: str | None = None
    reference: str | None = None
    url: str | None = None
    note: str | None = None


class Evidence(CamelModel):
    """One piece of evidence produced by a step; `hash` is SHA-256 over its canonical data."""

    id: str
    type: str
    data: Any = None
    hash: str
    step_id: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    signature: str | None = None


KpiValue = int | float | bool | str


MAX_MESSAGE_CHARS = 4000
"""Error messages and log tails kept per attempt (the rest is cut, with a marker). Here, in the
contract, because executors clip their errors too; runbook_engine.limits lists it with the rest."""


def clip_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message` cut to `limit` characters (head and tail kept), saying how much was dropped."""
    if len(message) <= limit:
        return message
    keep = max(limit - 60, 2)
    head, tail = message[: keep * 3 // 4], message[-(keep // 4) :]
    return f"{head} …[{len(message) - len(head) - len(tail)} characters cut]… {tail}"


class StepExecutorResult(CamelModel):
    """Outcome of one attempt. `success=False` with `error` is a failed attempt (retried per policy)."""

    success: bool
    output: dict[str, Any] = Field(default_factory=dict)
    kpis: dict[str, KpiValue] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    error: str | None = None
    retryable: bool = Field(
        default=True,
        description="false: the failure cannot change between attempts (bad config, invalid "
        "input); the step fails at once instead of retrying",
    )


class StepExecutorContext(CamelModel):
    """Everything an executor may read. `previous_outputs` maps upstream step id to its output."""

    execution_id: str
    runbook_id: str
    step_id: str
    action_type: str
    attempt: int = Field(ge=1, description="1-based attempt number")
    input: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    previous_outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    legal_basis: str | None = None
    data_licenses: list[str] = Field(default_factory=list)
    authority_ids: list[str] = Field(default_factory=list)
    tenant_id: str | None = None
    started_by: str | None = None
    timeout_ms: int | None = None
