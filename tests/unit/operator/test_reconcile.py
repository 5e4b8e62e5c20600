"""The operator's reconcile step, driven over a simulated cluster (pure: no API server).

The real API behaviour (watches, Jobs, pods, RBAC) is covered by tests/e2e/test_operator.py;
here every decision is checked with exact inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook_engine.audit import AuditChain, verify
from runbook_engine.canonical import canonical_sha256
from runbook_engine.contract import StepExecutorResult
from runbook_engine.model import ExecutionRequest, RunbookDefinition
from runbook_engine.plan import compile_plan
from runbook_operator import names
from runbook_operator.config import OperatorConfig
from runbook_operator.execution.reconcile import (
    Effects,
    Pinned,
    World,
    load_state,
    reconcile,
    wanted_reads,
)
from runbook_operator.execution.view import ExecutionView
from runbook_operator.steps import results
from runbook_operator.steps.observe import observe_children

from .kubefakes import REF, execution, job, pod, pointer_message, terminated

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CFG = OperatorConfig()


def pinned(*steps: dict[str, Any], **defn: Any) -> Pinned:
    definition = RunbookDefinition.model_validate({"id": "rb", "steps": list(steps), **defn})
    request = ExecutionRequest.model_validate({"runbookRef": {"name": "rb"}, "startedBy": "alice"})
    return Pinned(compile_plan(definition), request, "h" * 64, "demo-definition")


def s(sid: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "actionType": "TRANSFORM", "dependsOn": list(deps), **extra}


@dataclass
class Cluster:
    """Just enough of a cluster: the execution, its Jobs, pods and result ConfigMaps."""

    pin: Pinned
    body: dict[str, Any] = field(default_factory=execution)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    configmaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    chain: AuditChain = field(default_factory=lambda: AuditChain(REF.execution_id))
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def step(self, now: datetime, *, apply_status: bool = True) -> Effects:
        state = load_state(self.pin.plan, self.body["status"], REF.execution_id, now)
        observed = observe_children(list(self.jobs.values()), list(self.pods.values()))
        reads: dict[str, StepExecutorResult | str] = {}
        for job_name, pointer in wanted_reads(state, observed, REF):
            cm = self.configmaps.get(pointer.configmap)
            try:
                reads[job_name] = results.read_configmap(cm, pointer.sha256) if cm else "missing"
            except results.ResultError as exc:
                reads[job_name] = str(exc)
        world = World(ExecutionView.of(self.body), self.pin, self.chain, observed, reads, now)
        effects = reconcile(world, state, CFG)
        for manifest in effects.create_jobs:
            name = manifest["metadata"]["name"]
            self.created.append(name)
            self.jobs.setdefault(name, {**manifest, "status": {}})
        for name in effects.delete_jobs:
            self.deleted.append(name)
            self.jobs.pop(name, None)
        for cm in effects.result_configmaps:
            self.configmaps[cm["metadata"]["name"]] = cm
        if apply_status:
            self.body["status"] = json.loads(json.dumps(effects.status))
        return effects

    def finish(self, sid: str, attempt: int, result: StepExecutorResult) -> None:
        """The step pod stores its result ConfigMap and terminates with a pointer."""
        name = names.job_name(REF.name, REF.uid, sid, attempt)
        raw, sha = results.encode(result)
        self.configmaps[names.result_configmap(name)] = results.configmap(
            names.result_configmap(name), raw, sha, {}, None
        )
        pointer = results.Pointer(names.result_configmap(name), sha, len(raw))
        state = terminated(pointer_message(pointer), 0 if result.success else 1)
        self.pods[name] = pod(sid, attempt, state)
        self.jobs[name] = {**self.jobs[name], **job(sid, attempt, conditions=["Complete"])}

    def steps(self) -> dict[str, str]:
        return {e["stepId"]: e["status"] for e in self.body["status"]["steps"]}


def ok(**output: Any) -> StepExecutorResult:
    return StepExecutorResult(success=True, output=output)


def test_a_chain_runs_one_job_per_ready_step_and_passes_outputs_downstream() -> None:
    c = Cluster(pinned(s("a"), s("b", "a"), s("c", "b")))
    first = c.step(T0)
    assert [j["metadata"]["labels"][names.STEP_LABEL] for j in first.create_jobs] == ["a"]
    assert c.steps() == {"a": "RUNNING", "b": "PENDING", "c": "PENDING"}
    assert c.body["status"]["progress"] == "0/3"
    assert c.step(T0 + timedelta(seconds=1)).create_jobs == ()  # still running: nothing new
    c.finish("a", 1, ok(x=1))
    second = c.step(T0 + timedelta(seconds=2))
    (b_job,) = second.create_jobs
    sources = b_job["spec"]["template"]["spec"]["volumes"][1]["projected"]["sources"]
    a_result = names.result_configmap(names.job_name(REF.name, REF.uid, "a", 1))
    assert [src["configMap"]["name"] for src in sources] == [a_result]
    status_a = c.body["status"]["steps"][0]
    assert status_a["outputHash"] == canonical_sha256({"x": 1})
    assert status_a["jobName"] == names.job_name(REF.name, REF.uid, "a", 1)
    c.finish("b", 1, ok(y=2))
    (c_job,) = c.step(T0 + timedelta(seconds=3)).create_jobs
    sources = c_job["spec"]["template"]["spec"]["volumes"][1]["projected"]["sources"]
    b_result = names.result_configmap(names.job_name(REF.name, REF.uid, "b", 1))
    # the engine's context rule: direct dependencies only
    assert [src["configMap"]["name"] for src in sources] == [b_result]
    c.finish("c", 1, ok())
    last = c.step(T0 + timedelta(seconds=4))
    assert last.terminal
    assert c.body["status"]["phase"] == "COMPLETED"
    assert c.body["status"]["progress"] == "3/3"
    conditions = {x["type"]: x for x in c.body["status"]["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    assert conditions["Succeeded"]["observedGeneration"] == 1
    assert c.body["status"]["audit"]["count"] == len(c.chain.entries)
    assert c.body["status"]["audit"]["head"] == c.chain.head
    assert verify(c.chain.entries).valid
    assert len(c.created) == 3 and len(set(c.created)) == 3


def test_a_replayed_reconcile_adds_no_entries_and_asks_for_the_same_jobs() -> None:
    """kopf delivers at least once; the status write may have been lost in a crash."""
    c = Cluster(pinned(s("a"), s("b")))
    first = c.step(T0, apply_status=False)
    again = c.step(T0 + timedelta(seconds=5), apply_status=False)
    assert [j["metadata"]["name"] for j in again.create_jobs] == [
        j["metadata"]["name"] for j in first.create_jobs
    ]
    assert again.entries == ()
    assert len(c.chain.entries) == len(first.entries)


def test_pause_starts_nothing_new_and_records_what_finishes() -> None:
    c = Cluster(pinned(s("a"), s("b", "a"), s("c", "a")))
    c.step(T0)
    c.body["spec"]["paused"] = True
    c.finish("a", 1, ok())
    paused = c.step(T0 + timedelta(seconds=1))
    assert paused.create_jobs == ()
    assert c.body["status"]["phase"] == "PAUSED"
    assert c.steps()["a"] == "SUCCEEDED"
    c.body["spec"]["paused"] = False
    resumed = c.step(T0 + timedelta(seconds=2))
    assert sorted(j["metadata"]["labels"][names.STEP_LABEL] for j in resumed.create_jobs) == [
        "b",
        "c",
    ]
    assert names.job_name(REF.name, REF.uid, "a", 2) not in c.created  # never re-run


def test_cancel_deletes_running_jobs_and_cancels_the_rest() -> None:
    c = Cluster(pinned(s("a"), s("b"), s("c", "a")))
    c.step(T0)
    running = set(c.jobs)
    c.body["spec"]["cancel"] = True
    effects = c.step(T0 + timedelta(seconds=1))
    assert set(effects.delete_jobs) == running
    assert c.body["status"]["phase"] == "CANCELLED"
    assert set(c.steps().values()) == {"CANCELLED"}
    assert effects.terminal


def test_timeout_deletes_the_job_and_retries_after_backoff() -> None:
    retry = {"maxAttempts": 2, "backoffSeconds": 5}
    c = Cluster(pinned(s("a", timeoutMs=10_000, retryPolicy=retry)))
    c.step(T0)
    waiting = c.step(T0 + timedelta(seconds=10))
    assert waiting.delete_jobs == (names.job_name(REF.name, REF.uid, "a", 1),)
    assert waiting.next_wakeup == T0 + timedelta(seconds=15)
    assert c.step(T0 + timedelta(seconds=14)).create_jobs == ()
    (second,) = c.step(T0 + timedelta(seconds=15)).create_jobs
    assert second["metadata"]["name"] == names.job_name(REF.name, REF.uid, "a", 2)


def test_a_missing_image_fails_the_attempt_with_its_reason_and_deletes_the_job() -> None:
    c = Cluster(pinned(s("a")))
    c.step(T0)
    name = names.job_name(REF.name, REF.uid, "a", 1)
    c.pods[name] = pod("a", 1, {"waiting": {"reason": "ErrImageNeverPull", "message": "no"}})
    effects = c.step(T0 + timedelta(seconds=1))
    assert effects.delete_jobs == (name,)
    assert c.steps()["a"] == "FAILED"
    assert "ErrImageNeverPull for image" in c.body["status"]["steps"][0]["message"]


def test_a_forged_result_configmap_fails_the_attempt() -> None:
    c = Cluster(pinned(s("a")))
    c.step(T0)
    c.finish("a", 1, ok(verdict="benign"))
    cm_name = names.result_configmap(names.job_name(REF.name, REF.uid, "a", 1))
    raw, sha = results.encode(ok(verdict="malicious"))
    c.configmaps[cm_name] = results.configmap(cm_name, raw, sha, {}, None)
    c.step(T0 + timedelta(seconds=1))
    assert c.steps()["a"] == "FAILED"
    assert "does not match the pod's report" in c.body["status"]["steps"][0]["message"]


def test_a_job_deleted_by_hand_is_a_lost_attempt_that_is_retried() -> None:
    c = Cluster(pinned(s("a", retryPolicy={"maxAttempts": 2, "backoffSeconds": 0})))
    c.step(T0)
    c.jobs.clear()
    effects = c.step(T0 + timedelta(seconds=1))
    assert [j["metadata"]["name"] for j in effects.create_jobs] == [
        names.job_name(REF.name, REF.uid, "a", 2)
    ]
    lost = [e for e in c.chain.entries if e["eventType"] == "STEP_ATTEMPT_FAILED"]
    assert "its Job was deleted" in lost[0]["details"]["error"]


def test_an_inline_result_is_stored_for_downstream_steps() -> None:
    c = Cluster(pinned(s("a"), s("b", "a")))
    c.step(T0)
    name = names.job_name(REF.name, REF.uid, "a", 1)
    c.pods[name] = pod("a", 1, terminated(json.dumps({"success": True, "output": {"k": 1}})))
    effects = c.step(T0 + timedelta(seconds=1))
    (stored,) = effects.result_configmaps
    assert stored["metadata"]["name"] == names.result_configmap(name)
    assert results.read_configmap(stored).output == {"k": 1}
    assert c.steps()["a"] == "SUCCEEDED"


def test_events_name_the_transitions_and_failures() -> None:
    c = Cluster(pinned(s("a")))
    first = c.step(T0)
    assert [(e.type, e.reason) for e in first.events] == [("Normal", "Started")]
    c.finish("a", 1, StepExecutorResult(success=False, error="boom", retryable=False))
    last = c.step(T0 + timedelta(seconds=1))
    assert [(e.type, e.reason) for e in last.events] == [
        ("Warning", "StepFailed"),
        ("Warning", "Failed"),
    ]
    assert "boom" in last.events[0].message
    ready = {x["type"]: x for x in c.body["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "StepFailed")


def test_started_by_and_the_control_actor_are_recorded() -> None:
    c = Cluster(pinned(s("a")))
    c.step(T0)
    c.body["spec"]["paused"] = True
    c.body["metadata"]["managedFields"] = [
        {
            "manager": "kubectl-patch",
            "time": "2026-01-01T00:00:01Z",
            "fieldsV1": {"f:spec": {"f:paused": {}}},
        }
    ]
    c.step(T0 + timedelta(seconds=1))
    by_type = {e["eventType"]: e["actorId"] for e in c.chain.entries}
    assert by_type["EXECUTION_STARTED"] == "alice"
    assert by_type["EXECUTION_PAUSED"] == "kubectl-patch"
    assert by_type["STEP_STARTED"] == CFG.actor


def test_a_thousand_step_status_stays_compact() -> None:
    """The apiserver limits objects to 1.5 MiB; status must stay far below it."""
    c = Cluster(pinned(*[s(f"step-{i:04d}") for i in range(1000)], maxParallelSteps=1000))
    assert len(c.step(T0).create_jobs) == 1000
    for i in range(1000):
        c.finish(f"step-{i:04d}", 1, ok(i=i))
    c.step(T0 + timedelta(seconds=1))
    size = len(json.dumps(c.body["status"]))
    assert c.body["status"]["phase"] == "COMPLETED"
    assert c.body["status"]["progress"] == "1000/1000"
    assert size < 512 * 1024, size


def _stored(status: dict[str, Any]) -> dict[str, Any]:
    """The status as the apiserver keeps it: null fields pruned (none is `nullable`)."""

    def prune(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: prune(x) for k, x in v.items() if x is not None}
        return [prune(x) for x in v] if isinstance(v, list) else v

    return prune(json.loads(json.dumps(status)))  # type: ignore[no-any-return]


def test_a_reconcile_with_nothing_new_derives_the_stored_status_so_writes_nothing() -> None:
    c = Cluster(pinned(s("a"), s("b", "a")))
    for t, event in enumerate([None, "finish-a", None, "finish-b", None]):
        if event == "finish-a":
            c.finish("a", 1, ok(x=1))
        if event == "finish-b":
            c.finish("b", 1, ok())
        effects = c.step(T0 + timedelta(seconds=t), apply_status=False)
        c.body["status"] = _stored(effects.status)
        again = c.step(T0 + timedelta(seconds=t, milliseconds=500), apply_status=False)
        assert again.status == c.body["status"], f"after {event}: an unchanged status is written"
