"""The runbook model (pydantic v2): the single source of truth for files, CRDs and the engine.

Field names follow the reference design (camelCase on the wire). Structural checks live here;
graph checks (cycles, unknown dependencies) live in `runbook_engine.plan`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from runbook_engine.container_env import (
    MAX_ENV_FROM,
    EnvEntries,
    EnvFromSource,
    EnvVar,
    env_vars,
)
from runbook_engine.enums import DataLicense, LegalBasis
from runbook_engine.limits import (
    MAX_OUTPUT_LIMIT_BYTES,
    MIN_OUTPUT_LIMIT_BYTES,
    effective_output_limit,
    value_too_big,
)
from runbook_engine.wire import CamelModel

STEP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
ACTION_TYPE_PATTERN = r"^[A-Z][A-Z0-9_]{0,62}$"
DEFAULT_TIMEOUT_MS = 300_000
DEFAULT_MAX_PARALLEL_STEPS = 10


def _within_limits(value: Any) -> Any:
    """Refuse a value nested or sized past the limits before pydantic (or anything that
    recurses) walks it; the problem's field is the one pydantic reports."""
    too_big = value_too_big(value, "")
    if too_big is not None:
        raise ValueError(too_big.problem.reason)
    return value


class RetryPolicy(CamelModel):
    """Exponential backoff: attempt n+1 waits min(backoff × multiplier^(n−1), maxBackoff)."""

    max_attempts: int = Field(
        default=1, ge=1, le=100, description="Attempts in total (1 = no retry)"
    )
    backoff_seconds: float = Field(default=1.0, ge=0, le=86_400)
    backoff_multiplier: float = Field(default=2.0, ge=1, le=100)
    max_backoff_seconds: float | None = Field(default=None, ge=0, le=86_400)

    @field_validator("max_backoff_seconds")
    @classmethod
    def _cap_not_below_base(cls, cap: float | None, info: ValidationInfo) -> float | None:
        """A field validator (not a model one), so the problem names `maxBackoffSeconds`."""
        base = info.data.get("backoff_seconds")  # absent when backoffSeconds itself is invalid
        if cap is not None and base is not None and cap < base:
            raise ValueError(
                f"maxBackoffSeconds ({cap}) is below backoffSeconds ({base}): "
                "the cap would shorten every wait"
            )
        return cap

    def delay_after(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed."""
        delay = self.backoff_seconds * self.backoff_multiplier ** (failed_attempt - 1)
        if self.max_backoff_seconds is not None:
            delay = min(delay, self.max_backoff_seconds)
        return delay


class ContainerSpec(CamelModel):
    """A step's container on a cluster: its own image and command, environment, resources."""

    # The environment's shapes and rules (Secret references, reserved names): container_env.

    image: str | None = Field(default=None, min_length=1)
    command: list[str] | None = None
    args: list[str] | None = None
    env: EnvEntries = Field(
        default_factory=dict,
        description="A map of name: value, or a list of Kubernetes EnvVar (value, or valueFrom "
        "secretKeyRef/configMapKeyRef of this namespace)",
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list,
        max_length=MAX_ENV_FROM,
        description="Kubernetes EnvFromSource: every key of a Secret (secretRef) or ConfigMap "
        "(configMapRef) of this namespace, optionally prefixed",
    )
    resources: dict[str, dict[str, str]] | None = Field(
        default=None, description="Kubernetes requests/limits for this step's pod"
    )

    @model_serializer(mode="wrap")
    def _without_empty_env_from(self, handler: SerializerFunctionWrapHandler) -> Any:
        """No `envFrom` key when there is none, so a definition pinned before the field existed
        hashes as it did (pinning re-hashes the dump) and an in-flight execution survives an
        upgrade of the operator."""
        data = handler(self)
        if not self.env_from and isinstance(data, dict):
            data.pop("envFrom", None)
            data.pop("env_from", None)
        return data

    def env_vars(self) -> list[EnvVar]:
        """`env` in either shape as a list of EnvVar."""
        return env_vars(self.env)

    def secret_env_names(self) -> list[str]:
        """Variables whose value comes from a Secret key: what a shell scrubs from results."""
        return [e.name for e in self.env_vars() if e.secret_ref is not None]


class RunbookStep(CamelModel):
    """One node of the DAG."""

    id: str = Field(pattern=STEP_ID_PATTERN, description="Unique step id")
    name: str = Field(default="", max_length=253)
    description: str | None = None
    action_type: str = Field(pattern=ACTION_TYPE_PATTERN, description="Executor type")
    depends_on: list[str] = Field(default_factory=list, description="Parent step ids")
    config: dict[str, Any] = Field(default_factory=dict)
    retry_policy: RetryPolicy | None = None
    timeout_ms: int = Field(default=DEFAULT_TIMEOUT_MS, ge=1, le=7 * 86_400_000)
    skip_on_failure: bool = False
    container: ContainerSpec | None = None

    @field_validator("config", mode="before")
    @classmethod
    def _config_within_limits(cls, config: Any) -> Any:
        return _within_limits(config)

    @property
    def max_attempts(self) -> int:
        return self.retry_policy.max_attempts if self.retry_policy else 1


class Benchmarks(CamelModel):
    """Expected durations, compared with actual ones in KPIs."""

    total_ms: int = Field(ge=0)
    per_step_ms: dict[str, int] = Field(default_factory=dict)


class RunbookDefinition(CamelModel):
    """A runbook: metadata, legal requirements and a DAG of steps."""

    id: str = Field(min_length=1, max_length=253)
    name: str = Field(default="", max_length=253)
    version: str = "0.0.0"
    purpose: str = ""
    legal_basis_required: list[LegalBasis] = Field(default_factory=list)
    data_licenses_required: list[DataLicense] = Field(default_factory=list)
    assumptions: list[str] = Field(default_factory=list)
    kpis: list[str] = Field(default_factory=list)
    steps: list[RunbookStep] = Field(default_factory=list)
    benchmarks: Benchmarks | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    max_parallel_steps: int = Field(default=DEFAULT_MAX_PARALLEL_STEPS, ge=1, le=1000)
    files_config_map: str | None = Field(
        default=None,
        max_length=253,
        description="On a cluster: ConfigMap whose keys are the runbook's data files (relative "
        "paths in step configs resolve against it, as they resolve against the runbook's "
        "folder locally)",
    )
    max_output_bytes: int | None = Field(
        default=None,
        ge=MIN_OUTPUT_LIMIT_BYTES,
        le=MAX_OUTPUT_LIMIT_BYTES,
        description="Largest step output (canonical JSON bytes); default 1 MiB. A shell may cap "
        "it lower (runbookctl --max-output-bytes, the operator's RUNBOOK_MAX_OUTPUT_BYTES)",
    )

    @property
    def output_limit(self) -> int:
        """This runbook's output limit in bytes (before any shell cap)."""
        return effective_output_limit(self.max_output_bytes)


class RunbookRef(CamelModel):
    """Which Runbook an execution runs (by object name, or by the definition's id locally)."""

    name: str = Field(min_length=1, max_length=253)


class RerunOf(CamelModel):
    """The execution a re-run reuses (same namespace on a cluster; an execution id locally)."""

    name: str = Field(min_length=1, max_length=253)


MAX_RERUN_STEPS = 1000
"""`from`/`only` list at most this many step ids (a runbook holds at most 1,000 steps)."""
StepIdRef = Annotated[str, Field(min_length=1, max_length=63)]
"""A step id named by a request (bounded, so the CRD's CEL rules stay within their cost)."""


class ExecutionRequest(CamelModel):
    """What the user asks for: the RunbookExecution spec. `paused` and `cancel` are levels."""

    runbook_ref: RunbookRef
    input: dict[str, Any] = Field(default_factory=dict)
    tenant_id: str | None = None
    started_by: str | None = None
    legal_basis: LegalBasis | None = None
    data_licenses: list[DataLicense] = Field(default_factory=list)
    authority_ids: list[str] = Field(default_factory=list)
    paused: bool = Field(default=False, description="true: start no new attempts")
    cancel: bool = Field(default=False, description="true: stop running steps and end CANCELLED")
    max_parallel_steps: int | None = Field(
        default=None, ge=1, le=1000, description="Overrides the runbook's maxParallelSteps"
    )
    rerun_of: RerunOf | None = Field(
        default=None,
        description="Re-run this finished execution: reuse the outputs of its SUCCEEDED steps "
        "and run the rest (docs/rerun.md)",
    )
    rerun_from: list[StepIdRef] = Field(
        default_factory=list,
        alias="from",
        max_length=MAX_RERUN_STEPS,
        description="Re-run: these steps and everything downstream of them",
    )
    only: list[StepIdRef] = Field(
        default_factory=list,
        max_length=MAX_RERUN_STEPS,
        description="Re-run: exactly these steps (their upstream steps must have SUCCEEDED)",
    )
    latest: bool = Field(
        default=False,
        description="Re-run: use the Runbook as it is now, not the definition the parent pinned",
    )

    @model_validator(mode="after")
    def _rerun_options(self) -> ExecutionRequest:
        """`from`, `only` and `latest` mean something only for a re-run, and not together."""
        if self.rerun_of is None:
            given = [
                wire
                for wire, value in (
                    ("from", self.rerun_from),
                    ("only", self.only),
                    ("latest", self.latest),
                )
                if value
            ]
            if given:
                raise ValueError(f"{', '.join(given)}: only for a re-run (set rerunOf)")
        if self.rerun_from and self.only:
            raise ValueError("from and only: give one of them (only runs exactly its steps)")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_rerun(self, handler: SerializerFunctionWrapHandler) -> Any:
        """No re-run keys in a request that is not a re-run, so a pinned request of a plain
        execution reads (and hashes) as it did before re-runs existed."""
        data = handler(self)
        if self.rerun_of is None and isinstance(data, dict):
            for key in ("rerunOf", "rerun_of", "from", "rerun_from", "only", "latest"):
                data.pop(key, None)
        return data

    @field_validator("input", mode="before")
    @classmethod
    def _input_within_limits(cls, value: Any) -> Any:
        return _within_limits(value)

    def provenance(self) -> dict[str, Any]:
        """Who asked, and under which legal basis, licences and authorities, in wire spelling:
        what the audit log records of the request."""
        return {
            "legalBasis": str(self.legal_basis) if self.legal_basis else None,
            "dataLicenses": [str(x) for x in self.data_licenses],
            "authorityIds": list(self.authority_ids),
            "tenantId": self.tenant_id,
            "startedBy": self.started_by,
        }
