"""Re-running an execution on the real cluster (issue 19): reuse what SUCCEEDED, run the rest.

The parent fails deterministically (a VALIDATE step needs `input.ok: true`); the re-run, made
by another (impersonated) user with new input, runs only the failed step and its dependents (no
Job for the others), records that user as its requester, and both ledgers verify. A re-run of a running parent, and one whose reused result
was replaced by a cluster admin, are refused with a condition saying why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from runbook_engine.contract import StepExecutorResult
from runbook_operator.kube import Kube
from runbook_operator.ledger.store import LedgerStore
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import results

from .conftest import Cluster, apply_project_crds
from .operator_env import (
    GROUP,
    OperatorProcess,
    Runbooks,
    shell_step,
    transform,
    wait_authorized,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def rb(cluster: Cluster, own_operator: tuple[OperatorProcess, str]) -> Runbooks:
    """Runbooks in a namespace only this test's operator watches: on the shared cluster every
    session operator watches `e2e-op-*`, and one of another checkout knows no re-run."""
    op, ns = own_operator
    return Runbooks(cluster, ns, op.tail)


def _our_crds(cluster: Cluster) -> None:
    """Apply this checkout's CRDs again right before a re-run object is made: the cluster is
    shared, and a session of another checkout may have replaced them with ones that lack
    spec.rerunOf (the apiserver would prune it)."""
    apply_project_crds(cluster)


GATE = {
    "id": "gate",
    "actionType": "VALIDATE",
    "dependsOn": ["prepare"],
    "config": {
        "schema": {
            "type": "object",
            "required": ["input"],
            "properties": {
                "input": {
                    "type": "object",
                    "required": ["ok"],
                    "properties": {"ok": {"const": True}},
                }
            },
        }
    },
}


def _ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if cluster.kubeconfig:
        env["KUBECONFIG"] = cluster.kubeconfig
    return subprocess.run(
        [sys.executable, "-m", "runbookctl.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _gated(rb: Runbooks) -> None:
    rb.runbook(
        "gated",
        [
            transform("prepare", expressions={"n": "input.n"}),
            transform("side", expressions={"n": "input.n"}),
            GATE,
            transform("finish", "gate", "prepare", expressions={"ok": "input.ok", "n": "outputs.prepare.n"}),
        ],
    )  # fmt: skip


def _grant(cluster: Cluster, namespace: str, user: str) -> None:
    """`user` may create and read RunbookExecutions in the namespace (nothing else)."""
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rule = client.V1PolicyRule(
        api_groups=[GROUP], resources=["runbookexecutions"], verbs=["get", "list", "create"]
    )
    rbac.create_namespaced_role(
        namespace, client.V1Role(metadata=client.V1ObjectMeta(name="rerunner"), rules=[rule])
    )
    subject = client.RbacV1Subject(kind="User", name=user, api_group="rbac.authorization.k8s.io")
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="rerunner"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="rerunner"
            ),
            subjects=[subject],
        ),
    )
    wait_authorized(
        cluster, namespace, user, verb="create", group=GROUP, resource="runbookexecutions"
    )


def _entries(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
    meta = obj["metadata"]
    ref = ExecutionRef(namespace, meta["name"], meta["uid"])
    return LedgerStore(Kube.connect(cluster.kubeconfig), ref).load().entries


def _made_as_rerun(rb: Runbooks, cluster: Cluster, create: Callable[[], str]) -> str:
    """Create a re-run object (returns its name), again if a CRD without spec.rerunOf
    (another checkout's, applied meanwhile on the shared cluster) pruned the field."""
    for _ in range(5):
        _our_crds(cluster)
        name = create()
        if "rerunOf" in rb.get(name)["spec"]:
            return name
        rb.delete(name)
    raise AssertionError("spec.rerunOf was pruned five times: the CRD keeps being replaced")


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


def _created(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.search(r"runbookexecution/(\S+) created", proc.stdout)
    assert found, proc.stdout
    return found.group(1)


def test_a_failed_execution_reruns_from_the_failed_step_and_refuses_a_tampered_parent(
    cluster: Cluster, rb: Runbooks
) -> None:
    _gated(rb)
    parent = rb.execute("case-1", "gated", input={"n": 7, "ok": False})
    status = rb.wait_phase("case-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "FAILED", status
    steps = rb.steps("case-1")
    assert [steps[s]["status"] for s in ("prepare", "side", "gate", "finish")] == [
        "SUCCEEDED", "SUCCEEDED", "FAILED", "SKIPPED",
    ]  # fmt: skip

    # The re-run is made by another user than the parent's creator (impersonated): it is its
    # own requester.
    _grant(cluster, rb.namespace, "dana")
    counter = iter(range(10))

    def as_dana() -> str:
        made = rb.as_user("dana").execute(
            f"case-1-rerun-dana-{next(counter)}",
            "gated",
            rerunOf={"name": "case-1"},
            input={"ok": True},
            **{"from": ["gate"]},
        )
        return str(made["metadata"]["name"])

    name = _made_as_rerun(rb, cluster, as_dana)
    again = rb.wait_phase(name, "COMPLETED", "FAILED", timeout=240)
    assert again["phase"] == "COMPLETED", [s.get("message") for s in again["steps"]]
    rerun = rb.get(name)
    new_steps = rb.steps(name)
    for sid in ("prepare", "side"):
        assert new_steps[sid]["status"] == "SUCCEEDED"
        assert new_steps[sid]["reusedFrom"] == status["executionId"]
        assert "jobName" not in new_steps[sid]
        assert new_steps[sid]["outputHash"] == steps[sid]["outputHash"]
    # No Job ran the reused steps; the reused output flowed downstream from its copy.
    jobs = rb.jobs(rerun["metadata"]["uid"])
    assert sorted(j.metadata.labels["runbook-operator.dev/step"] for j in jobs) == [
        "finish",
        "gate",
    ]
    assert rb.output(name, "finish") == {"ok": True, "n": 7}

    entries = _entries(cluster, rb.namespace, rerun)
    first = entries[0]
    assert first["eventType"] == "EXECUTION_STARTED"
    link = first["details"]["rerunOf"]
    assert link["executionId"] == status["executionId"] and link["name"] == "case-1"
    assert link["uid"] == parent["metadata"]["uid"]
    assert link["ledgerHead"] == status["audit"]["head"]
    assert link["ledgerCount"] == status["audit"]["count"]
    assert link["checkpoint"]["head"] == status["audit"]["checkpoint"]["head"]
    assert link["inputSource"] == "given" and link["definition"] == "pinned"
    assert link["run"] == ["gate", "finish"] and link["reused"] == ["prepare", "side"]
    assert first["details"]["authenticatedUser"]["username"] == "dana"
    parent_first = _entries(cluster, rb.namespace, parent)[0]
    assert parent_first["details"]["authenticatedUser"]["username"] != "dana"
    reused = [e["stepId"] for e in entries if e["eventType"] == "STEP_REUSED"]
    assert reused == ["prepare", "side"]
    for execution in ("case-1", name):
        proc = _ctl(cluster, "verify", execution, "-n", rb.namespace)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.startswith("OK "), proc.stdout

    # A cluster admin replaces the parent's result of `prepare` (it is immutable: deleted and
    # made again, owned by the parent as before). A new re-run refuses to reuse it.
    cm_name = f"{steps['prepare']['jobName']}-result"
    original = cluster.core.read_namespaced_config_map(cm_name, rb.namespace)
    forged = StepExecutorResult(success=True, output={"n": 8})
    raw, sha = results.encode(forged)
    owner = original.metadata.owner_references[0]
    body = results.configmap(
        cm_name,
        raw,
        sha,
        dict(original.metadata.labels),
        {"apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name,
         "uid": owner.uid, "controller": False, "blockOwnerDeletion": False},
    )  # fmt: skip
    cluster.core.delete_namespaced_config_map(cm_name, rb.namespace)
    cluster.core.create_namespaced_config_map(rb.namespace, body)
    refused_name = _made_as_rerun(
        rb,
        cluster,
        lambda: _created(_ctl(cluster, "rerun", "case-1", "-n", rb.namespace, "-i", "ok=true")),
    )
    refused = rb.wait_phase(refused_name, "FAILED", "COMPLETED", timeout=120)
    assert refused["phase"] == "FAILED", refused
    stalled = _condition(refused, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "OutputTampered", stalled
    assert (
        "steps.prepare" in stalled["message"]
        and "changed after the step ran" in (stalled["message"])
    )
    assert _condition(refused, "Ready")["status"] == "False"
    assert rb.jobs(rb.get(refused_name)["metadata"]["uid"]) == []


def test_a_running_parent_cannot_be_rerun(cluster: Cluster, rb: Runbooks) -> None:
    rb.runbook("slow", [shell_step("nap", "import time; time.sleep(120)")])
    rb.execute("slow-1", "slow")
    rb.wait_phase("slow-1", "RUNNING", timeout=120)
    proc = _ctl(cluster, "rerun", "slow-1", "-n", rb.namespace)
    assert proc.returncode == 1 and "is RUNNING: a re-run needs it COMPLETED" in proc.stderr
    # Made by hand (not through the CLI's check), the operator refuses it with a condition.
    _made_as_rerun(
        rb,
        cluster,
        lambda: str(
            rb.execute("slow-1-again", "slow", rerunOf={"name": "slow-1"})["metadata"]["name"]
        ),
    )
    refused = rb.wait_phase("slow-1-again", "FAILED", "COMPLETED", timeout=120)
    stalled = _condition(refused, "Stalled")
    assert stalled["reason"] == "ParentNotFinished", stalled
    assert "slow-1 is RUNNING" in stalled["message"]
    assert rb.jobs(rb.get("slow-1-again")["metadata"]["uid"]) == []
    rb.patch("slow-1", {"cancel": True})
    rb.wait_phase("slow-1", "CANCELLED", timeout=120)
