"""The kept execution bodies (execution/bodies.py): a reconcile reads its execution from the
watch and its own status writes, not with a GET, and a stale copy can never write a stale
status (the resourceVersion guard sends it back to a fresh read)."""

from __future__ import annotations

from typing import Any

from runbook_operator import kube as k
from runbook_operator.execution.bodies import ExecutionBodies

from .fakekube import Call
from .test_controller import (
    NAME,
    NS,
    UID,
    Clock,
    assert_ledger_sound,
    chain_steps,
    cluster,
    controller,
    finish_started,
    status,
    steps_of,
)


def body(uid: str, version: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": str(version)}, "status": status}


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- the store itself ------------------------------------------------------------------------------
def test_only_tracked_executions_are_kept_and_the_newest_version_wins() -> None:
    kept = ExecutionBodies()
    kept.saw(body("u1", 5))
    assert kept.fresh("u1", 60) is None and len(kept) == 0  # no daemon: nothing kept

    kept.track("u1")
    kept.saw(body("u1", 5, phase="RUNNING"))
    kept.saw(body("u1", 4, phase="PENDING"))  # a late watch event of an older version
    assert kept.fresh("u1", 60) == body("u1", 5, phase="RUNNING")
    kept.saw(body("u1", 7, phase="COMPLETED"))
    assert kept.fresh("u1", 60) == body("u1", 7, phase="COMPLETED")

    kept.drop("u1")  # proved stale by a Conflict: read afresh, keep tracking
    assert kept.fresh("u1", 60) is None and len(kept) == 1
    kept.saw(body("u1", 3))
    assert kept.fresh("u1", 60) == body("u1", 3)

    kept.forget("u1")
    kept.saw(body("u1", 9))
    assert kept.fresh("u1", 60) is None and len(kept) == 0


def test_a_copy_older_than_the_resync_interval_is_not_used() -> None:
    ticks = Ticks()
    kept = ExecutionBodies(clock=ticks)
    kept.track("u1")
    kept.saw(body("u1", 1))
    ticks.now = 59.0
    assert kept.fresh("u1", 60) is not None
    ticks.now = 61.0
    assert kept.fresh("u1", 60) is None  # a watch event missed during a reconnect: GET again
    kept.saw(body("u1", 1))  # heard of again: fresh again
    assert kept.fresh("u1", 60) is not None


def test_an_opaque_resource_version_counts_as_oldest() -> None:
    kept = ExecutionBodies()
    kept.track("u1")
    kept.saw(body("u1", 2))
    kept.saw({"metadata": {"uid": "u1", "resourceVersion": "abc"}})
    assert kept.fresh("u1", 60) == body("u1", 2)


# -- the controller --------------------------------------------------------------------------------
def execution_gets(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.verb == "get" and c.resource == "runbookexecutions"]


def test_a_whole_chain_reads_its_execution_once() -> None:
    """Before: one GET per reconcile. Now the status write's answer is kept, so only the first
    reconcile of a new operator process reads the execution."""
    kube, clock = cluster(chain_steps("a", "b", "c", "d")), Clock()
    ctrl = controller(kube, clock)
    mark = kube.mark()
    reconciles = 0
    while True:
        reconciles += 1
        if ctrl.reconcile(NS, NAME, UID).done:
            break
        finish_started(kube)
        clock.tick()
    assert reconciles == 5
    assert len(execution_gets(kube.since(mark))) == 1
    assert status(kube)["phase"] == "COMPLETED"
    assert_ledger_sound(kube, checkpoint=True)
    assert ctrl.cached()["bodies"] == 0  # finished: nothing kept


def test_a_spec_change_delivered_by_the_watch_is_seen_without_a_get() -> None:
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)

    def pause(obj: dict[str, Any]) -> None:
        obj["spec"]["paused"] = True

    kube.edit(k.EXECUTIONS, NS, NAME, pause)
    watched = kube.stored(k.EXECUTIONS, NS, NAME)
    assert watched is not None
    ctrl.bodies.saw(dict(watched))  # what the kopf event handler does with each event
    finish_started(kube)
    clock.tick()
    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)
    assert execution_gets(kube.since(mark)) == []
    assert status(kube)["phase"] == "PAUSED"
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "PENDING"}


def test_a_status_moved_behind_the_kept_copy_is_never_overwritten() -> None:
    """Someone else (a second operator) writes the status while this one's copy is older: the
    guarded write meets Conflict, the copy is dropped, and the reconcile is redone from a GET."""
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)

    def other_writer(obj: dict[str, Any]) -> None:
        obj["status"] = {**obj["status"], "message": "written elsewhere"}

    kube.edit(k.EXECUTIONS, NS, NAME, other_writer)  # not delivered to this operator
    finish_started(kube)
    clock.tick()
    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)
    calls = kube.since(mark)
    conflicts = [c for c in calls if c.subresource == "status" and c.outcome == "Conflict"]
    assert len(conflicts) == 1, [(c.verb, c.resource, c.outcome) for c in calls]
    assert len(execution_gets(calls)) >= 1  # read afresh after the Conflict
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "RUNNING"}


def test_a_finalizer_always_reads_the_execution_afresh() -> None:
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    mark = kube.mark()
    ctrl.finalize(NS, NAME, UID)
    assert len(execution_gets(kube.since(mark))) >= 1
    assert ctrl.cached()["bodies"] == 0
