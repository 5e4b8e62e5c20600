"""The operator's side of APPROVAL steps, pure: RunbookApprovals → decisions → verdicts.

The real apiserver (admission stamps, RBAC, the watch, a restart) is tests/e2e/test_approvals.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook_engine.audit import AuditChain
from runbook_operator import names
from runbook_operator.execution import approvals
from runbook_operator.execution.events import kube_events
from runbook_operator.execution.reconcile import Effects, World, load_state, reconcile
from runbook_operator.execution.view import ExecutionView
from runbook_operator.steps import results
from runbook_operator.steps.observe import observe_children

from .kubefakes import REF, execution
from .test_reconcile import CFG, pinned, s

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GATE = {
    "id": "gate",
    "actionType": "APPROVAL",
    "dependsOn": ["prep"],
    "timeoutMs": 60_000,
    "config": {"approvers": {"groups": ["sre"]}, "required": 2},
}


def rba(
    name: str, user: str, at: datetime, decision: str = "approve", **extra: Any
) -> dict[str, Any]:
    annotations = {
        "runbook-operator.dev/created-by": user,
        "runbook-operator.dev/created-by-uid": f"u-{user}",
        "runbook-operator.dev/created-by-groups": "sre,system:authenticated",
    }
    return {
        "metadata": {
            "name": name,
            "namespace": REF.namespace,
            "creationTimestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "annotations": extra.pop("annotations", annotations),
        },
        "spec": {
            "executionRef": {"name": extra.pop("execution", REF.name)},
            "stepId": extra.pop("step", "gate"),
            "decision": decision,
        },
        "status": extra.pop("status", {}),
    }


class Sim:
    def __init__(self) -> None:
        self.pin = pinned(s("prep"), GATE, s("act", "gate"))
        self.body = execution()
        self.chain = AuditChain(REF.execution_id)
        self.objects: list[dict[str, Any]] = []

    def step(self, now: datetime, authorized: dict[str, bool] | None = None) -> Effects:
        state = load_state(self.pin.plan, self.body["status"], REF.execution_id, now)
        received = tuple(approvals.for_execution(self.objects, REF.name))
        world = World(
            ExecutionView.of(self.body),
            self.pin,
            self.chain,
            observe_children(REF.uid, [], []),
            {},
            now,
            False,
            approvals=received,
            authorized=authorized or {},
        )
        effects = reconcile(world, state, CFG)
        self.body["status"] = json.loads(json.dumps(effects.status))
        for name, status in effects.approval_verdicts:  # as Controller._write_verdict
            for obj in self.objects:
                if obj["metadata"]["name"] == name:
                    obj["status"] = status
        return effects

    def finish_prep(self, now: datetime) -> Effects:
        """`prep` ran as a Job and succeeded (its result read inline)."""
        from runbook_engine.contract import StepExecutorResult
        from runbook_engine.driver import Actors, drive
        from runbook_engine.scheduler import AttemptFinished

        state = load_state(self.pin.plan, self.body["status"], REF.execution_id, now)
        obs = [AttemptFinished("prep", 1, StepExecutorResult(success=True, output={"x": 1}))]
        step = drive(self.pin.plan, self.pin.request, state, self.chain, obs, now, Actors("t"))
        self.body["status"]["steps"] = step.state.to_wire()["steps"]
        return self.step(now)

    def verdict(self, name: str) -> dict[str, Any]:
        return next(o["status"] for o in self.objects if o["metadata"]["name"] == name)


def test_a_gate_waits_without_a_job_then_counts_two_members() -> None:
    sim = Sim()
    sim.step(T0)
    effects = sim.finish_prep(T0 + timedelta(seconds=1))
    assert sim.body["status"]["awaitingApproval"] == "gate"
    assert not [j for j in effects.create_jobs if "gate" in j["metadata"]["name"]]
    posted = [e.reason for e in kube_events(sim.chain.entries)]
    assert "AwaitingApproval" in posted
    # a later reconcile does not see a "lost" Job for the waiting gate
    sim.step(T0 + timedelta(seconds=5))
    assert {s["stepId"]: s["status"] for s in sim.body["status"]["steps"]}["gate"] == "RUNNING"

    sim.objects += [
        rba("by-alice", "alice", T0 + timedelta(seconds=6)),  # alice started the execution
        rba("by-sam", "sam", T0 + timedelta(seconds=7)),
    ]
    sim.step(T0 + timedelta(seconds=8))
    assert sim.verdict("by-alice")["code"] == "RequesterExcluded"
    assert sim.verdict("by-sam")["verdict"] == "Counted"
    assert sim.body["status"]["awaitingApproval"] == "gate"

    sim.objects.append(rba("by-sue", "sue", T0 + timedelta(seconds=9)))
    effects = sim.step(T0 + timedelta(seconds=10))
    assert sim.verdict("by-sue")["verdict"] == "Counted"
    assert sim.body["status"]["awaitingApproval"] is None  # removed by the merge patch
    created = [j["metadata"]["name"] for j in effects.create_jobs]
    assert created == [names.job_name(REF.name, REF.uid, "act", 1)]
    # the gate's output is stored where a Job's result would be, for `act` to mount
    (stored,) = effects.result_configmaps
    gate_job = names.job_name(REF.name, REF.uid, "gate", 1)
    assert stored["metadata"]["name"] == names.result_configmap(gate_job)
    output = results.read_configmap(stored).output
    assert [d["user"] for d in output["decisions"]] == ["sam", "sue"]


def test_decisions_before_the_gate_opened_or_for_other_steps_are_refused() -> None:
    sim = Sim()
    sim.objects += [
        rba("early", "sam", T0),
        rba("wrong-step", "sam", T0, step="prep"),
        rba("no-stamp", "sam", T0, annotations={}),
        rba("other-exec", "sam", T0, execution="another"),
    ]
    sim.step(T0)
    assert sim.verdict("early")["code"] == "StepNotWaiting"
    assert "not an APPROVAL" in sim.verdict("wrong-step")["reason"]
    assert sim.verdict("no-stamp")["code"] == "Unauthenticated"
    assert sim.verdict("other-exec") == {}  # not this execution's to judge


def test_a_recorded_verdict_survives_a_change_of_rbac() -> None:
    """No approvers listed: eligibility is RBAC's answer when first judged, then the ledger's."""
    sim = Sim()
    sim.pin = pinned(s("prep"), {**GATE, "config": {"required": 2}}, s("act", "gate"))
    sim.step(T0)
    sim.finish_prep(T0 + timedelta(seconds=1))
    sim.objects.append(rba("by-sam", "sam", T0 + timedelta(seconds=2)))
    sim.step(T0 + timedelta(seconds=3), authorized={"by-sam": True})
    assert sim.verdict("by-sam")["verdict"] == "Counted"
    sim.objects.append(rba("by-bob", "bob", T0 + timedelta(seconds=4)))
    # RBAC now says no to everyone: sam's recorded approval still counts, bob's is refused
    sim.step(T0 + timedelta(seconds=5), authorized={"by-bob": False})
    assert sim.verdict("by-bob")["code"] == "NotEligible"
    received = approvals.for_execution(sim.objects, REF.name)
    state = load_state(sim.pin.plan, sim.body["status"], REF.execution_id, T0)
    (observed,) = approvals.observations(sim.pin.plan, state, received, sim.chain, {}, "alice", "x")
    assert [(d.id, d.may_approve) for d in observed.decisions] == [
        ("by-sam", True),
        ("by-bob", False),
    ]


def test_late_verdicts_for_finished_or_missing_executions() -> None:
    body = rba("late", "sam", T0)
    assert approvals.late_verdict(body, "demo", "COMPLETED", T0)["code"] == "StepNotWaiting"
    assert "not found" in approvals.late_verdict(body, "demo", None, T0)["reason"]
    assert approvals.late_verdict(body, "demo", "RUNNING", T0) is None
    judged = rba("judged", "sam", T0, status={"verdict": "Counted"})
    assert approvals.late_verdict(judged, "demo", "COMPLETED", T0) is None


def test_the_pending_gauge_is_one_per_waiting_gate_and_goes_when_it_ends() -> None:
    from prometheus_client import REGISTRY

    from runbook_operator import metrics

    def pending(step: str) -> float | None:
        return REGISTRY.get_sample_value(
            "runbook_approvals_pending",
            {"namespace": "ns-g", "execution": "ex-g", "step": step},
        )

    metrics.approvals_pending("ns-g", "ex-g", ["gate", "second"], "gate")
    assert pending("gate") == 1 and pending("second") is None
    metrics.approvals_pending("ns-g", "ex-g", ["gate", "second"], "gate,second")
    assert pending("gate") == 1 and pending("second") == 1
    metrics.approvals_pending("ns-g", "ex-g", ["gate", "second"], None)
    assert pending("gate") is None and pending("second") is None
