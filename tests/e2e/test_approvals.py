"""APPROVAL steps on the real cluster, with impersonated users (docs/approvals.md).

Decisions are RunbookApprovals created as each user (Impersonate-User/-Group); admission
stamps (or checks) who made them and the operator judges them. Covered: a quorum of 2 from
group `sre` with the requester excluded (the requester's and a non-member's decisions are
refused with their reason, two members' complete it, no Job for the gate); one reject fails
it; a timeout with onTimeout reject fails it within seconds of the deadline; a forged stamp is
refused at admission; the operator killed while the step waits loses no decision.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from runbook_engine.identity import Identity
from runbook_operator.kube import Kube
from runbookctl.cluster_approvals import approval_manifest

from .conftest import Cluster, apply_project_crds, wait_for
from .operator_env import OperatorProcess, Runbooks, impersonating, transform, wait_authorized

pytestmark = pytest.mark.e2e
GROUP, VERSION = "runbook-operator.dev", "v1alpha1"
REQUESTER, SAM, SUE, MALLORY = "rita", "sam", "sue", "mallory"
GROUP_OF = {REQUESTER: "sre", SAM: "sre", SUE: "sre", MALLORY: "dev"}


def gate(**config: Any) -> dict[str, Any]:
    timeout = config.pop("timeoutMs", 600_000)
    return {
        "id": "gate",
        "actionType": "APPROVAL",
        "dependsOn": ["prepare"],
        "timeoutMs": timeout,
        "config": {"approvers": {"groups": ["sre"]}, "required": 2, **config},
    }


def grant(cluster: Cluster, namespace: str) -> None:
    """Every test user may start executions and create RunbookApprovals here (as `edit` would
    let them); whether a decision counts is the operator's business, not RBAC's."""
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "deciders"},
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["runbookexecutions", "runbookapprovals", "runbooks"],
                    "verbs": ["get", "list", "watch", "create"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "deciders"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "deciders",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                for user in GROUP_OF
            ],
        },
    )
    for user in GROUP_OF:
        wait_authorized(
            cluster, namespace, user, verb="create", resource="runbookapprovals", group=GROUP
        )


def decide(cluster: Cluster, namespace: str, user: str, execution: str, decision: str) -> str:
    """A RunbookApproval created as `user` (what `runbookctl approve|deny` does)."""
    api = impersonating(cluster, user, GROUP_OF[user])
    who = Identity.from_wire(Kube(api).whoami())
    body = approval_manifest(execution, "gate", decision, f"{user} says {decision}", who)
    made = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "runbookapprovals", body
    )
    return str(made["metadata"]["name"])


def verdict(cluster: Cluster, namespace: str, name: str, timeout: float = 30) -> dict[str, Any]:
    api = client.CustomObjectsApi(cluster.api)

    def judged() -> dict[str, Any] | None:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "runbookapprovals", name)
        status = obj.get("status") or {}
        return status if status.get("verdict") else None

    return wait_for(judged, timeout, 0.3, f"verdict on {name}")  # type: ignore[no-any-return]


def ensure_crds(cluster: Cluster) -> None:
    """This checkout's CRDs once more: on a shared cluster another checkout's session may have
    replaced them with a version whose status schema prunes `awaitingApproval`."""
    apply_project_crds(cluster)


@pytest.fixture
def rb(cluster: Cluster, own_operator: tuple[OperatorProcess, str]) -> Runbooks:
    """A namespace watched by this test's own operator only (the shared e2e-op-* namespaces
    may be driven by other sessions' operators, built from other checkouts)."""
    op, ns = own_operator
    ensure_crds(cluster)
    grant(cluster, ns)
    return Runbooks(cluster, ns, op.tail)


def start(rb: Runbooks, name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    rb.runbook(name, steps)
    made = rb.as_user(REQUESTER, GROUP_OF[REQUESTER]).execute(name, name)
    # The step's status, not `awaitingApproval`: on the shared cluster another checkout may
    # replace the CRD meanwhile with one whose schema prunes that field (ensure_crds).
    rb.wait(
        name,
        lambda s: (
            any(x["stepId"] == "gate" and x["status"] == "RUNNING" for x in s.get("steps", []))
            or s.get("phase") in ("FAILED", "COMPLETED")
        ),
        120,
        "waiting at the gate",
    )
    gate_step = rb.steps(name)["gate"]
    assert gate_step["status"] == "RUNNING", rb.status(name)
    return made


def test_quorum_of_sre_with_the_requester_excluded(cluster: Cluster, rb: Runbooks) -> None:
    made = start(rb, "quorum", [transform("prepare"), gate(), transform("act", "gate")])
    ns = rb.namespace
    reasons = [reason for reason, _ in rb.events("quorum")]
    assert "AwaitingApproval" in reasons

    own = verdict(cluster, ns, decide(cluster, ns, REQUESTER, "quorum", "approve"))
    assert (own["verdict"], own["code"]) == ("Refused", "RequesterExcluded"), own
    outsider = verdict(cluster, ns, decide(cluster, ns, MALLORY, "quorum", "approve"))
    assert (outsider["verdict"], outsider["code"]) == ("Refused", "NotEligible"), outsider
    first = verdict(cluster, ns, decide(cluster, ns, SAM, "quorum", "approve"))
    assert first["verdict"] == "Counted" and first["user"] == SAM
    assert rb.status("quorum").get("awaitingApproval") == "gate"
    again = verdict(cluster, ns, decide(cluster, ns, SAM, "quorum", "approve"))
    assert again["code"] == "Duplicate"
    second = verdict(cluster, ns, decide(cluster, ns, SUE, "quorum", "approve"))
    assert second["verdict"] == "Counted"

    status = rb.wait_phase("quorum", "COMPLETED", "FAILED", timeout=180)
    assert status["phase"] == "COMPLETED", status
    assert "awaitingApproval" not in status
    steps = {s["stepId"]: s for s in status["steps"]}
    assert steps["gate"]["status"] == "SUCCEEDED"
    jobs = rb.jobs(made["metadata"]["uid"])
    stepped = {(j.metadata.labels or {}).get("runbook-operator.dev/step") for j in jobs}
    assert stepped == {"prepare", "act"}, stepped  # no Job for the gate
    output = rb.output("quorum", "gate")
    assert [d["user"] for d in output["decisions"]] == [SAM, SUE]


def test_one_reject_fails_the_step(cluster: Cluster, rb: Runbooks) -> None:
    start(rb, "rejected", [transform("prepare"), gate(), transform("act", "gate")])
    ns = rb.namespace
    assert verdict(cluster, ns, decide(cluster, ns, SAM, "rejected", "approve"))["verdict"] == (
        "Counted"
    )
    assert verdict(cluster, ns, decide(cluster, ns, SUE, "rejected", "reject"))["verdict"] == (
        "Counted"
    )
    status = rb.wait_phase("rejected", "COMPLETED", "FAILED", timeout=60)
    steps = {s["stepId"]: s for s in status["steps"]}
    assert status["phase"] == "FAILED"
    assert steps["gate"]["status"] == "FAILED" and "rejected by sue" in steps["gate"]["message"]
    assert steps["act"]["status"] == "SKIPPED"
    late = verdict(cluster, ns, decide(cluster, ns, SAM, "rejected", "approve"))
    assert late["code"] == "StepNotWaiting", late


def test_timeout_rejects_within_seconds_of_the_deadline(cluster: Cluster, rb: Runbooks) -> None:
    start(rb, "timeout", [transform("prepare"), gate(timeoutMs=8000, onTimeout="reject")])
    status = rb.wait_phase("timeout", "COMPLETED", "FAILED", timeout=60)
    step = {s["stepId"]: s for s in status["steps"]}["gate"]
    assert step["status"] == "FAILED" and "onTimeout: reject" in step["message"]
    from runbook_engine.timeutil import parse_time

    waited = (parse_time(step["finishedAt"]) - parse_time(step["startedAt"])).total_seconds()
    assert 8 <= waited <= 11, waited


def test_a_forged_stamp_is_refused_at_admission(cluster: Cluster, rb: Runbooks) -> None:
    api = impersonating(cluster, MALLORY, GROUP_OF[MALLORY])
    forged = Identity(SAM, ("sre", "system:authenticated"))
    body = approval_manifest("any", "gate", "approve", "", forged)
    try:
        made = client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, rb.namespace, "runbookapprovals", body
        )
    except ApiException as exc:  # no stamping policy: the identity policy refuses the forgery
        assert exc.status == 403 and "created-by" in str(exc.body), exc.body
        return
    # With the stamping policy the apiserver overwrote the stamp: it names mallory, not sam.
    assert made["metadata"]["annotations"][f"{GROUP}/created-by"] == MALLORY


def test_the_operator_killed_while_waiting_loses_no_decision(
    cluster: Cluster, rb: Runbooks, own_operator: tuple[OperatorProcess, str]
) -> None:
    op, ns = own_operator
    start(rb, "survives", [transform("prepare"), gate(), transform("act", "gate")])
    first = verdict(cluster, ns, decide(cluster, ns, SAM, "survives", "approve"))
    assert first["verdict"] == "Counted"
    op.kill()
    while_down = decide(cluster, ns, SUE, "survives", "approve")
    time.sleep(1)
    op.start()
    assert verdict(cluster, ns, while_down, timeout=60)["verdict"] == "Counted"
    status = rb.wait_phase("survives", "COMPLETED", "FAILED", timeout=180)
    assert status["phase"] == "COMPLETED", status
    output = rb.output("survives", "gate")
    assert [d["user"] for d in output["decisions"]] == [SAM, SUE]


def test_no_approvers_listed_needs_the_verb_approve(cluster: Cluster, rb: Runbooks) -> None:
    """The operator asks the apiserver (LocalSubjectAccessReview) whether the decider holds
    the custom verb `approve` on this runbookexecution: creating RunbookApprovals (edit) is
    not enough; the approver role's rule is."""
    ns = rb.namespace
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "approver"},
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["runbookexecutions"],
                    "verbs": ["approve"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "approver"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "approver",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": SUE}],
        },
    )
    wait_authorized(cluster, ns, SUE, verb="approve", resource="runbookexecutions", group=GROUP)
    open_gate = {**gate(), "config": {"instructions": "anyone with the verb"}}
    start(rb, "open", [transform("prepare"), open_gate])
    refused = verdict(cluster, ns, decide(cluster, ns, SAM, "open", "approve"))
    assert (refused["verdict"], refused["code"]) == ("Refused", "NotEligible"), refused
    assert "verb `approve`" in refused["reason"]
    assert verdict(cluster, ns, decide(cluster, ns, SUE, "open", "approve"))["verdict"] == "Counted"
    assert rb.wait_phase("open", "COMPLETED", "FAILED", timeout=60)["phase"] == "COMPLETED"


def test_the_cli_inbox_and_approve(cluster: Cluster, rb: Runbooks) -> None:
    """`runbookctl approvals` lists the waiting gate for someone allowed to decide it (here the
    cluster admin, who holds every verb), and `runbookctl approve` decides it as them."""
    import json
    import subprocess
    import sys

    open_gate = {**gate(), "config": {"instructions": "ship it?"}}
    start(rb, "cli", [transform("prepare"), open_gate])
    ctl = [sys.executable, "-m", "runbookctl.cli"]
    where = ["-n", rb.namespace, "--kubeconfig", str(cluster.kubeconfig)]
    inbox = subprocess.run(
        [*ctl, "approvals", *where, "-o", "json"], capture_output=True, text=True, check=False
    )
    assert inbox.returncode == 0, inbox.stderr
    rows = json.loads(inbox.stdout)
    assert [(r["execution"], r["step"], r["instructions"]) for r in rows] == [
        ("cli", "gate", "ship it?")
    ]
    approved = subprocess.run(
        [*ctl, "approve", "cli", "gate", "--comment", "ok", *where],
        capture_output=True,
        text=True,
        check=False,
    )
    assert approved.returncode == 0, approved.stderr
    assert "counted" in approved.stdout
    assert rb.wait_phase("cli", "COMPLETED", "FAILED", timeout=60)["phase"] == "COMPLETED"
    again = subprocess.run([*ctl, "approvals", *where], capture_output=True, text=True, check=False)
    assert "Nothing waits" in again.stdout
