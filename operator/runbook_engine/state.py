"""Execution state: what the scheduler knows between two decisions.

Frozen dataclasses (not pydantic) because the scheduler creates many per transition. Per-step
collections are persistent hash maps (`immutables.Map`): a transition that changes k steps costs
O(k log n), not a copy of all n, and the old state stays valid. The wire form
(`to_wire`/`from_wire`) is what the CLI prints and the operator stores in status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from immutables import Map

from runbook_engine.enums import ExecutionStatus, StepStatus
from runbook_engine.timeutil import format_time, parse_time

EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty_map() -> Map[str, Any]:
    return Map()


@dataclass(frozen=True, slots=True)
class StepState:
    """One step across its attempts. `attempt` counts attempts started so far."""

    step_id: str
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    started_at: datetime | None = None
    attempt_started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    message: str | None = None
    blocked_by: str | None = None
    """For SKIPPED: the failed/blocked dependency that stopped it (None: its own skipOnFailure)."""
    output_hash: str | None = None
    """For SUCCEEDED: SHA-256 of the output's canonical JSON (as in the STEP_SUCCEEDED entry)."""
    reused_from: str | None = None
    """For a re-run: the execution whose output this SUCCEEDED step reuses (it did not run)."""

    # Transitions. The step's identity and its attempt history (attempt count, first and latest
    # start) carry over; what describes the previous status (retry time, message, blocking
    # dependency, output hash) is replaced. Like kopf's `HandlerState.with_outcome`.

    def with_attempt(self, now: datetime) -> StepState:
        """The next attempt starts at `now`: RUNNING."""
        return self._moved(
            StepStatus.RUNNING,
            attempt=self.attempt + 1,
            started_at=self.started_at or now,
            attempt_started_at=now,
        )

    def with_retry(self, at: datetime, message: str) -> StepState:
        """The attempt failed and another may start at `at`: PENDING, waiting for its backoff."""
        return self._moved(StepStatus.PENDING, next_attempt_at=at, message=message)

    def with_outcome(
        self,
        status: StepStatus,
        now: datetime,
        *,
        message: str | None = None,
        blocked_by: str | None = None,
        output_hash: str | None = None,
    ) -> StepState:
        """The step ended at `now` with terminal `status`."""
        if not status.terminal:
            raise ValueError(f"with_outcome: {status} is not a terminal step status")
        return self._moved(
            status,
            finished_at=now,
            message=message,
            blocked_by=blocked_by,
            output_hash=output_hash,
        )

    def _moved(self, status: StepStatus, **changes: Any) -> StepState:
        fresh = {
            "finished_at": None,
            "next_attempt_at": None,
            "message": None,
            "blocked_by": None,
            "output_hash": None,
        }
        return replace(self, status=status, **(fresh | changes))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stepId": self.step_id,
            "status": str(self.status),
            "attempt": self.attempt,
        }
        # attemptStartedAt only when a retry made it differ from startedAt: the two are set
        # together, and the repeat cost 42 bytes a step (a 1,000-step status over 256 KiB).
        later_attempt = (
            self.attempt_started_at if self.attempt_started_at != self.started_at else None
        )
        for key, value in (
            ("startedAt", self.started_at),
            ("attemptStartedAt", later_attempt),
            ("finishedAt", self.finished_at),
            ("nextAttemptAt", self.next_attempt_at),
        ):
            if value is not None:
                out[key] = format_time(value)
        if self.message is not None:
            out["message"] = self.message
        if self.blocked_by is not None:
            out["blockedBy"] = self.blocked_by
        if self.output_hash is not None:
            out["outputHash"] = self.output_hash
        if self.reused_from is not None:
            out["reusedFrom"] = self.reused_from
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> StepState:
        def t(key: str) -> datetime | None:
            v = data.get(key)
            return parse_time(v) if v else None

        return cls(
            step_id=str(data["stepId"]),
            status=StepStatus(data.get("status", "PENDING")),
            attempt=int(data.get("attempt", 0)),
            started_at=t("startedAt"),
            attempt_started_at=t("attemptStartedAt") or t("startedAt"),
            finished_at=t("finishedAt"),
            next_attempt_at=t("nextAttemptAt"),
            message=data.get("message"),
            blocked_by=data.get("blockedBy"),
            output_hash=data.get("outputHash"),
            reused_from=data.get("reusedFrom"),
        )


@dataclass(frozen=True, slots=True)
class ExecutionState:
    """The whole execution. Outputs and per-step KPIs are kept by step id."""

    execution_id: str
    runbook_id: str
    status: ExecutionStatus
    steps: Map[str, StepState]
    created_at: datetime
    order: tuple[str, ...] = ()
    """Step ids in definition order (Map iteration order is arbitrary)."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None
    outputs: Map[str, Mapping[str, Any]] = field(default_factory=_empty_map)
    artifacts: Map[str, Mapping[str, Any]] = field(default_factory=_empty_map)
    """Per step, when non-empty: ``{"evidence": [...], "citations": [...]}`` (wire form)."""
    kpis: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    kpi_sources: Mapping[str, int] = field(default_factory=lambda: EMPTY)
    """KPI name → position of the step that set it (later steps win; see runbook_engine.kpis)."""
    pauses: int = 0
    resumes: int = 0
    rerun: Mapping[str, Any] | None = None
    """For a re-run before it starts: the link to its parent that the first ledger entry
    records (runbook_engine.rerun). Not on the wire: once started, the ledger holds it."""
    # Derived indexes (rebuilt by `runbook_engine.scheduler.reindex` after loading from wire):
    ready: tuple[str, ...] = ()
    """PENDING steps whose dependencies are all done, in definition order."""
    remaining: Map[str, int] = field(default_factory=_empty_map)
    """PENDING step → number of dependencies not yet done."""
    running: frozenset[str] = frozenset()
    retry_waiting: frozenset[str] = frozenset()
    """Ready steps whose next attempt waits for a backoff to pass."""
    unfinished: int = 0
    failed: int = 0

    def evolve(self, **changes: Any) -> ExecutionState:
        return replace(self, **changes)

    def to_wire(self, *, with_outputs: bool = True) -> dict[str, Any]:
        """camelCase dict: phase, steps (list, definition order), kpis, outputs."""
        out: dict[str, Any] = {
            "executionId": self.execution_id,
            "runbookId": self.runbook_id,
            "phase": str(self.status),
            "createdAt": format_time(self.created_at),
        }
        if self.started_at:
            out["startedAt"] = format_time(self.started_at)
        if self.finished_at:
            out["finishedAt"] = format_time(self.finished_at)
        if self.message:
            out["message"] = self.message
        order = self.order or tuple(self.steps)
        out["steps"] = [self.steps[sid].to_wire() for sid in order]
        # Steps finish in any order; list KPIs by the step that set them (definition order).
        out["kpis"] = dict(
            sorted(self.kpis.items(), key=lambda kv: self.kpi_sources.get(kv[0], -1))
        )
        if self.kpi_sources:
            out["kpiSources"] = dict(self.kpi_sources)
        if with_outputs:
            out["outputs"] = {k: dict(self.outputs[k]) for k in order if k in self.outputs}
            out["artifacts"] = {k: dict(self.artifacts[k]) for k in order if k in self.artifacts}
        out["pauses"] = self.pauses
        out["resumes"] = self.resumes
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ExecutionState:
        """Inverse of `to_wire`. Derived indexes are empty: call `scheduler.reindex` next."""

        def t(key: str) -> datetime | None:
            v = data.get(key)
            return parse_time(v) if v else None

        step_list = [StepState.from_wire(s) for s in data.get("steps", [])]
        created = t("createdAt")
        if created is None:
            raise ValueError("createdAt: required")
        return cls(
            execution_id=str(data["executionId"]),
            runbook_id=str(data["runbookId"]),
            status=ExecutionStatus(data["phase"]),
            steps=Map({s.step_id: s for s in step_list}),
            order=tuple(s.step_id for s in step_list),
            created_at=created,
            started_at=t("startedAt"),
            finished_at=t("finishedAt"),
            message=data.get("message"),
            outputs=Map({k: dict(v) for k, v in (data.get("outputs") or {}).items()}),
            artifacts=Map({k: dict(v) for k, v in (data.get("artifacts") or {}).items()}),
            kpis=dict(data.get("kpis") or {}),
            kpi_sources={k: int(v) for k, v in (data.get("kpiSources") or {}).items()},
            pauses=int(data.get("pauses", 0)),
            resumes=int(data.get("resumes", 0)),
        )
