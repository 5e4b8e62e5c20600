"""The operator on the real cluster: one Job per ready step, real pods, control by patch and
delete, every failure mode of a pod, and a restart at any point (issue 7)."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import pytest
from kubernetes.client.rest import ApiException

from .conftest import Cluster, wait_for
from .operator_env import OperatorProcess, Runbooks, shell_step, transform

pytestmark = pytest.mark.e2e

INLINE_OK = (
    "import json,time,os; time.sleep(float(os.environ.get('SLEEP','0'))); "
    "open('/dev/termination-log','w').write(json.dumps({'success': True, 'output': {'ok': True}}))"
)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_dag_completes_and_outputs_flow_downstream(rb: Runbooks) -> None:
    rb.runbook(
        "chain",
        [
            transform("a", expressions={"n": "input.n"}),
            transform("b", "a", expressions={"seen": "outputs.a.n"}),
            transform(
                "c", "b", "a", expressions={"final": "outputs.b.seen", "first": "outputs.a.n"}
            ),
        ],
    )
    created = rb.execute("run-1", "chain", input={"n": 21}, startedBy="alice@example.org")
    status = rb.wait_phase("run-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "COMPLETED", status
    assert rb.output("run-1", "c") == {"final": 21, "first": 21}
    steps = rb.steps("run-1")
    assert {s["status"] for s in steps.values()} == {"SUCCEEDED"}
    assert all(len(s["outputHash"]) == 64 and s["attempt"] == 1 for s in steps.values())
    assert status["progress"] == "3/3"
    assert status["definitionHash"] and status["definitionRef"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    assert conditions["Ready"]["observedGeneration"] == created["metadata"]["generation"]
    jobs = rb.jobs(created["metadata"]["uid"])
    assert sorted(j.metadata.labels["runbook-operator.dev/step"] for j in jobs) == ["a", "b", "c"]
    for job in jobs:
        assert job.spec.backoff_limit == 0
        assert job.metadata.owner_references[0].uid == created["metadata"]["uid"]
        assert job.metadata.labels["app.kubernetes.io/managed-by"] == "runbook-operator"
    audit = status["audit"]
    assert audit["count"] >= 8 and len(audit["head"]) == 64
    assert audit["recent"][-1]["eventType"] == "EXECUTION_COMPLETED"
    assert audit["recent"][-1]["hash"] == audit["head"]
    assert audit["checkpoint"]["count"] == audit["count"]
    reasons = [r for r, _ in rb.events("run-1")]
    assert "Started" in reasons and "Completed" in reasons


def test_a_diamond_with_a_failing_step_and_a_skip_on_failure_branch(rb: Runbooks) -> None:
    rb.runbook(
        "diamond",
        [
            transform("a", expressions={"x": "input.x"}),
            shell_step("flaky", "import sys; sys.exit(4)", "a", skipOnFailure=True),
            {
                "id": "check",
                "actionType": "VALIDATE",
                "dependsOn": ["a"],
                "config": {"rules": [{"field": "input.missing", "required": True}]},
            },
            transform("after_flaky", "flaky", expressions={"x": "outputs.a.x"}),
            transform("after_check", "check", expressions={"x": "outputs.a.x"}),
        ],
        maxParallelSteps=3,
    )
    rb.execute("d-1", "diamond", input={"x": 1})
    status = rb.wait_phase("d-1", "COMPLETED", "FAILED", timeout=240)
    steps = {k: v["status"] for k, v in rb.steps("d-1").items()}
    assert steps == {
        "a": "SUCCEEDED",
        "flaky": "SKIPPED",
        "check": "FAILED",
        "after_flaky": "SUCCEEDED",
        "after_check": "SKIPPED",
    }
    assert status["phase"] == "FAILED"
    assert "exited with code 4" in rb.steps("d-1")["flaky"]["message"]
    assert rb.steps("d-1")["after_check"]["blockedBy"] == "check"
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "StepFailed")


def test_retries_wait_for_their_exponential_backoff(rb: Runbooks) -> None:
    policy = {"maxAttempts": 3, "backoffSeconds": 2, "backoffMultiplier": 2}
    rb.runbook("retry", [shell_step("always", "import sys; sys.exit(1)", retryPolicy=policy)])
    created = rb.execute("r-1", "retry")
    rb.wait_phase("r-1", "FAILED", timeout=240)
    step = rb.steps("r-1")["always"]
    assert step["attempt"] == 3
    assert step["message"].startswith("failed after 3 attempts")
    jobs = sorted(rb.jobs(created["metadata"]["uid"]), key=lambda j: j.metadata.creation_timestamp)
    assert [j.metadata.labels["runbook-operator.dev/attempt"] for j in jobs] == ["1", "2", "3"]
    gaps = [
        (b.metadata.creation_timestamp - a.metadata.creation_timestamp).total_seconds()
        for a, b in itertools.pairwise(jobs)
    ]
    assert gaps[0] >= 2 and gaps[1] >= 4, gaps


def test_a_timeout_kills_the_pod(rb: Runbooks, cluster: Cluster) -> None:
    rb.runbook("slow", [shell_step("sleepy", "import time; time.sleep(600)", timeoutMs=4000)])
    created = rb.execute("t-1", "slow")
    rb.wait_phase("t-1", "FAILED", timeout=180)
    assert rb.steps("t-1")["sleepy"]["message"] == "failed after 1 attempt: timed out after 4000 ms"
    wait_for(lambda: not rb.jobs(created["metadata"]["uid"]), 120, 1, "the timed-out Job to go")
    wait_for(lambda: not rb.pods(created["metadata"]["uid"]), 120, 1, "its pod to go")


def test_killed_oom_and_missing_image_pods_are_failed_attempts_with_reasons(
    rb: Runbooks, cluster: Cluster
) -> None:
    rb.runbook("killed", [shell_step("victim", "import time; time.sleep(600)")])
    rb.runbook(
        "oom",
        [
            shell_step(
                "hog",
                "x = bytearray(400 * 1024 * 1024); import time; time.sleep(5)",
                container={
                    "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "32Mi"}}
                },
            )
        ],
    )
    rb.runbook(
        "noimage",
        [
            {
                "id": "ghost",
                "actionType": "CUSTOM",
                "container": {"image": "runbook-operator:no-such-tag"},
            }
        ],
    )
    victim = rb.execute("k-1", "killed")
    rb.execute("o-1", "oom")
    rb.execute("i-1", "noimage")

    def running_pod() -> object:
        pods = [p for p in rb.pods(victim["metadata"]["uid"]) if p.status.phase == "Running"]
        return pods[0] if pods else None

    pod = wait_for(running_pod, 180, 1, "the victim's pod to run")
    cluster.core.delete_namespaced_pod(pod.metadata.name, rb.namespace, grace_period_seconds=0)
    for name, step, needle in [
        ("k-1", "victim", "its pod was deleted before the step finished"),
        ("o-1", "hog", "OOMKilled"),
        ("i-1", "ghost", "runbook-operator:no-such-tag"),
    ]:
        rb.wait_phase(name, "FAILED", timeout=240)
        message = rb.steps(name)[step]["message"]
        assert needle in message, (name, message)
    assert any(
        r in rb.steps("i-1")["ghost"]["message"]
        for r in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")
    )


SLOW_FIRST_ATTEMPT = (
    "import json,os,time; a=int(os.environ['RUNBOOK_ATTEMPT']); time.sleep(600 if a == 1 else 0); "
    "open('/dev/termination-log','w').write(json.dumps({'success': True, 'output': {'attempt': a}}))"
)


def test_a_job_deleted_by_hand_is_a_lost_attempt_that_is_retried(
    rb: Runbooks, cluster: Cluster
) -> None:
    retry = {"maxAttempts": 2, "backoffSeconds": 0}
    rb.runbook("handdel", [shell_step("s", SLOW_FIRST_ATTEMPT, retryPolicy=retry)])
    created = rb.execute("h-1", "handdel")
    uid = created["metadata"]["uid"]
    job = wait_for(lambda: rb.jobs(uid), 120, 1, "the first Job")[0]
    cluster.batch.delete_namespaced_job(
        job.metadata.name, rb.namespace, propagation_policy="Background"
    )
    status = rb.wait_phase("h-1", "COMPLETED", "FAILED", timeout=180)
    assert status["phase"] == "COMPLETED", status["steps"]
    assert rb.output("h-1", "s") == {"attempt": 2}


def test_pause_starts_nothing_new_and_resume_finishes_without_rerunning(rb: Runbooks) -> None:
    rb.runbook(
        "pausable",
        [
            shell_step("first", INLINE_OK, container={"env": {"SLEEP": "6"}}),
            shell_step("second", INLINE_OK, "first"),
            shell_step("third", INLINE_OK, "second"),
        ],
    )
    created = rb.execute("p-1", "pausable")
    uid = created["metadata"]["uid"]
    rb.wait(p := "p-1", lambda s: s.get("phase") == "RUNNING", 120, "running")
    rb.patch(p, {"paused": True})
    rb.wait_phase(p, "PAUSED", timeout=60)
    rb.wait(
        p, lambda s: s["steps"][0]["status"] == "SUCCEEDED", 120, "first to finish while paused"
    )
    assert [s["status"] for s in rb.status(p)["steps"]][1:] == ["PENDING", "PENDING"]
    assert len(rb.jobs(uid)) == 1
    rb.patch(p, {"paused": False})
    status = rb.wait_phase(p, "COMPLETED", "FAILED", timeout=180)
    assert status["phase"] == "COMPLETED"
    assert [s["attempt"] for s in status["steps"]] == [1, 1, 1]
    assert status["pauses"] == 1 and status["resumes"] == 1
    assert len(rb.jobs(uid)) == 3


def test_cancel_by_patch_stops_running_jobs_and_keeps_the_object(rb: Runbooks) -> None:
    rb.runbook(
        "cancellable",
        [shell_step("long", "import time; time.sleep(600)"), shell_step("next", INLINE_OK, "long")],
    )
    created = rb.execute("c-1", "cancellable")
    uid = created["metadata"]["uid"]
    wait_for(
        lambda: [p for p in rb.pods(uid) if p.status.phase == "Running"], 180, 1, "the pod to run"
    )
    rb.patch("c-1", {"cancel": True})
    status = rb.wait_phase("c-1", "CANCELLED", timeout=60)
    assert {s["status"] for s in status["steps"]} == {"CANCELLED"}, json.dumps(status, indent=1)
    wait_for(lambda: not rb.jobs(uid), 60, 1, "the Jobs to be deleted")
    assert rb.get("c-1")["metadata"]["name"] == "c-1"


def test_delete_cancels_and_releases_the_object(rb: Runbooks) -> None:
    rb.runbook("deletable", [shell_step("long", "import time; time.sleep(600)")])
    created = rb.execute("x-1", "deletable")
    uid = created["metadata"]["uid"]
    wait_for(lambda: rb.jobs(uid), 120, 1, "the Job")
    # Still running: admission refuses a delete that would cancel it unrecorded (docs/security.md).
    with pytest.raises(ApiException) as refused:
        rb.delete("x-1")
    assert refused.value.status in (403, 422) and "cancel it first" in str(refused.value.body)
    rb.patch("x-1", {"cancel": True})
    rb.delete("x-1")

    def gone() -> bool:
        try:
            rb.get("x-1")
            return False
        except Exception as exc:  # ApiException 404
            return getattr(exc, "status", None) == 404

    wait_for(gone, 90, 1, "the execution to be released by its finalizer")
    wait_for(lambda: not rb.jobs(uid), 60, 1, "its Jobs to go")


def test_a_missing_or_cyclic_runbook_fails_with_a_clear_condition(
    rb: Runbooks, operator: OperatorProcess
) -> None:
    rb.runbook(
        "cyclic",
        [transform("a", "b", expressions={}), transform("b", "a", expressions={})],
    )
    rb.execute("m-1", "does-not-exist")
    rb.execute("m-2", "cyclic")
    for name, reason, needle in [
        ("m-1", "RunbookNotFound", "spec.runbookRef.name: Runbook 'does-not-exist' not found"),
        ("m-2", "InvalidRunbook", "cycle"),
    ]:
        status = rb.wait_phase(name, "FAILED", timeout=60)
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", reason), ready
        assert needle in ready["message"], ready["message"]
        assert status["audit"]["recent"][0]["eventType"] == "EXECUTION_REJECTED"
        assert "Rejected" in [r for r, _ in rb.events(name)]
    assert operator.proc is not None and operator.proc.poll() is None
    rb.runbook("fine", [transform("a", expressions={"v": "input.v"})])
    rb.execute("m-3", "fine", input={"v": 1})
    assert rb.wait_phase("m-3", "COMPLETED", "FAILED", timeout=120)["phase"] == "COMPLETED"


def test_a_refused_legal_basis_starts_no_job(rb: Runbooks) -> None:
    rb.runbook(
        "legal", [transform("a", expressions={})], legalBasisRequired=["legitimate_interests"]
    )
    created = rb.execute("l-1", "legal", legalBasis="consent")
    status = rb.wait_phase("l-1", "FAILED", timeout=60)
    assert "legalBasis" in status["message"] or "legal" in status["message"].lower()
    assert not rb.jobs(created["metadata"]["uid"])
    assert [s["status"] for s in status["steps"]] == ["SKIPPED"]
    assert json.dumps(status["audit"]["recent"]).count("EXECUTION_REJECTED") == 1


def test_an_output_over_the_runbooks_limit_fails_the_attempt_with_size_and_limit(
    rb: Runbooks,
) -> None:
    rb.runbook(
        "bounded", [transform("big", expressions={"blob": "input.blob"})], maxOutputBytes=1024
    )
    rb.execute("b-1", "bounded", input={"blob": "x" * 5000})
    rb.wait_phase("b-1", "FAILED", timeout=120)
    message = rb.steps("b-1")["big"]["message"]
    assert "output is 5011 bytes, over the limit of 1024 bytes" in message, message
