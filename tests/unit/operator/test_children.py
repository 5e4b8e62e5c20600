"""The watch-fed cache of each execution's Jobs and pods, and which events wake it (pure)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from runbook_operator.execution.children import ChildCache
from runbook_operator.steps.observe import STUCK_WAITING_REASONS

from .kubefakes import REF, job, pod, terminated


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rv(obj: dict[str, Any], version: int) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(version)}}


def running() -> dict[str, Any]:
    return {"running": {"startedAt": "2026-01-01T00:00:01Z"}}


def test_nothing_is_served_before_a_list_and_after_the_resync_interval() -> None:
    clock = Clock()
    cache = ChildCache(clock=clock)
    assert cache.get(REF.uid, max_age=60) is None
    cache.prime(REF.uid, [job("a", 1)], [])
    assert cache.get(REF.uid, max_age=60) == ([job("a", 1)], [])
    clock.now = 61
    assert cache.get(REF.uid, max_age=60) is None  # lists again: a missed deletion shows up


def test_a_job_the_operator_created_is_there_before_its_watch_event() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [], [])
    cache.add(REF.uid, "job", rv(job("a", 1), 5))
    jobs, _ = cache.get(REF.uid, 60) or ([], [])
    assert [j["metadata"]["name"] for j in jobs] == [job("a", 1)["metadata"]["name"]]


def test_events_keep_the_newest_copy_and_deletions_remove_it() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [rv(job("a", 1), 10)], [])
    cache.observe("job", "MODIFIED", rv(job("a", 1, conditions=["Complete"]), 9))  # older
    assert cache.get(REF.uid, 60) == ([rv(job("a", 1), 10)], [])
    assert cache.observe("job", "DELETED", rv(job("a", 1), 11))
    assert cache.get(REF.uid, 60) == ([], [])


def test_a_list_does_not_undo_a_newer_watch_event() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [], [rv(pod("a", 1, running()), 3)])
    cache.observe("pod", "MODIFIED", rv(pod("a", 1, terminated("x")), 7))
    cache.prime(REF.uid, [], [rv(pod("a", 1, running()), 5)])  # a LIST served from older cache
    _, pods = cache.get(REF.uid, 60) or ([], [])
    assert pods == [rv(pod("a", 1, terminated("x")), 7)]


def test_only_events_that_can_change_an_outcome_wake_the_execution() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [rv(job("a", 1), 1)], [])
    assert not cache.observe("pod", "ADDED", rv(pod("a", 1, {"waiting": {}}), 2))
    assert not cache.observe("pod", "MODIFIED", rv(pod("a", 1, running()), 3))
    assert cache.observe("pod", "MODIFIED", rv(pod("a", 1, terminated("ok")), 4))
    assert not cache.observe("pod", "MODIFIED", rv(pod("a", 1, terminated("ok")), 5))
    assert not cache.observe("job", "MODIFIED", rv(job("a", 1), 6))
    assert not cache.observe("job", "MODIFIED", rv(job("a", 1, conditions=["Complete"]), 6))
    assert cache.observe("job", "MODIFIED", rv(job("a", 1, conditions=["Failed"]), 7))
    assert cache.observe("pod", "DELETED", rv(pod("a", 1, terminated("ok")), 8))


@given(st.sampled_from(sorted(STUCK_WAITING_REASONS)))
def test_a_pod_that_will_never_start_wakes_the_execution(reason: str) -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [], [rv(pod("a", 1, {"waiting": {"reason": "ContainerCreating"}}), 1)])
    assert cache.observe("pod", "MODIFIED", rv(pod("a", 1, {"waiting": {"reason": reason}}), 2))


def test_objects_of_other_executions_or_without_labels_are_ignored() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [], [])
    assert not cache.observe("pod", "MODIFIED", {"metadata": {"name": "x", "labels": {}}})
    assert cache.get(REF.uid, 60) == ([], [])


def test_kept_children_drop_their_managed_fields_and_nothing_else() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [], [])
    managed = [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}}]
    obj = rv(pod("a", 1, running()), 3)
    obj["metadata"]["managedFields"] = managed
    cache.observe("pod", "ADDED", obj)
    _, pods = cache.get(REF.uid, 60) or ([], [])
    assert "managedFields" not in pods[0]["metadata"]
    assert {**pods[0], "metadata": {**pods[0]["metadata"], "managedFields": managed}} == obj
    assert obj["metadata"]["managedFields"] == managed  # the caller's object is left alone
