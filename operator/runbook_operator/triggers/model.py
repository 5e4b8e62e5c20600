"""The `RunbookTrigger` kind: one object per way a runbook starts by itself (pure models).

A trigger names a Runbook and the request fields an execution needs (legal basis, licences),
and exactly one source: `alertmanager` (a webhook the receiver serves at
`/alertmanager/<namespace>/<trigger>`) or `schedule` (cron). `input` maps the event (the
Alertmanager payload, or the schedule's time) onto the execution's input with JMESPath. The CRD
is generated from these classes (crd/generate.py); the operator validates again on read, so a
trigger the apiserver accepted but the model refuses ends `Stalled` with the reason.
"""

from __future__ import annotations

import functools
import re
from enum import StrEnum
from typing import Any, Literal

import jmespath
import jmespath.exceptions
import re2
from pydantic import Field, field_validator, model_validator

from runbook_engine.enums import DataLicense, LegalBasis
from runbook_engine.model import RunbookRef
from runbook_engine.wire import CamelModel
from runbook_operator.crd.resources import Condition, ObjectMeta
from runbook_operator.triggers.schedule import Schedule

LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
"""Prometheus label names (the only keys `match` can compare)."""
MAX_MATCHERS = 32
MAX_LABEL_VALUE = 1024
MAX_REGEX = 256
REGEX_MEMORY = 1 << 20
"""Bytes RE2 may use for one compiled pattern."""
MAX_INPUT_FIELDS = 64
MAX_EXPRESSION = 512
MAX_ACTIVE_LISTED = 50
"""Executions listed in status.active (counted beyond it, never listed: the object stays small)."""


@functools.lru_cache(maxsize=1024)
def compile_label_regex(pattern: str) -> Any:
    """An anchored RE2 pattern, as Alertmanager's `=~` matcher reads it. RE2 matches in linear
    time, so a tenant's pattern cannot stall the receiver (Python's `re` backtracks)."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MEMORY
    try:  # alone first: `a)|(b` is refused, though `^(?:a)|(b)$` would compile unanchored
        re2.compile(pattern, options)
        return re2.compile(f"^(?:{pattern})$", options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args else str(exc)
        raise ValueError(f"not an RE2 regular expression ({reason})") from None


class OnResolved(StrEnum):
    IGNORE = "ignore"
    CANCEL = "cancel"


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class SecretKeyRef(CamelModel):
    """A key of a Secret in the trigger's own namespace (never another's)."""

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default="token", min_length=1, max_length=253)


class AlertmanagerSource(CamelModel):
    """Fire on Alertmanager webhook notifications whose alerts carry these labels."""

    match: dict[str, str] = Field(
        default_factory=dict,
        description="Label equality: every listed label must have exactly this value",
        max_length=MAX_MATCHERS,
    )
    match_regex: dict[str, str] = Field(
        default_factory=dict,
        description="Label regex (RE2, anchored like Alertmanager's =~ matcher)",
        max_length=MAX_MATCHERS,
    )
    on_resolved: OnResolved = Field(
        default=OnResolved.IGNORE,
        description="ignore, or cancel: a resolved alert cancels the execution it started",
    )
    token_secret_ref: SecretKeyRef = Field(
        description="Secret (same namespace) holding the bearer token Alertmanager sends"
    )

    @field_validator("match", "match_regex")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, wanted in value.items():
            if not re.fullmatch(LABEL_NAME_PATTERN, name):
                raise ValueError(f"label name {name!r} is not a Prometheus label name")
            if len(wanted) > MAX_LABEL_VALUE:
                raise ValueError(f"label {name}: value longer than {MAX_LABEL_VALUE} characters")
        return value

    @field_validator("match_regex")
    @classmethod
    def _regexes_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if len(pattern) > MAX_REGEX:
                raise ValueError(f"matchRegex.{name}: longer than {MAX_REGEX} characters")
            try:
                compile_label_regex(pattern)
            except ValueError as exc:
                raise ValueError(f"matchRegex.{name}: {exc}") from None
        return value


class CatchUp(CamelModel):
    """After the operator was down: how many missed runs still start (newest first)."""

    max_runs: int = Field(default=1, ge=0, le=100)


class ScheduleSource(CamelModel):
    """Fire on a cron schedule in an IANA time zone (Argo CronWorkflow semantics)."""

    cron: str = Field(min_length=1, max_length=256, description="Five-field cron expression")
    timezone: str = Field(
        default="UTC", min_length=1, max_length=64, description="IANA zone, e.g. Europe/Berlin"
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.ALLOW,
        description="Allow | Forbid (skip while one runs) | Replace (cancel it, start anew)",
    )
    starting_deadline_seconds: int | None = Field(
        default=None, ge=0, le=7 * 24 * 3600, description="A run later than this is skipped"
    )
    catch_up: CatchUp = Field(default_factory=CatchUp)

    @model_validator(mode="after")
    def _evaluable(self) -> ScheduleSource:
        # The cron syntax and the zone as the scheduler reads them (triggers/schedule.py)
        Schedule.parse(self.cron, self.timezone)
        return self


class RateLimit(CamelModel):
    per_minute: int = Field(ge=1, le=10_000, description="Executions started per rolling minute")


class HistoryLimit(CamelModel):
    """Finished executions kept per trigger (older ones are deleted)."""

    succeeded: int = Field(default=10, ge=0, le=1000)
    failed: int = Field(default=5, ge=0, le=1000)


class RunbookTriggerSpec(CamelModel):
    """What to run, on which event, with which request fields and limits."""

    runbook_ref: RunbookRef
    legal_basis: LegalBasis | None = None
    data_licenses: list[DataLicense] = Field(default_factory=list, max_length=32)
    alertmanager: AlertmanagerSource | None = None
    schedule: ScheduleSource | None = None
    input: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_INPUT_FIELDS,
        description="Input field → JMESPath over the event (the Alertmanager payload, "
        "or {scheduledTime, trigger} for a schedule)",
    )
    max_concurrent: int | None = Field(
        default=None, ge=1, le=1000, description="Executions of this trigger running at once"
    )
    rate_limit: RateLimit | None = None
    suspend: bool = Field(default=False, description="true: fire nothing (events are skipped)")
    history_limit: HistoryLimit = Field(default_factory=HistoryLimit)

    @field_validator("input")
    @classmethod
    def _expressions_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            if len(expression) > MAX_EXPRESSION:
                raise ValueError(f"input.{name}: longer than {MAX_EXPRESSION} characters")
            try:
                jmespath.compile(expression)
            except jmespath.exceptions.JMESPathError as exc:
                raise ValueError(f"input.{name}: not a JMESPath expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RunbookTriggerSpec:
        if (self.alertmanager is None) == (self.schedule is None):
            raise ValueError(
                "spec: set exactly one of spec.alertmanager or spec.schedule "
                "(one trigger per way a runbook starts; make two triggers for both)"
            )
        return self


SOURCE_RULE = {
    "rule": "has(self.alertmanager) != has(self.schedule)",
    "message": "set exactly one of spec.alertmanager or spec.schedule "
    "(one trigger per way a runbook starts; make two triggers for both)",
    "reason": "FieldValueInvalid",
}


class TriggerCounts(CamelModel):
    """How many events the trigger saw and what became of them."""

    received: int = Field(default=0, ge=0)
    started: int = Field(default=0, ge=0)
    duplicates: int = Field(default=0, ge=0)
    cancelled: int = Field(default=0, ge=0)
    skipped: int = Field(default=0, ge=0)


class ActiveExecution(CamelModel):
    name: str
    started_at: str | None = None


class RunbookTriggerStatus(CamelModel):
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    last_triggered: str | None = Field(default=None, description="When it last started a run")
    last_execution: str | None = Field(default=None, description="The execution it last started")
    next_fire: str | None = Field(default=None, description="Next scheduled time (schedules)")
    last_schedule_time: str | None = Field(
        default=None,
        description="The newest scheduled time handled, started or skipped (schedules): "
        "the next pass considers only times after it",
    )
    active: list[ActiveExecution] = Field(
        default_factory=list, max_length=MAX_ACTIVE_LISTED, description="Executions running"
    )
    active_count: int = Field(default=0, ge=0)
    counts: TriggerCounts = Field(default_factory=TriggerCounts)
    skipped: dict[str, int] = Field(
        default_factory=dict, description="Skipped events by reason (rateLimit, maxConcurrent...)"
    )
    message: str | None = None


class RunbookTrigger(CamelModel):
    api_version: Literal["runbook-operator.dev/v1alpha1"] = "runbook-operator.dev/v1alpha1"
    kind: Literal["RunbookTrigger"] = "RunbookTrigger"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RunbookTriggerSpec
    status: RunbookTriggerStatus | None = None


def parse_spec(spec: dict[str, Any]) -> RunbookTriggerSpec:
    """The spec, validated (pydantic's ValidationError names the field and the reason)."""
    return RunbookTriggerSpec.model_validate(spec)
