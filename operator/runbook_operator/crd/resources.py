"""Kubernetes resource models: the `Runbook` and `RunbookExecution` kinds.

Specs reuse the engine model verbatim (RunbookDefinition, ExecutionRequest); the status models
describe what the operator writes, in the same wire form as `ExecutionState.to_wire`. The CRDs
in `crds/` are generated from these classes by `hack/gen_crds.py` (a test fails on drift).
They live beside the operator, not in the engine: the engine knows nothing of Kubernetes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from runbook_engine.approval import MAX_COMMENT
from runbook_engine.enums import ExecutionStatus, StepStatus
from runbook_engine.model import STEP_ID_PATTERN, ExecutionRequest, RunbookDefinition
from runbook_engine.wire import CamelModel


class Condition(CamelModel):
    """Standard Kubernetes condition (metav1.Condition shape)."""

    type: str = Field(min_length=1, max_length=316)
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str
    reason: str = Field(min_length=1, max_length=1024)
    message: str = Field(default="", max_length=32768)


class StepStatusEntry(CamelModel):
    """Compact per-step status (outputs live outside the object, see docs/operator.md)."""

    step_id: str
    status: StepStatus
    attempt: int = Field(ge=0)
    started_at: str | None = None
    attempt_started_at: str | None = None
    finished_at: str | None = None
    next_attempt_at: str | None = None
    message: str | None = None
    blocked_by: str | None = None
    output_hash: str | None = Field(
        default=None, description="SHA-256 of the output's canonical JSON (SUCCEEDED steps)"
    )
    job_name: str | None = Field(default=None, description="Job of the current/last attempt")
    reused_from: str | None = Field(
        default=None,
        description="Re-run: the execution whose output this SUCCEEDED step reuses (no Job ran)",
    )


class AuditHead(CamelModel):
    """Where the tamper-evident log stands: its length, head hash and recent entries."""

    count: int = Field(ge=0)
    head: str = Field(pattern=r"^[0-9a-f]{64}$")
    ledger: str | None = Field(
        default=None, description="ConfigMap (prefix) holding the full ledger"
    )
    recent: list[dict[str, Any]] = Field(default_factory=list)
    checkpoint: dict[str, Any] | None = Field(
        default=None, description="The latest signed checkpoint (count, head, signature)"
    )


class Problem(CamelModel):
    """One validation problem: the field it concerns and why."""

    field: str
    reason: str


class RunbookStatus(CamelModel):
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    step_count: int | None = Field(default=None, ge=0)
    definition_hash: str | None = None
    problems: list[Problem] = Field(default_factory=list, description="Why it is not Valid")


class RunbookExecutionStatus(CamelModel):
    execution_id: str | None = None
    runbook_id: str | None = None
    phase: ExecutionStatus | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None
    progress: str | None = Field(default=None, description="Finished steps / all steps, e.g. 3/5")
    definition_hash: str | None = Field(
        default=None, description="SHA-256 of the pinned definition (canonical JSON)"
    )
    definition_ref: str | None = Field(
        default=None, description="ConfigMap holding the definition pinned at start"
    )
    steps: list[StepStatusEntry] = Field(default_factory=list)
    kpis: dict[str, Any] = Field(default_factory=dict)
    kpi_sources: dict[str, int] = Field(default_factory=dict)
    pauses: int = Field(default=0, ge=0)
    resumes: int = Field(default=0, ge=0)
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    audit: AuditHead | None = None
    awaiting_approval: str | None = Field(
        default=None,
        description="APPROVAL steps waiting for decisions (comma-separated step ids)",
    )


class ApprovalExecutionRef(CamelModel):
    name: str = Field(min_length=1, max_length=253, description="RunbookExecution name")


class RunbookApprovalSpec(CamelModel):
    """One person's decision on an APPROVAL step. Who decided is not a field: admission stamps
    the authenticated user in the created-by annotations (docs/approvals.md)."""

    execution_ref: ApprovalExecutionRef
    step_id: str = Field(pattern=STEP_ID_PATTERN, max_length=63)
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=MAX_COMMENT)


class RunbookApprovalStatus(CamelModel):
    """The operator's verdict: counted, or refused and why. Written once."""

    verdict: Literal["Counted", "Refused"] | None = None
    code: str | None = Field(default=None, description="Why refused, as a stable code")
    reason: str | None = Field(default=None, max_length=2048)
    user: str | None = Field(default=None, description="The authenticated user it counted as")
    evaluated_at: str | None = None


class ObjectMeta(CamelModel):
    """The part of metav1.ObjectMeta the tools read (the apiserver owns the schema)."""

    model_config = CamelModel.model_config | {"extra": "allow"}
    name: str | None = None
    namespace: str | None = None


class Runbook(CamelModel):
    api_version: Literal["runbook-operator.dev/v1alpha1"] = "runbook-operator.dev/v1alpha1"
    kind: Literal["Runbook"] = "Runbook"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RunbookDefinition
    status: RunbookStatus | None = None


class RunbookExecution(CamelModel):
    api_version: Literal["runbook-operator.dev/v1alpha1"] = "runbook-operator.dev/v1alpha1"
    kind: Literal["RunbookExecution"] = "RunbookExecution"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ExecutionRequest
    status: RunbookExecutionStatus | None = None


class RunbookApproval(CamelModel):
    api_version: Literal["runbook-operator.dev/v1alpha1"] = "runbook-operator.dev/v1alpha1"
    kind: Literal["RunbookApproval"] = "RunbookApproval"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RunbookApprovalSpec
    status: RunbookApprovalStatus | None = None
