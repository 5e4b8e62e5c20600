"""Prometheus metrics (served on RUNBOOK_METRICS_PORT by the operator's startup handler)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from runbook_engine.enums import LogEventType as E

if TYPE_CHECKING:
    from runbook_operator.execution.reconcile import Effects

EXECUTIONS = Counter("runbook_executions_total", "Executions that reached a phase", ["phase"])
STEP_SECONDS = Histogram(
    "runbook_step_duration_seconds",
    "Duration of succeeded step attempts",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
STEP_ATTEMPTS = Counter("runbook_step_attempts_total", "Step attempts by outcome", ["outcome"])
RUNNING_JOBS = Gauge(
    "runbook_running_jobs", "Step Jobs not yet finished, of the executions this operator drives"
)
"""Set from the watched Jobs at start-up (settings: set_function), never counted."""
API_ERRORS = Counter("runbook_api_errors_total", "Kubernetes API calls that failed", ["call"])
RECONCILE_SECONDS = Histogram(
    "runbook_reconcile_seconds",
    "Time of one reconcile of an execution",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

APPROVALS_PENDING = Gauge(
    "runbook_approvals_pending",
    "APPROVAL steps waiting for decisions",
    ["namespace", "execution", "step"],
)

_PHASE_EVENTS = {
    E.EXECUTION_STARTED: "RUNNING",
    E.EXECUTION_PAUSED: "PAUSED",
    E.EXECUTION_RESUMED: "RUNNING",
    E.EXECUTION_COMPLETED: "COMPLETED",
    E.EXECUTION_FAILED: "FAILED",
    E.EXECUTION_CANCELLED: "CANCELLED",
}
_ATTEMPT_EVENTS = {
    E.STEP_SUCCEEDED: "succeeded",
    E.STEP_ATTEMPT_FAILED: "failed",
    E.STEP_FAILED: "failed",
    E.STEP_SKIPPED: "skipped",
}


def observe(effects: Effects) -> None:
    """Count what one reconcile did, from the audit entries it added."""
    for entry in effects.entries:
        kind = entry["eventType"]
        if kind in _PHASE_EVENTS:
            EXECUTIONS.labels(_PHASE_EVENTS[kind]).inc()
        if kind in _ATTEMPT_EVENTS:
            STEP_ATTEMPTS.labels(_ATTEMPT_EVENTS[kind]).inc()
        if kind == E.STEP_SUCCEEDED:
            STEP_SECONDS.observe(float(entry["details"].get("durationMs", 0)) / 1000)


def approvals_pending(
    namespace: str, execution: str, gates: Iterable[str], waiting: str | None
) -> None:
    """Level, not count: 1 per waiting APPROVAL step; a step's series goes when it ends."""
    now_waiting = set((waiting or "").split(",")) - {""}
    for step in gates:
        if step in now_waiting:
            APPROVALS_PENDING.labels(namespace, execution, step).set(1)
        else:
            with contextlib.suppress(KeyError):
                APPROVALS_PENDING.remove(namespace, execution, step)
