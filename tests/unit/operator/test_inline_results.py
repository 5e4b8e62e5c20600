"""Inline results (a custom image's whole result in its termination message) are stored without
reading their ConfigMap first; a name someone else took first still fails only that attempt."""

from __future__ import annotations

import pytest

from runbook_operator import kube as k
from runbook_operator import names
from runbook_operator.execution.controller import Controller
from runbook_operator.steps import results

from .fakekube import Call, Crash, FakeKube
from .test_controller import (
    NAME,
    NS,
    REF,
    UID,
    Clock,
    assert_ledger_sound,
    chain_steps,
    cluster,
    condition,
    controller,
    finish,
    job_of,
    ledger,
    ok,
    status,
    steps_of,
)


def configmap_gets(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.verb == "get" and c.resource == "configmaps"]


def a_finished_inline() -> tuple[FakeKube, Clock, Controller]:
    """A chain a → b whose first attempt of `a` just ended with an inline result {"x": 1}."""
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    finish(kube, "a", 1, ok(x=1), inline=True)
    clock.tick()
    return kube, clock, ctrl


def test_an_inline_result_is_stored_without_a_read() -> None:
    kube, _, ctrl = a_finished_inline()
    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)
    calls = kube.since(mark)
    assert configmap_gets(calls) == []  # was: a GET of the result's name first
    stored = kube.stored(k.CONFIGMAPS, NS, names.result_configmap(job_of("a", 1)))
    assert stored is not None and results.read_configmap(stored).output == {"x": 1}
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "RUNNING"}


def test_an_inline_result_stored_before_a_crash_is_adopted() -> None:
    kube, clock, ctrl = a_finished_inline()
    kube.crash_after_write(1)  # the result ConfigMap reached the server; then the process died
    with pytest.raises(Crash):
        ctrl.reconcile(NS, NAME, UID)
    kube.revive()
    again = controller(kube, clock)  # a new process
    again.reconcile(NS, NAME, UID)
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "RUNNING"}
    assert_ledger_sound(kube)


def test_a_planted_configmap_under_an_inline_results_name_fails_only_that_attempt() -> None:
    """A tenant creates the result's ConfigMap first, with other content (and an ownerReference
    to the execution): the attempt fails saying so; the operator reports no error and the
    planted content never becomes the step's output."""
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    cm_name = names.result_configmap(job_of("a", 1))
    raw, sha = results.encode(ok(verdict="planted"))
    kube.put(
        k.CONFIGMAPS, NS, results.configmap(cm_name, raw, sha, {}, REF.owner(controller=False))
    )
    finish(kube, "a", 1, ok(x=1), inline=True)
    clock.tick()
    ctrl.reconcile(NS, NAME, UID)
    assert steps_of(kube)["a"] == "FAILED"
    assert condition(kube, "Ready")["reason"] != "ReconcileError"
    failed = [e for e in ledger(kube) if e["eventType"] == "STEP_FAILED"]
    assert len(failed) == 1
    error = str(failed[0]["details"])
    assert cm_name in error and "written by someone else" in error, error
    assert "planted" not in str(status(kube))
    assert_ledger_sound(kube)
