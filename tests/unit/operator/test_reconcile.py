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

from .kubefakes import REF, execution, job, job_uid, pod, pointer_message, terminated

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
        observed = observe_children(REF.uid, list(self.jobs.values()), list(self.pods.values()))
        reads: dict[str, StepExecutorResult | str] = {}
        for read in wanted_reads(state, observed, REF):  # as Controller._read_results
            cm = self.configmaps.get(read.pointer.configmap)
            if cm is None:
                if not read.inline:
                    reads[read.job] = "missing"
                continue
            try:
                reads[read.job] = results.read_configmap(
                    cm, read.pointer, owner_uid=REF.uid, output_limit=CFG.max_output_bytes
                )
            except results.ResultError as exc:
                reads[read.job] = str(exc)
        world = World(ExecutionView.of(self.body), self.pin, self.chain, observed, reads, now)
        effects = reconcile(world, state, CFG)
        for manifest in effects.create_jobs:
            name = manifest["metadata"]["name"]
            self.created.append(name)
            meta = {**manifest["metadata"], "uid": job_uid(name)}
            self.jobs.setdefault(name, {**manifest, "metadata": meta, "status": {}})
        for name in effects.delete_jobs:
            self.deleted.append(name)
            self.jobs.pop(name, None)
        for cm in effects.result_configmaps:  # create_or_get, compared as Controller._apply
            existing = self.configmaps.setdefault(cm["metadata"]["name"], cm)
            assert existing is cm or results.same_result(existing, cm)
        if apply_status:
            self.body["status"] = json.loads(json.dumps(effects.status))
        return effects

    def finish(self, sid: str, attempt: int, result: StepExecutorResult) -> None:
        """The step pod stores its result ConfigMap and terminates with a pointer."""
        name = names.job_name(REF.name, REF.uid, sid, attempt)
        raw, sha = results.encode(result)
        self.configmaps[names.result_configmap(name)] = results.configmap(
            names.result_configmap(name), raw, sha, {}, REF.owner(controller=False)
        )
        pointer = results.Pointer(names.result_configmap(name), sha, len(raw))
        state = terminated(pointer_message(pointer), 0 if result.success else 1)
        self.run_pod(sid, attempt, state)
        done = job(sid, attempt, conditions=["Complete"])
        self.jobs[name] = {**self.jobs[name], **done, "spec": self.jobs[name]["spec"]}

    def run_pod(self, sid: str, attempt: int, state: dict[str, Any]) -> dict[str, Any]:
        """The pod the Job controller makes from the attempt's Job, in `state`."""
        name = names.job_name(REF.name, REF.uid, sid, attempt)
        template = self.jobs[name]["spec"]["template"]["spec"]
        made = self.pods[name] = pod(sid, attempt, state, spec=template)
        return made

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
    c.run_pod("a", 1, {"waiting": {"reason": "ErrImageNeverPull", "message": "no"}})
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
    c.configmaps[cm_name] = results.configmap(cm_name, raw, sha, {}, REF.owner(controller=False))
    c.step(T0 + timedelta(seconds=1))
    assert c.steps()["a"] == "FAILED"
    assert "written by someone else" in c.body["status"]["steps"][0]["message"]


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
    c.run_pod("a", 1, terminated(json.dumps({"success": True, "output": {"k": 1}})))
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


# -- results the operator refuses to follow or to trust ---------------------------------------
def _report(c: Cluster, sid: str, pointer: results.Pointer) -> None:
    c.run_pod(sid, 1, terminated(pointer_message(pointer)))


def _lost_reason(c: Cluster, sid: str) -> str:
    """Why the step's only attempt was lost, from its status message."""
    (message,) = [e["message"] for e in c.body["status"]["steps"] if e["stepId"] == sid]
    assert message.startswith("failed after 1 attempt: lost: "), message
    return str(message.removeprefix("failed after 1 attempt: lost: "))


def test_a_pointer_to_another_steps_configmap_is_refused_unread() -> None:
    c = Cluster(pinned(s("a"), s("b")))
    c.step(T0)
    c.finish("b", 1, ok(verdict="from b"))
    b_cm = names.result_configmap(names.job_name(REF.name, REF.uid, "b", 1))
    raw, sha = results.encode(ok(verdict="from b"))
    _report(c, "a", results.Pointer(b_cm, sha, len(raw)))
    c.step(T0 + timedelta(seconds=1))
    assert c.steps() == {"a": "FAILED", "b": "SUCCEEDED"}
    assert f"the pod points to ConfigMap {b_cm!r}, not to its attempt's" in _lost_reason(c, "a")


def test_a_pointer_announcing_more_than_the_runbooks_limit_fails_the_attempt() -> None:
    c = Cluster(pinned(s("a"), maxOutputBytes=1024))
    c.step(T0)
    c.finish(
        "a", 1, ok(blob="x" * 5000)
    )  # result of ~5 KB; the runbook's limit reads ≤ 1 MiB+2 KiB
    c.step(T0 + timedelta(seconds=1))
    assert c.steps()["a"] == "FAILED"  # the scheduler's output check
    c2 = Cluster(pinned(s("a"), maxOutputBytes=1024))
    c2.step(T0)
    cm_name = names.result_configmap(names.job_name(REF.name, REF.uid, "a", 1))
    _report(c2, "a", results.Pointer(cm_name, "0" * 64, 700 * 1024 * 1024))
    c2.step(T0 + timedelta(seconds=1))
    assert c2.steps()["a"] == "FAILED"
    assert _lost_reason(c2, "a").startswith(
        f"result is {700 * 1024 * 1024} bytes, larger than the 1050624-byte result limit for "
        "the 1024-byte output limit ("
    )


def test_a_gzip_bomb_in_the_result_configmap_fails_the_attempt() -> None:
    import base64
    import zlib

    c = Cluster(pinned(s("a"), s("b")))
    c.step(T0)
    name = names.job_name(REF.name, REF.uid, "a", 1)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join([*(packer.compress(bytes(1 << 20)) for _ in range(16)), packer.flush()])
    cm = results.configmap(names.result_configmap(name), b"{}", "0" * 64, {}, REF.owner())
    cm["binaryData"][results.RESULT_KEY] = base64.b64encode(bomb).decode()
    c.configmaps[cm["metadata"]["name"]] = cm
    _report(c, "a", results.Pointer(cm["metadata"]["name"], "0" * 64, 1000))
    c.finish("b", 1, ok())
    c.step(T0 + timedelta(seconds=1))
    assert c.steps() == {"a": "FAILED", "b": "SUCCEEDED"}
    assert "holds more than the 1000 bytes the pod reported" in _lost_reason(c, "a")


def test_a_result_configmap_owned_by_someone_else_fails_the_attempt() -> None:
    c = Cluster(pinned(s("a")))
    c.step(T0)
    c.finish("a", 1, ok())
    cm_name = names.result_configmap(names.job_name(REF.name, REF.uid, "a", 1))
    del c.configmaps[cm_name]["metadata"]["ownerReferences"]
    c.step(T0 + timedelta(seconds=1))
    assert "is not owned by this execution" in _lost_reason(c, "a")


def test_an_inline_result_whose_configmap_name_is_taken_by_other_content_fails() -> None:
    c = Cluster(pinned(s("a"), s("b", "a")))
    c.step(T0)
    name = names.job_name(REF.name, REF.uid, "a", 1)
    cm_name = names.result_configmap(name)
    raw, sha = results.encode(ok(verdict="planted"))
    c.configmaps[cm_name] = results.configmap(cm_name, raw, sha, {}, REF.owner(controller=False))
    c.run_pod("a", 1, terminated(json.dumps({"success": True, "output": {"k": 1}})))
    effects = c.step(T0 + timedelta(seconds=1))
    assert effects.result_configmaps == ()
    assert c.steps()["a"] == "FAILED"
    assert _lost_reason(c, "a").startswith(f"result ConfigMap {cm_name} ")
    assert _lost_reason(c, "a").endswith("written by someone else")


def test_an_inline_result_already_stored_by_a_lost_reconcile_is_kept() -> None:
    c = Cluster(pinned(s("a"), s("b", "a")))
    c.step(T0)
    name = names.job_name(REF.name, REF.uid, "a", 1)
    c.run_pod("a", 1, terminated(json.dumps({"success": True, "output": {"k": 1}})))
    c.step(T0 + timedelta(seconds=1), apply_status=False)  # stored, status write lost
    assert names.result_configmap(name) in c.configmaps
    c.step(T0 + timedelta(seconds=2))
    assert c.steps() == {"a": "SUCCEEDED", "b": "RUNNING"}


def test_a_forged_pod_with_the_steps_labels_does_not_finish_the_step() -> None:
    c = Cluster(pinned(s("a")))
    c.step(T0)
    name = names.job_name(REF.name, REF.uid, "a", 1)
    template = c.jobs[name]["spec"]["template"]["spec"]
    forged = pod(
        "a", 1, terminated(json.dumps({"success": True, "output": {"v": "forged"}})), spec=template
    )
    forged["metadata"]["ownerReferences"] = []
    del forged["metadata"]["labels"]["batch.kubernetes.io/controller-uid"]
    c.pods["forged"] = forged
    c.step(T0 + timedelta(seconds=1))
    assert c.steps()["a"] == "RUNNING"
    c.finish("a", 1, ok(v="real"))
    c.step(T0 + timedelta(seconds=2))
    assert c.steps()["a"] == "SUCCEEDED"
    assert c.body["status"]["steps"][0]["outputHash"] == canonical_sha256({"v": "real"})
    assert name in c.jobs


def test_steps_a_a_dash_and_a_underscore_each_get_their_own_result() -> None:
    ids = ["a", "a-", "a_"]
    c = Cluster(pinned(*[s(sid) for sid in ids]))
    first = c.step(T0)
    assert len({j["metadata"]["labels"][names.STEP_LABEL] for j in first.create_jobs}) == 3
    for sid in ids:
        c.finish(sid, 1, ok(id=sid))
    c.step(T0 + timedelta(seconds=1))
    hashes = {e["stepId"]: e["outputHash"] for e in c.body["status"]["steps"]}
    assert hashes == {sid: canonical_sha256({"id": sid}) for sid in ids}
