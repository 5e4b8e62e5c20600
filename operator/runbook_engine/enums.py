"""Vocabulary shared with the reference design (values kept verbatim so its users feel at home)."""

from __future__ import annotations

from enum import StrEnum


class LegalBasis(StrEnum):
    """GDPR Art. 6 legal bases, spelled as in the reference design."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class DataLicense(StrEnum):
    """Licences under which input data may be held; a runbook may require some of them."""

    PROPRIETARY = "proprietary"
    CC0 = "cc0"
    CC_BY = "cc_by"
    CC_BY_SA = "cc_by_sa"
    CC_BY_NC = "cc_by_nc"
    ODBL = "odbl"
    PUBLIC_DOMAIN = "public_domain"
    INTERNAL_USE_ONLY = "internal_use_only"


class ExecutionStatus(StrEnum):
    """Phase of a whole execution."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_EXECUTION


_TERMINAL_EXECUTION = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class StepStatus(StrEnum):
    """Status of one step across all of its attempts."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


class LogEventType(StrEnum):
    """Audit event types: the reference's eleven, then our documented additions."""

    EXECUTION_STARTED = "EXECUTION_STARTED"
    EXECUTION_STATUS_CHANGED = "EXECUTION_STATUS_CHANGED"
    STEP_STARTED = "STEP_STARTED"
    STEP_SUCCEEDED = "STEP_SUCCEEDED"
    STEP_FAILED = "STEP_FAILED"
    STEP_SKIPPED = "STEP_SKIPPED"
    EXECUTION_PAUSED = "EXECUTION_PAUSED"
    EXECUTION_RESUMED = "EXECUTION_RESUMED"
    EXECUTION_CANCELLED = "EXECUTION_CANCELLED"
    EXECUTION_COMPLETED = "EXECUTION_COMPLETED"
    EXECUTION_FAILED = "EXECUTION_FAILED"
    # Additions (docs/audit.md):
    EXECUTION_REJECTED = "EXECUTION_REJECTED"
    """Validation or a legal gate refused the request; no step started."""
    STEP_ATTEMPT_FAILED = "STEP_ATTEMPT_FAILED"
    """One attempt failed (error or timeout) and a retry is scheduled."""
    STEP_CANCELLED = "STEP_CANCELLED"
    """A pending or running step was cancelled with its execution."""
    CONTROL_REJECTED = "CONTROL_REJECTED"
    """A pause/resume/cancel request that cannot apply (e.g. pausing a finished execution)."""
    STEP_REUSED = "STEP_REUSED"
    """A re-run took this step's output from its parent execution instead of running it."""
    CHECKPOINT = "CHECKPOINT"
    """A signed checkpoint (size, head hash) written by the operator's ledger."""
    APPROVAL_REQUESTED = "APPROVAL_REQUESTED"
    """An APPROVAL step started waiting: approvers, quorum, deadline, instructions."""
    APPROVAL_DECISION = "APPROVAL_DECISION"
    """One person's decision on an APPROVAL step: who, groups, decision, comment, time, and
    whether it counted (or why it was refused)."""


class ControlAction(StrEnum):
    """Control verbs of the reference API."""

    PAUSE = "PAUSE"
    RESUME = "RESUME"
    CANCEL = "CANCEL"
