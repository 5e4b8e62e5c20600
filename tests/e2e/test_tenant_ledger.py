"""A ledger an auditor can trust in a shared cluster (issue 16), tried as tenants would.

Tenants are impersonated users bound to the built-in `admin` role in their namespace, plus
rights on the runbook kinds (never their status). The cluster runs the chart's admission
policies (installed by the `project_crds` fixture from templates/admission-policies.yaml).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from runbook_engine.audit import entry_hash
from runbook_engine.canonical import canonical_json

from .conftest import REPO_ROOT, Cluster, wait_for
from .operator_env import (
    GROUP,
    OperatorProcess,
    Runbooks,
    impersonating,
    shell_step,
    wait_authorized,
)

pytestmark = pytest.mark.e2e

TENANTS = ("alice", "bob", "carol", "mallory")
TENANT_GROUP = "tenant-a"
LEDGER_SELECTOR = "app.kubernetes.io/component=ledger"


def _grant_tenants(cluster: Cluster, namespace: str) -> None:
    """`admin` in the namespace for every tenant, and the runbook kinds (not their status)."""
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    subjects = [
        client.RbacV1Subject(kind="User", name=u, api_group="rbac.authorization.k8s.io")
        for u in TENANTS
    ]
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="runbooks"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[GROUP],
                    resources=["runbooks", "runbookexecutions"],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                )
            ],
        ),
    )
    for role_kind, role in (("ClusterRole", "admin"), ("Role", "runbooks")):
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name=f"tenants-{role}"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind=role_kind, name=role
                ),
                subjects=subjects,
            ),
        )
    for user in TENANTS:
        wait_authorized(
            cluster,
            namespace,
            user,
            verb="create",
            group=GROUP,
            resource="runbooks",
            groups=(TENANT_GROUP,),
        )


@pytest.fixture
def tenants(rb: Runbooks, cluster: Cluster) -> dict[str, Runbooks]:
    _grant_tenants(cluster, rb.namespace)
    return {u: rb.as_user(u, TENANT_GROUP) for u in TENANTS}


@pytest.fixture
def own_tenants(
    cluster: Cluster, own_operator: tuple[OperatorProcess, str]
) -> Iterator[tuple[OperatorProcess, Runbooks, dict[str, Runbooks]]]:
    op, ns = own_operator
    _grant_tenants(cluster, ns)
    admin = Runbooks(cluster, ns, op.tail)
    yield op, admin, {u: admin.as_user(u, TENANT_GROUP) for u in TENANTS}


def _segments(cluster: Cluster, namespace: str, uid: str) -> list[client.V1ConfigMap]:
    items = cluster.core.list_namespaced_config_map(
        namespace, label_selector=f"{LEDGER_SELECTOR},{GROUP}/execution-uid={uid}"
    ).items
    return sorted(items, key=lambda cm: cm.metadata.name)


def _entries(cluster: Cluster, namespace: str, uid: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for cm in _segments(cluster, namespace, uid):
        text = (cm.data or {}).get("entries.jsonl", "")
        lines.extend(json.loads(line) for line in text.splitlines() if line.strip())
    return lines


def _ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env_args = ["--kubeconfig", cluster.kubeconfig] if cluster.kubeconfig else []
    return subprocess.run(
        [sys.executable, "-m", "runbookctl.cli", *args, *env_args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def _refused(call: Any) -> ApiException:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status in (403, 422), caught.value
    return caught.value


SLOW = "import time; time.sleep(600)"
RESULT = (
    "import json,time; time.sleep({sleep}); "
    "open('/dev/termination-log','w').write(json.dumps({{'success': True, 'output': {{}}}}))"
)
QUICK = RESULT.format(sleep=2)


def test_every_action_names_the_authenticated_user_not_the_claim(
    tenants: dict[str, Runbooks], rb: Runbooks, cluster: Cluster
) -> None:
    """alice creates (claiming to be ceo@corp) and pauses, bob resumes, carol cancels."""
    alice, bob, carol = tenants["alice"], tenants["bob"], tenants["carol"]
    alice.runbook("slow", [shell_step("first", QUICK), shell_step("long", SLOW, "first")])
    created = alice.execute("who-1", "slow", startedBy="ceo@corp", tenantId="tenant-a")
    uid = created["metadata"]["uid"]
    annotations = created["metadata"]["annotations"]
    assert annotations[f"{GROUP}/created-by"] == "alice"  # stamped by admission
    rb.wait_phase("who-1", "RUNNING", timeout=120)
    alice.patch("who-1", {"paused": True})
    rb.wait_phase("who-1", "PAUSED", timeout=120)
    bob.patch("who-1", {"paused": False})
    wait_for(lambda: rb.status("who-1").get("phase") == "RUNNING", 120, 1, "resumed")
    wait_for(
        lambda: rb.steps("who-1")["first"]["status"] == "SUCCEEDED", 180, 1, "first to succeed"
    )
    carol.patch("who-1", {"cancel": True})
    rb.wait_phase("who-1", "CANCELLED", timeout=120)

    by_type = {e["eventType"]: e for e in _entries(cluster, rb.namespace, uid)}
    started = by_type["EXECUTION_STARTED"]
    assert started["actorId"] == "alice"
    assert started["details"]["startedBy"] == "ceo@corp"  # recorded as the claim it is
    assert started["details"]["authenticatedUser"]["username"] == "alice"
    assert TENANT_GROUP in started["details"]["authenticatedUser"]["groups"]
    for event, user in (
        ("EXECUTION_PAUSED", "alice"),
        ("EXECUTION_RESUMED", "bob"),
        ("EXECUTION_CANCELLED", "carol"),
    ):
        assert by_type[event]["actorId"] == user, by_type[event]
        assert by_type[event]["details"]["authenticatedUser"]["username"] == user

    # The step that ran records what the kubelet ran: image, digest and node.
    ended = [
        e
        for e in _entries(cluster, rb.namespace, uid)
        if e["eventType"] == "STEP_SUCCEEDED" and e["stepId"] == "first"
    ]
    ran_on = ended[0]["details"]["ranOn"]
    assert ran_on["image"] and ran_on["node"]
    assert "sha256:" in ran_on["imageID"], ran_on


def test_a_tenant_cannot_forge_or_rewrite_who_acted(
    tenants: dict[str, Runbooks], rb: Runbooks
) -> None:
    mallory = tenants["mallory"]
    mallory.runbook("slow", [shell_step("long", SLOW)])
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "RunbookExecution",
        "metadata": {"name": "forged-1", "annotations": {f"{GROUP}/created-by": "ceo@corp"}},
        "spec": {"runbookRef": {"name": "slow"}},
    }
    made = mallory.custom.create_namespaced_custom_object(
        GROUP, "v1alpha1", rb.namespace, "runbookexecutions", body
    )
    assert made["metadata"]["annotations"][f"{GROUP}/created-by"] == "mallory"
    rewrite = {"metadata": {"annotations": {f"{GROUP}/created-by": "ceo@corp"}}}
    refused = _refused(
        lambda: mallory.custom.patch_namespaced_custom_object(
            GROUP, "v1alpha1", rb.namespace, "runbookexecutions", "forged-1", rewrite
        )
    )
    assert "written by admission only" in str(refused.body) or "cannot be changed" in str(
        refused.body
    )
    # Deleting it while it runs would cancel it unrecorded: refused until someone cancels.
    rb.wait_phase("forged-1", "RUNNING", timeout=120)
    refused = _refused(lambda: mallory.delete("forged-1"))
    assert "cancel it first" in str(refused.body)
    mallory.patch("forged-1", {"cancel": True})
    mallory.delete("forged-1")


def test_a_tenant_can_neither_write_nor_pre_create_ledger_segments(
    tenants: dict[str, Runbooks], rb: Runbooks, cluster: Cluster
) -> None:
    alice = tenants["alice"]
    core = client.CoreV1Api(impersonating(cluster, "mallory", TENANT_GROUP))
    ns = rb.namespace
    # Mid-run: the open segment can be neither rewritten nor deleted.
    alice.runbook("slow", [shell_step("long", SLOW)])
    running = alice.execute("led-0", "slow")["metadata"]["uid"]
    rb.wait_phase("led-0", "RUNNING", timeout=120)
    open_segment = _segments(cluster, ns, running)[0]
    emptied = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=open_segment.metadata.name,
            resource_version=open_segment.metadata.resource_version,
        ),
        data={**(open_segment.data or {}), "entries.jsonl": ""},
    )
    _refused(lambda: core.replace_namespaced_config_map(open_segment.metadata.name, ns, emptied))
    _refused(lambda: core.delete_namespaced_config_map(open_segment.metadata.name, ns))
    alice.patch("led-0", {"cancel": True})

    # After the run: every segment, and the names the operator will need.
    alice.runbook("quick", [shell_step("one", QUICK)])
    uid = alice.execute("led-1", "quick")["metadata"]["uid"]
    rb.wait_phase("led-1", "COMPLETED", "FAILED", timeout=180)
    segment = _segments(cluster, rb.namespace, uid)[0]
    name = segment.metadata.name

    edited = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, resource_version=segment.metadata.resource_version),
        data={**(segment.data or {}), "entries.jsonl": ""},
    )
    body = _refused(lambda: core.replace_namespaced_config_map(name, ns, edited)).body
    assert "only the operator writes it" in str(body)
    _refused(lambda: core.patch_namespaced_config_map(name, ns, {"data": {"x": "y"}}))
    _refused(lambda: core.delete_namespaced_config_map(name, ns))
    # The next segment's name, and a future execution's pinned definition, cannot be taken.
    for reserved in (name[:-4] + "0001", f"later-{uuid.uuid4().hex[:8]}-definition"):
        cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=reserved), data={"a": "b"})
        _refused(lambda cm=cm: core.create_namespaced_config_map(ns, cm))
    labelled = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name="looks-like-a-ledger",
            labels={
                "app.kubernetes.io/managed-by": "runbook-operator",
                "app.kubernetes.io/component": "ledger",
            },
        )
    )
    _refused(lambda: core.create_namespaced_config_map(ns, labelled))
    # The tenant's own ConfigMaps are its own business.
    mine = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="my-config"), data={"a": "b"})
    core.create_namespaced_config_map(ns, mine)
    assert _ctl(cluster, "verify", "led-1", "-n", ns).returncode == 0


def _rewrite_first_entry(cluster: Cluster, namespace: str, uid: str) -> str:
    """As someone who got write access anyway (a cluster admin): edit entry 0 and recompute
    every hash, so the chain is consistent with itself. Returns the forged head."""
    segments = _segments(cluster, namespace, uid)
    assert len(segments) == 1, "the test expects one segment"
    cm = segments[0]
    entries = [json.loads(x) for x in cm.data["entries.jsonl"].splitlines() if x.strip()]
    entries[0]["actorId"] = "ceo@corp"
    previous = entries[0]["previousHash"]
    for entry in entries:
        entry["previousHash"] = previous
        entry["hash"] = entry_hash(entry)
        previous = entry["hash"]
    cm.data["entries.jsonl"] = "".join(canonical_json(e).decode() + "\n" for e in entries)
    cluster.core.replace_namespaced_config_map(cm.metadata.name, namespace, cm)
    return previous


def test_a_rewritten_ledger_stops_the_execution_and_is_never_signed(
    own_tenants: tuple[OperatorProcess, Runbooks, dict[str, Runbooks]], cluster: Cluster
) -> None:
    """Mid-run, the ledger is rewritten with recomputed hashes. The operator notices when it
    next writes, and after a restart too: it stops the execution, says why, and signs nothing."""
    op, admin, tenant = own_tenants
    alice = tenant["alice"]
    alice.runbook(
        "two", [shell_step("first", QUICK), shell_step("second", RESULT.format(sleep=8), "first")]
    )
    uid = alice.execute("tamper-1", "two")["metadata"]["uid"]
    wait_for(
        lambda: any(
            s["stepId"] == "second" and s["status"] == "RUNNING"
            for s in admin.steps("tamper-1").values()
        ),
        180,
        1,
        "the second step to run",
    )
    op.kill()  # killed between its last write and the next reload
    forged_head = _rewrite_first_entry(cluster, admin.namespace, uid)
    op.start()

    def tampered() -> dict[str, Any] | None:
        status = admin.status("tamper-1")
        ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready") or {}
        return status if ready.get("reason") == "LedgerTampered" else None

    status = wait_for(tampered, 120, 1, "the LedgerTampered condition")
    assert status["phase"] == "RUNNING"  # stopped where it was, not completed
    checkpoint = (status.get("audit") or {}).get("checkpoint") or {}
    assert checkpoint.get("head") != forged_head
    for cm in _segments(cluster, admin.namespace, uid):
        signed = json.loads((cm.data or {}).get("checkpoint.json") or "{}")
        assert signed.get("head") != forged_head
    reasons = [r for r, _ in admin.events("tamper-1")]
    assert "LedgerTampered" in reasons
    proc = _ctl(cluster, "verify", "tamper-1", "-n", admin.namespace)
    assert proc.returncode != 0, proc.stdout
