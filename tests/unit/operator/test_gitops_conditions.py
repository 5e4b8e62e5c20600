"""Ready / Reconciling / Stalled on RunbookExecution and Runbook, judged by the kstatus rules
(tests/unit/kstatus_rules.py; the real library judges live objects in
tests/e2e/test_gitops_health.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from immutables import Map

from runbook_engine.enums import ExecutionStatus
from runbook_engine.state import ExecutionState
from runbook_engine.timeutil import format_time
from runbook_operator.crd.conditions import READY, RECONCILING, STALLED
from runbook_operator.crd.resources import RunbookExecutionStatus, RunbookStatus
from runbook_operator.crd.runbook_status import runbook_status
from runbook_operator.execution.status import execution_conditions, with_ready_false
from tests.unit.kstatus_rules import kstatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GITOPS = (READY, RECONCILING, STALLED)


def state(phase: ExecutionStatus, message: str | None = None) -> ExecutionState:
    return ExecutionState("ex-1", "rb", phase, Map(), T0, message=message)


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert len({c["type"] for c in conditions}) == len(conditions), conditions
    return {c["type"]: c for c in conditions}


def obj(status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": status}


EXPECTED = {
    ExecutionStatus.PENDING: ("InProgress", RECONCILING, "Pending"),
    ExecutionStatus.RUNNING: ("InProgress", RECONCILING, "Running"),
    ExecutionStatus.PAUSED: ("InProgress", RECONCILING, "Paused"),
    ExecutionStatus.COMPLETED: ("Current", READY, "Completed"),
    ExecutionStatus.FAILED: ("Failed", STALLED, "StepFailed"),
    ExecutionStatus.CANCELLED: ("Failed", STALLED, "Cancelled"),
}


@pytest.mark.parametrize("phase", list(ExecutionStatus))
def test_each_phase_gives_exactly_one_true_condition_and_its_kstatus(
    phase: ExecutionStatus,
) -> None:
    verdict, true_type, reason = EXPECTED[phase]
    conditions = execution_conditions(state(phase, "what happened"), 4, T0)
    found = by_type(conditions)
    assert set(found) == {*GITOPS, "Succeeded"}
    assert [t for t in GITOPS if found[t]["status"] == "True"] == [true_type]
    assert all(found[t]["reason"] == reason for t in GITOPS)
    assert all(c["observedGeneration"] == 4 and c["message"] == "what happened" for c in conditions)
    status = {"phase": str(phase), "observedGeneration": 4, "conditions": conditions}
    RunbookExecutionStatus.model_validate(status)
    assert kstatus(obj(status, generation=4)) == verdict
    assert kstatus(obj(status, generation=5)) == "InProgress"  # the spec changed since


def test_the_succeeded_condition_stays_as_documented() -> None:
    outcome = {
        p: by_type(execution_conditions(state(p), 1, T0))["Succeeded"]["status"]
        for p in ExecutionStatus
    }
    assert outcome == {
        ExecutionStatus.PENDING: "Unknown",
        ExecutionStatus.RUNNING: "Unknown",
        ExecutionStatus.PAUSED: "Unknown",
        ExecutionStatus.COMPLETED: "True",
        ExecutionStatus.FAILED: "False",
        ExecutionStatus.CANCELLED: "False",
    }


@pytest.mark.parametrize("reason", ["Rejected", "RunbookNotFound", "ImageNotAllowed"])
def test_a_refused_execution_is_stalled_with_the_refusal_as_reason(reason: str) -> None:
    found = by_type(execution_conditions(state(ExecutionStatus.FAILED), 1, T0, (), reason))
    assert (found[STALLED]["status"], found[STALLED]["reason"]) == ("True", reason)
    assert (found[READY]["status"], found[READY]["reason"]) == ("False", reason)


PHASES = st.lists(st.sampled_from(list(ExecutionStatus)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(PHASES)
def test_transition_times_move_only_when_a_status_flips(phases: list[ExecutionStatus]) -> None:
    previous: list[dict[str, Any]] = []
    for i, phase in enumerate(phases):
        now = T0 + timedelta(minutes=i)
        current = execution_conditions(state(phase), i + 1, now, previous)
        before, after = by_type(previous) if previous else {}, by_type(current)
        for kind, cond in after.items():
            old = before.get(kind)
            flipped = old is None or old["status"] != cond["status"]
            expected = format_time(now) if flipped else old["lastTransitionTime"]  # type: ignore[index]
            assert cond["lastTransitionTime"] == expected, (kind, phase, old)
            assert cond["observedGeneration"] == i + 1
        assert sum(after[t]["status"] == "True" for t in GITOPS) == 1
        previous = current


def running_status() -> dict[str, Any]:
    conditions = execution_conditions(state(ExecutionStatus.RUNNING), 2, T0)
    return {"phase": "RUNNING", "observedGeneration": 2, "conditions": conditions, "x": 1}


def test_a_reconcile_error_keeps_the_execution_reconciling() -> None:
    later = T0 + timedelta(minutes=5)
    status = with_ready_false(running_status(), "ReconcileError", "KubeError: boom", 3, later)
    found = by_type(status["conditions"])
    assert (found[READY]["status"], found[READY]["reason"]) == ("False", "ReconcileError")
    assert (found[RECONCILING]["status"], found[RECONCILING]["reason"]) == (
        "True",
        "ReconcileError",
    )
    assert found[STALLED]["status"] == "False"
    # Reconciling was True before: its transition time stays; Succeeded is kept untouched.
    assert found[RECONCILING]["lastTransitionTime"] == format_time(T0)
    assert found["Succeeded"] == by_type(running_status()["conditions"])["Succeeded"]
    # Generation 3 was not reconciled: observedGeneration stays where it was.
    assert status["observedGeneration"] == 2 and status["phase"] == "RUNNING" and status["x"] == 1
    assert kstatus(obj(status, generation=2)) == "InProgress"


def test_a_tampered_ledger_stalls_the_execution_where_it_stands() -> None:
    later = T0 + timedelta(minutes=5)
    status = with_ready_false(running_status(), "LedgerTampered", "entry 0 rewritten", 3, later)
    found = by_type(status["conditions"])
    for kind, truth in ((READY, "False"), (RECONCILING, "False"), (STALLED, "True")):
        assert (found[kind]["status"], found[kind]["reason"]) == (truth, "LedgerTampered")
        assert found[kind]["observedGeneration"] == 3
    assert found[STALLED]["lastTransitionTime"] == format_time(later)
    assert found[READY]["lastTransitionTime"] == format_time(T0)  # it was False already
    assert status["phase"] == "RUNNING" and status["observedGeneration"] == 3
    RunbookExecutionStatus.model_validate({k: v for k, v in status.items() if k != "x"})
    assert kstatus(obj(status, generation=3)) == "Failed"


def test_kstatus_transcription_follows_the_documented_order() -> None:
    """The oracle itself: each rule wins over the ones after it."""
    stalled = {"type": STALLED, "status": "True"}
    reconciling = {"type": RECONCILING, "status": "True"}
    ready = {"type": READY, "status": "True"}
    gone = {"generation": 1, "deletionTimestamp": "2026-01-01T00:00:00Z"}
    assert kstatus({"metadata": gone, "status": {"conditions": [ready]}}) == "Terminating"
    assert kstatus(obj({"observedGeneration": 1, "conditions": [ready]}, 2)) == "InProgress"
    assert kstatus(obj({"conditions": [reconciling, stalled]})) == "InProgress"
    assert kstatus(obj({"conditions": [stalled, ready]})) == "Failed"
    assert kstatus(obj({"conditions": [ready]})) == "Current"
    assert kstatus(obj({"conditions": [{**ready, "status": "Unknown"}]})) == "InProgress"
    assert kstatus(obj({})) == "Current"


# -- Runbook --------------------------------------------------------------------------------
def step(sid: str, *deps: str) -> dict[str, Any]:
    return {"id": sid, "actionType": "CUSTOM", "dependsOn": list(deps)}


GOOD = {"id": "r", "steps": [step("a"), step("b", "a")]}
CYCLIC = {"id": "r", "steps": [step("a", "b"), step("b", "a")]}


def test_a_valid_runbook_is_ready_and_keeps_its_valid_condition() -> None:
    status = runbook_status(GOOD, 3, T0)
    RunbookStatus.model_validate(status)
    assert [c["type"] for c in status["conditions"]] == ["Valid", *GITOPS]
    found = by_type(status["conditions"])
    assert [found[t]["status"] for t in GITOPS] == ["True", "False", "False"]
    assert all(c["observedGeneration"] == 3 and c["reason"] == "Valid" for c in found.values())
    assert kstatus(obj(status, generation=3)) == "Current"


def test_an_invalid_runbook_is_stalled_naming_the_problem() -> None:
    status = runbook_status(CYCLIC, 2, T0)
    RunbookStatus.model_validate(status)
    found = by_type(status["conditions"])
    assert [found[t]["status"] for t in ("Valid", *GITOPS)] == ["False", "False", "False", "True"]
    assert found[STALLED]["reason"] == "InvalidGraph"
    assert "dependency cycle" in found[STALLED]["message"]
    assert kstatus(obj(status, generation=2)) == "Failed"
    assert kstatus(obj(status, generation=3)) == "InProgress"  # edited, not yet validated


def test_fixing_a_runbook_flips_stalled_and_ready_at_that_time_only() -> None:
    bad = runbook_status(CYCLIC, 1, T0)
    still_bad = runbook_status(CYCLIC, 2, T0 + timedelta(hours=1), previous=bad)
    assert by_type(still_bad["conditions"]) == {
        t: {**c, "observedGeneration": 2} for t, c in by_type(bad["conditions"]).items()
    }
    fixed_at = T0 + timedelta(hours=2)
    fixed = by_type(runbook_status(GOOD, 3, fixed_at, previous=still_bad)["conditions"])
    assert fixed[READY]["lastTransitionTime"] == format_time(fixed_at)
    assert fixed[STALLED]["lastTransitionTime"] == format_time(fixed_at)
    assert fixed[RECONCILING]["lastTransitionTime"] == format_time(T0)  # False throughout
