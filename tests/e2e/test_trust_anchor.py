"""verify's trust anchor on a real cluster (issue 16): a tenant with `admin` in its namespace
rewrites its ledger, signs a checkpoint with its own key and publishes that key in its own
namespace, labelled like the operator's and named by the forged checkpoint's keyRef. verify
must refuse it and say the key is not trusted; the legitimate ledger verifies with no flags.

No operator runs: the test plays the operator with LedgerStore + Signer (as test_ledger.py does)
and publishes the anchor itself — its own annotation on the RunbookExecution CRD, keyed by a
namespace it creates and vouching only for the tenant's namespace, so tests running at the same
time (and their operators' anchors) are neither used nor disturbed. It removes it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from runbook_engine.audit import AuditChain, AuditEvent
from runbook_engine.enums import LogEventType
from runbook_engine.timeutil import parse_time
from runbook_operator.kube import CONFIGMAPS, CRDS, Kube, KubeError
from runbook_operator.ledger.anchor import (
    DEFAULT_KEY_CONFIGMAP,
    EXECUTIONS_CRD,
    KeyAnchor,
    anchors_of,
    annotation_key,
    withdraw_patch,
)
from runbook_operator.ledger.checkpoint import KeyRef, Signer
from runbook_operator.ledger.segments import selector
from runbook_operator.ledger.store import (
    LedgerStore,
    publish_ledger_anchor,
    publish_public_key,
    withdraw_ledger_anchor,
)
from runbook_operator.names import ExecutionRef
from tests.unit.ledger.helpers import chain_of

from .conftest import Cluster, wait_for

# project_crds (conftest.py): the CRD the anchor lives on.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("project_crds")]
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def kube(cluster: Cluster) -> Kube:
    return Kube.connect(cluster.kubeconfig)


@pytest.fixture
def operator_namespace(cluster: Cluster, kube: Kube) -> Iterator[str]:
    """Stands for the operator's namespace; its anchor is withdrawn afterwards."""
    name = f"e2e-ta-ops-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    with contextlib.suppress(KubeError):
        withdraw_ledger_anchor(kube, name)
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(name, propagation_policy="Background")


def _tenant(cluster: Cluster, namespace: str) -> Kube:
    """A user with the built-in `admin` role in `namespace` only, through impersonation."""
    user = f"tenant-{uuid.uuid4().hex[:6]}"
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"{user}-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    api.set_default_header("Impersonate-User", user)
    tenant = Kube(api)

    def bound() -> bool:  # the authorizer learns of a new RoleBinding a moment later
        try:
            tenant.list(CONFIGMAPS, namespace)
            return True
        except KubeError:
            return False

    wait_for(bound, 30, 0.2, f"{user}'s admin RoleBinding in {namespace}")
    return tenant


def _ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="300")
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


def _forge(kube: Kube, tenant: Kube, lid: ExecutionRef) -> Signer:
    """The forgery: the tenant publishes its own key in its namespace (same name and labels as
    the operator's), and the ledger is replaced by a rewritten one signed with that key, whose
    checkpoint's keyRef names the tenant's ConfigMap.

    The tenant publishes the key itself. The segments are written with the admin's credentials:
    whether a tenant can still write them depends on the ledger's layout and admission policy
    (the ledger-writers tests), while what is tested here is that no key found in a tenant's
    reach is ever trusted, however the forged checkpoint got there."""
    forger = Signer.generate(KeyRef(lid.namespace, DEFAULT_KEY_CONFIGMAP))
    publish_public_key(tenant, lid.namespace, DEFAULT_KEY_CONFIGMAP, forger)
    for cm in kube.list(CONFIGMAPS, lid.namespace, selector(uid=lid.uid)):
        kube.delete(CONFIGMAPS, lid.namespace, cm["metadata"]["name"])
    LedgerStore(kube, lid, max_bytes=3_000).write_checkpoint(_rewritten(lid), forger, NOW)
    return forger


def _rewritten(lid: ExecutionRef) -> AuditChain:
    """The same 12 entries as `chain_of`, but the first one now names another actor; every hash
    recomputed, so the chain itself is consistent."""
    original = chain_of(12, pad=80, lid=lid)
    chain = AuditChain(lid.execution_id)
    for i, entry in enumerate(original.entries):
        event = AuditEvent(
            key=entry["logId"].removeprefix(f"{lid.execution_id}/"),
            event_type=LogEventType(entry["eventType"]),
            step_id=entry["stepId"],
            details=entry["details"],
        )
        actor = "ceo@corp" if i == 0 else entry["actorId"]
        chain.append(event, actor_id=actor, timestamp=parse_time(entry["timestamp"]))
    assert chain.entries[0]["actorId"] == "ceo@corp" and chain.head != original.head
    return chain


def test_a_checkpoint_signed_with_a_tenant_key_is_not_trusted(
    cluster: Cluster, kube: Kube, namespace: str, operator_namespace: str, tmp_path: Path
) -> None:
    # The operator: its key in its namespace, the anchor on the CRD vouching for `namespace`.
    operator = Signer.generate()
    publish_public_key(kube, operator_namespace, DEFAULT_KEY_CONFIGMAP, operator)
    assert publish_ledger_anchor(kube, operator_namespace, DEFAULT_KEY_CONFIGMAP, [namespace])
    anchors, _ = anchors_of(kube.get(CRDS, None, EXECUTIONS_CRD))
    assert any(a.namespace == operator_namespace and a.covers(namespace) for a in anchors)
    lid = ExecutionRef(namespace, f"run-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))
    chain = chain_of(12, pad=80, lid=lid)
    LedgerStore(kube, lid, max_bytes=3_000).write_checkpoint(chain, operator, NOW)

    legit = _ctl(cluster, "verify", lid.name, "-n", namespace, "--require-checkpoint")
    assert legit.returncode == 0, legit.stdout + legit.stderr
    assert legit.stdout.startswith(f"OK {lid.execution_id}: 12 entries"), legit.stdout
    assert "not trusted" not in legit.stdout

    # The tenant, with `admin` in its namespace only, can change neither the anchor on the CRD
    # nor the anchored key ...
    tenant = _tenant(cluster, namespace)
    hijack = withdraw_patch([operator_namespace])
    hijack["metadata"]["annotations"][annotation_key(namespace)] = '{"configMap":"x"}'
    for attempt in (
        lambda: tenant.patch(CRDS, None, EXECUTIONS_CRD, hijack),
        lambda: tenant.patch(
            CONFIGMAPS, operator_namespace, DEFAULT_KEY_CONFIGMAP, {"data": {"x": "y"}}
        ),
    ):
        with pytest.raises(KubeError) as denied:
            attempt()
        assert denied.value.status == 403, denied.value
    # ... so it publishes its own key in its namespace and signs a rewritten ledger with it.
    forger = _forge(kube, tenant, lid)

    forged = _ctl(cluster, "verify", lid.name, "-n", namespace)
    assert forged.returncode == 1, forged.stdout + forged.stderr
    assert forged.stdout.startswith("TAMPERED"), forged.stdout
    assert (
        f"signed by key {forger.key_id[:16]}…, which is not a trusted public key" in forged.stdout
    )
    assert (
        f"keyRef {namespace}/{DEFAULT_KEY_CONFIGMAP} in a checkpoint is not a trust anchor: "
        "not trusted" in forged.stdout
    ), forged.stdout
    assert (
        f"key {forger.key_id[:16]}… is published in ConfigMap {namespace}/{DEFAULT_KEY_CONFIGMAP}"
        in forged.stdout
    ), forged.stdout

    # Naming the operator's namespace, or pinning its key, fails the forgery just the same.
    pinned = tmp_path / "operator.pub.pem"
    pinned.write_text(operator.public_pem)
    for extra in (("--key-namespace", operator_namespace), ("--public-key", str(pinned))):
        proc = _ctl(cluster, "verify", lid.name, "-n", namespace, *extra)
        assert proc.returncode == 1 and "not a trusted public key" in proc.stdout, (extra, proc)
    # Only an auditor who names the tenant's own namespace as the anchor is fooled: their choice.
    own = _ctl(cluster, "verify", lid.name, "-n", namespace, "--key-namespace", namespace)
    assert own.returncode == 0, own.stdout + own.stderr


def test_an_anchor_for_other_namespaces_is_not_used_and_verify_says_how_to_pass_one(
    cluster: Cluster, kube: Kube, namespace: str, operator_namespace: str
) -> None:
    """The anchor vouches only for the namespaces it names; without one for this namespace
    (and with no other anchor covering it), verify fails and says which flags to pass."""
    operator = Signer.generate()
    publish_public_key(kube, operator_namespace, DEFAULT_KEY_CONFIGMAP, operator)
    assert publish_ledger_anchor(
        kube, operator_namespace, DEFAULT_KEY_CONFIGMAP, [f"{namespace}-other"]
    )
    crd = kube.get(CRDS, None, EXECUTIONS_CRD)
    assert annotation_key(operator_namespace) in crd["metadata"]["annotations"]
    lid = ExecutionRef(namespace, "run", str(uuid.uuid4()))
    LedgerStore(kube, lid).write_checkpoint(chain_of(3, lid=lid), operator, NOW)

    def covering() -> list[KeyAnchor]:
        return [
            a for a in anchors_of(kube.get(CRDS, None, EXECUTIONS_CRD))[0] if a.covers(namespace)
        ]

    others_before = covering()
    proc = _ctl(cluster, "verify", "run", "-n", namespace)
    others_after = covering()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    no_anchor = "no trust anchor" in proc.stderr and "--key-namespace" in proc.stderr
    if others_before or others_after:
        # An operator of a test running meanwhile vouches for every namespace: its key is not
        # ours (or its ConfigMap is already gone), so the ledger still fails.
        assert no_anchor or "not a trusted public key" in proc.stdout, proc
    else:
        assert no_anchor, proc.stderr
    ok = _ctl(cluster, "verify", "run", "-n", namespace, "--key-namespace", operator_namespace)
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
