"""The per-namespace cap on running step Jobs: the slots a reconcile gets, who is held and who
is woken (JobCap), the count it rests on (ChildCache, fed by the watch), and the lower limit the
engine is given (reconcile.capped_request). The Controller suite (test_controller.py) runs them
together over the in-memory API server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_engine.contract import StepExecutorResult
from runbook_engine.model import ExecutionRequest, RunbookDefinition
from runbook_engine.plan import compile_plan
from runbook_engine.scheduler import (
    AttemptFinished,
    Observation,
    StartAttempt,
    new_execution,
    schedule,
)
from runbook_engine.state import ExecutionState
from runbook_operator.config import SettingsError, load_config
from runbook_operator.execution.children import ChildCache
from runbook_operator.execution.job_cap import JobCap
from runbook_operator.execution.reconcile import capped_request, waiting_for_cap
from runbook_operator.names import ExecutionRef

from . import test_chart_render as chart
from .kubefakes import REF, job, pod, terminated

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OTHER = ExecutionRef("ns1", "other", "fedcba9876543210-uid")
ELSEWHERE = ExecutionRef("ns2", "far", "99999999-uid")


def in_ns(obj: dict[str, Any], namespace: str, version: int = 1) -> dict[str, Any]:
    meta = {**obj["metadata"], "namespace": namespace, "resourceVersion": str(version)}
    return {**obj, "metadata": meta}


def done(obj: dict[str, Any], version: int) -> dict[str, Any]:
    ended = {**obj, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    return in_ns(ended, obj["metadata"]["namespace"], version)


# -- JobCap -------------------------------------------------------------------------------------
class Cap:
    """A JobCap over a settable count of running Jobs, recording whom it wakes."""

    def __init__(self, limit: int) -> None:
        self.running: dict[str, int] = {}
        self.woken: list[str] = []
        self.cap = JobCap(limit, lambda ns: self.running.get(ns, 0), self.woken.append)

    def decide(self, ns: str, uid: str, wants: int) -> int:
        """One reconcile: take what is free up to `wants`, held when that is not all."""
        with self.cap.turn(ns, uid) as turn:
            free = wants if turn.free is None else min(wants, turn.free)
            turn.took(free, held=free < wants)
        return free


def test_a_turn_gets_the_cap_less_running_and_reserved_jobs() -> None:
    c = Cap(10)
    c.running["ns1"] = 6
    with c.cap.turn("ns1", "u1") as turn:
        assert turn.free == 4
        turn.took(3, held=False)
    assert c.cap.reserved("ns1") == 3
    with c.cap.turn("ns1", "u2") as turn:
        assert turn.free == 1  # the 3 being made count already
    with c.cap.turn("ns2", "u3") as turn:
        assert turn.free == 10  # another namespace has its own cap


def test_without_a_cap_there_is_no_budget_and_nothing_is_reserved() -> None:
    c = Cap(0)
    c.running["ns1"] = 5000
    with c.cap.turn("ns1", "u1") as turn:
        assert turn.free is None
        turn.took(1000, held=False)
    reservation = c.cap.reservation("ns1", turn)
    reservation.release()
    assert c.cap.reserved("ns1") == 0 and c.cap.held() == {}


def test_held_executions_are_woken_longest_held_first_as_many_as_slots_free() -> None:
    c = Cap(2)
    c.running["ns1"] = 2
    for uid in ("first", "second", "third", "fourth"):
        assert c.decide("ns1", uid, wants=1) == 0
    assert c.cap.held() == {"ns1": ["first", "second", "third", "fourth"]}
    c.running["ns1"] = 1
    c.cap.capacity_freed("ns1")
    assert c.woken == ["first"]
    c.cap.capacity_freed("ns2")  # another namespace's Job: nobody here is woken
    assert c.woken == ["first"]
    c.running["ns1"] = 0
    c.cap.capacity_freed("ns1")
    assert c.woken == ["first", "second", "third"]  # two free: the next two
    assert c.cap.held() == {"ns1": ["fourth"]}


def test_a_reconcile_that_leaves_slots_unused_wakes_the_next_held() -> None:
    """A woken execution that needs nothing (its steps ended meanwhile) passes the slot on."""
    c = Cap(1)
    c.running["ns1"] = 1
    c.decide("ns1", "a", wants=1)
    c.decide("ns1", "b", wants=1)
    c.running["ns1"] = 0
    c.cap.capacity_freed("ns1")
    assert c.woken == ["a"]
    with c.cap.turn("ns1", "a") as turn:
        turn.took(0, held=False)
    c.cap.reservation("ns1", turn).release()
    assert c.woken == ["a", "b"]


def test_slots_taken_are_let_go_once_each_job_is_made_and_the_rest_at_the_end() -> None:
    c = Cap(3)
    with c.cap.turn("ns1", "a") as turn:
        turn.took(3, held=True)
    reservation = c.cap.reservation("ns1", turn)
    assert c.cap.reserved("ns1") == 3
    reservation.release(1)  # one Job made: the cache counts it now
    c.running["ns1"] = 1
    assert c.cap.reserved("ns1") == 2
    reservation.release()  # the reconcile ends (two Jobs were not made)
    reservation.release()  # twice: nothing more
    assert c.cap.reserved("ns1") == 0 and reservation.slots == 0
    assert c.woken == ["a"]  # held for more, and slots are free again


def test_a_finished_or_deleted_execution_is_held_no_more() -> None:
    c = Cap(1)
    c.running["ns1"] = 1
    c.decide("ns1", "gone", wants=1)
    c.cap.forget("gone")
    c.running["ns1"] = 0
    c.cap.capacity_freed("ns1")
    assert c.woken == [] and c.cap.held() == {}


# -- the count: ChildCache ----------------------------------------------------------------------
def test_running_jobs_are_counted_per_namespace_from_the_watch_alone() -> None:
    """After a restart the watch's LIST arrives before any execution is reconciled: their
    running Jobs count at once, finished ones do not, and other namespaces are apart."""
    cache = ChildCache()
    cache.observe("job", "ADDED", in_ns(job("a", 1), "ns1"))
    cache.observe("job", "ADDED", in_ns(job("x", 1, ref=OTHER), "ns1"))
    cache.observe("job", "ADDED", in_ns(job("old", 1, ref=OTHER, conditions=["Complete"]), "ns1"))
    cache.observe("job", "ADDED", in_ns(job("y", 1, ref=ELSEWHERE), "ns2"))
    assert cache.running_jobs("ns1") == 2
    assert cache.running_jobs("ns2") == 1
    assert cache.running_jobs() == 3
    assert cache.get(REF.uid, max_age=60) is None  # a reconcile still lists first


def test_a_job_that_stops_running_tells_its_namespace_and_leaves_nothing_behind() -> None:
    freed: list[str] = []
    cache = ChildCache(on_freed=freed.append)
    a = in_ns(job("a", 1), "ns1", 1)
    x = in_ns(job("x", 1, ref=OTHER), "ns1", 2)
    cache.observe("job", "ADDED", a)
    cache.observe("job", "ADDED", x)
    cache.observe("pod", "MODIFIED", in_ns(pod("a", 1, terminated("{}")), "ns1", 3))
    assert freed == []  # its container stopped, but the pod has not ended yet
    cache.observe("job", "MODIFIED", done(a, 4))
    cache.observe("job", "MODIFIED", done(a, 5))  # still finished: said once
    cache.observe("job", "DELETED", x)
    assert freed == ["ns1", "ns1"]
    assert cache.running_jobs("ns1") == 0
    assert cache.size() == 0  # never-listed entries go with their last running Job


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_job_stops_running_when_its_pod_ends_before_the_job_is_marked(phase: str) -> None:
    """backoffLimit 0, restartPolicy Never: a Job whose pod ended starts nothing more. Counting
    it until the Job controller marks it held the next step of every chain while a namespace
    sat at its cap (make bench concurrent-100: p50 2.9 s between steps)."""
    freed: list[str] = []
    cache = ChildCache(on_freed=freed.append)
    a = in_ns(job("a", 1), "ns1", 1)
    cache.prime(REF.uid, [a, in_ns(job("b", 1), "ns1", 2)], [], "ns1")
    assert cache.running_jobs("ns1") == 2
    ended = in_ns(pod("a", 1, terminated("{}"), phase=phase), "ns1", 3)
    assert cache.observe("pod", "MODIFIED", ended)
    assert freed == ["ns1"] and cache.running_jobs("ns1") == 1
    cache.observe("pod", "MODIFIED", in_ns(pod("a", 1, terminated("{}"), phase=phase), "ns1", 4))
    cache.observe("job", "MODIFIED", done(a, 5))
    cache.observe("pod", "DELETED", ended)
    assert freed == ["ns1"] and cache.running_jobs("ns1") == 1  # said once
    cache.observe("job", "DELETED", done(a, 6))
    assert cache.running_jobs("ns1") == 1 and freed == ["ns1"]


def test_a_pod_that_names_no_job_as_controller_frees_nothing() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [in_ns(job("a", 1), "ns1", 1)], [], "ns1")
    stray = in_ns(pod("a", 1, terminated("{}"), phase="Succeeded"), "ns1", 2)
    stray["metadata"]["ownerReferences"] = [
        {**stray["metadata"]["ownerReferences"][0], "controller": False}
    ]
    cache.observe("pod", "MODIFIED", stray)
    assert cache.running_jobs("ns1") == 1


def test_a_list_without_a_job_frees_its_slot() -> None:
    freed: list[str] = []
    cache = ChildCache(on_freed=freed.append)
    cache.prime(REF.uid, [in_ns(job("a", 1), "ns1")], [], "ns1")
    cache.add(REF.uid, "job", in_ns(job("b", 1), "ns1"))
    assert cache.running_jobs("ns1") == 2
    cache.prime(REF.uid, [in_ns(job("a", 1), "ns1")], [], "ns1")  # b's deletion was missed
    assert freed == ["ns1"] and cache.running_jobs("ns1") == 1


def test_a_forgotten_executions_jobs_count_until_the_watch_says_they_ended() -> None:
    """Its attempt ended with the pod's container; the pod's phase and the Job's Complete
    condition follow a moment later. Until one of them is seen the Job still counts, or the
    namespace would briefly run more than its cap."""
    freed: list[str] = []
    cache = ChildCache(on_freed=freed.append)
    a, b = in_ns(job("a", 1), "ns1", 1), in_ns(job("b", 1), "ns1", 2)
    cache.prime(REF.uid, [a, done(b, 3)], [in_ns(pod("a", 1, terminated("{}")), "ns1", 4)], "ns1")
    cache.forget(REF.uid)
    assert cache.running_jobs("ns1") == 1 and freed == []
    assert cache.get(REF.uid, max_age=60) is None
    cache.observe("job", "MODIFIED", done(a, 5))
    assert cache.running_jobs("ns1") == 0 and freed == ["ns1"]
    assert cache.size() == 0


def test_a_forgotten_executions_job_whose_pod_ended_counts_no_more() -> None:
    cache = ChildCache()
    a = in_ns(job("a", 1), "ns1", 1)
    ended = in_ns(pod("a", 1, terminated("{}"), phase="Succeeded"), "ns1", 2)
    cache.prime(REF.uid, [a], [ended], "ns1")
    assert cache.running_jobs("ns1") == 0
    cache.forget(REF.uid)
    assert cache.running_jobs("ns1") == 0 and cache.size() == 0


def test_a_job_the_operator_makes_counts_before_its_watch_event() -> None:
    cache = ChildCache()
    cache.add(REF.uid, "job", in_ns(job("a", 1), "ns1", 7))
    assert cache.running_jobs("ns1") == 1
    cache.observe("job", "ADDED", in_ns(job("a", 1), "ns1", 7))
    assert cache.running_jobs("ns1") == 1  # the same Job, once


# -- the engine's lower limit ------------------------------------------------------------------
def _plan(steps: int, parallel: int) -> Any:
    definition = RunbookDefinition.model_validate(
        {
            "id": "rb",
            "maxParallelSteps": parallel,
            "steps": [{"id": f"s{i:02d}", "actionType": "TRANSFORM"} for i in range(steps)],
        }
    )
    return compile_plan(definition)


REQUEST = ExecutionRequest.model_validate({"runbookRef": {"name": "rb"}})


def _running(plan: Any, n: int) -> ExecutionState:
    """`n` attempts started (by an uncapped first reconcile limited to n)."""
    state = new_execution(plan, REF.execution_id, T0)
    first = REQUEST.model_copy(update={"max_parallel_steps": n}) if n else REQUEST
    return schedule(plan, first, state, (), T0).state if n else state


@given(
    steps=st.integers(1, 30),
    parallel=st.integers(1, 30),
    running=st.integers(0, 30),
    finished=st.integers(0, 30),
    budget=st.integers(0, 30),
)
def test_the_engine_starts_no_more_than_the_budget_and_as_many_as_it_can(
    steps: int, parallel: int, running: int, finished: int, budget: int
) -> None:
    plan = _plan(steps, parallel)
    running = min(running, steps, parallel)
    finished = min(finished, running)
    state = _running(plan, running)
    assert len(state.running) == running
    ok = StepExecutorResult(success=True, output={})
    ended: list[Observation] = [
        AttemptFinished(sid, 1, ok) for sid in sorted(state.running)[:finished]
    ]
    capped = capped_request(REQUEST, plan, state, ended, budget)
    new = schedule(plan, capped, state, ended, T0).state
    starts = len(new.running) - (running - finished)
    pending = steps - running
    assert starts <= budget
    assert starts == min(budget, parallel - (running - finished), pending)
    waiting = waiting_for_cap(REQUEST, capped, new, T0)
    assert waiting == (
        pending - starts if budget < min(parallel - running + finished, pending) else 0
    )


def test_a_budget_of_zero_starts_nothing_even_with_nothing_running() -> None:
    """maxParallelSteps 0 is a limit (the engine once read it as "not set")."""
    plan = _plan(3, 3)
    state = new_execution(plan, REF.execution_id, T0)
    capped = capped_request(REQUEST, plan, state, (), 0)
    decision = schedule(plan, capped, state, (), T0)
    assert [a for a in decision.actions if isinstance(a, StartAttempt)] == []
    assert decision.state.status == "RUNNING"
    assert waiting_for_cap(REQUEST, capped, decision.state, T0) == 3


# -- the setting ---------------------------------------------------------------------------------
def test_the_cap_is_a_setting_with_a_default_and_zero_for_none() -> None:
    assert load_config({}).max_running_jobs_per_namespace == 100
    assert (
        load_config({"RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE": "0"}).max_running_jobs_per_namespace
        == 0
    )
    with pytest.raises(SettingsError, match="RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE: must be >= 0"):
        load_config({"RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE": "-1"})


@pytest.mark.skipif(chart.HELM is None, reason="no helm binary")
def test_the_chart_sets_the_cap_and_refuses_a_negative_one() -> None:
    env = chart.env_of(chart.render())
    assert (
        load_config(
            {
                "RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE": env[
                    "RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE"
                ]
            }
        ).max_running_jobs_per_namespace
        == 100
    )
    env = chart.env_of(chart.render("operator.maxRunningJobsPerNamespace=0"))
    assert env["RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE"] == "0"
    assert "maxRunningJobsPerNamespace" in chart.refused("operator.maxRunningJobsPerNamespace=-5")


def test_a_failing_listener_does_not_undo_the_update() -> None:
    def broken(namespace: str) -> None:
        raise RuntimeError("event loop is closed")

    cache = ChildCache(on_freed=broken)
    a = in_ns(job("a", 1), "ns1", 1)
    cache.observe("job", "ADDED", a)
    assert cache.observe("job", "MODIFIED", done(a, 2)) is False  # the Job's own news, no wake
    assert cache.running_jobs("ns1") == 0
