"""The Helm chart charts/runbook-operator: lint, render both RBAC modes, server-side dry-run,
least-privilege RBAC checked by the real authorizer, the signing key kept across upgrades, and
an install whose Deployment becomes Available."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import IMAGE, IMAGE_PULL_POLICY, REPO_ROOT, Cluster, wait_for
from .test_helm import _helm_binary

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "runbook-operator"
OPERATOR_MAIN = REPO_ROOT / "operator" / "runbook_operator" / "__main__.py"
GROUP = "runbook-operator.dev"
ANCHOR_CRD = f"customresourcedefinitions.apiextensions.k8s.io/runbookexecutions.{GROUP}"
REPOSITORY, _, TAG = IMAGE.rpartition(":")
IMAGE_VALUES = [
    f"image.repository={REPOSITORY}",
    f"image.tag={TAG}",
    f"image.pullPolicy={IMAGE_PULL_POLICY}",
]
IDLE_VALUES = ["image.repository=e2e-chart-idle", "image.pullPolicy=Never"]
"""For tests of what the chart creates: the pod never starts, so an operator installed
cluster-wide by a test never touches the objects of other tests running at the same time."""


@pytest.fixture(scope="session")
def helm() -> str:
    path = _helm_binary()
    if not path or not Path(path).exists():
        pytest.skip("no helm binary (set HELM, or build it: hack/cluster/build-tools.sh helm)")
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    proc = subprocess.run(
        [str(REPO_ROOT / "hack" / "cluster" / "bin-path.sh"), "kubectl"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    path = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout else None
    path = path or shutil.which("kubectl")
    if not path:
        pytest.skip("no kubectl binary (set KUBECTL, or build it: hack/cluster/build-tools.sh)")
    return path


def run(
    *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, check=False, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:4])}... exit {proc.returncode}:\n{proc.stderr}")
    return proc


def sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def render(helm: str, namespace: str, *values: str, crds: bool = False) -> list[dict[str, Any]]:
    args = [helm, "template", "rel", str(CHART), "--namespace", namespace, *sets(list(values))]
    out = run(*args, *(["--include-crds"] if crds else [])).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return sorted((d["kind"], d["metadata"].get("namespace")) for d in docs)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# --- lint and template (no cluster needed)


@pytest.mark.parametrize("values", [[], ["watchNamespaces={team-a,team-b}"]])
def test_helm_lint(helm: str, values: list[str]) -> None:
    proc = run(helm, "lint", "--strict", str(CHART), *sets(values))
    assert "0 chart(s) failed" in proc.stdout


def test_template_cluster_wide(helm: str) -> None:
    docs = render(helm, "ops")
    assert kinds(docs) == [
        # operator, anchor reader, aggregated admin/edit/view, approver (+ its base), receiver
        *[("ClusterRole", None)] * 8,
        *[("ClusterRoleBinding", None)] * 3,  # operator, anchor reader, receiver
        ("Deployment", "ops"),  # the operator
        ("Deployment", "ops"),  # the Alertmanager receiver (docs/triggers.md)
        ("Role", "ops"),  # the operator's leadership Lease
        ("Role", "ops"),  # verifiers read the public key
        ("RoleBinding", "ops"),
        ("RoleBinding", "ops"),
        ("Secret", "ops"),
        ("Service", "ops"),  # metrics
        ("Service", "ops"),  # the receiver
        ("ServiceAccount", "ops"),
        ("ServiceAccount", "ops"),  # the receiver's
        *[("ValidatingAdmissionPolicy", None)] * 4,  # execution, trigger, approval identity; ledger
        *[("ValidatingAdmissionPolicyBinding", None)] * 4,
    ]
    deploy = one(docs, "Deployment", "rel-runbook-operator")
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "runbook-operator:dev"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["python", "-m", "runbook_operator"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    env = env_of(deploy)
    assert env["RUNBOOK_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RUNBOOK_NAMESPACES"] == ""
    assert env["RUNBOOK_MANAGE_EXECUTOR_RBAC"] == "true"
    assert env["RUNBOOK_EXECUTOR_IMAGE"] == "runbook-operator:dev"
    assert env["RUNBOOK_SIGNING_KEY_FILE"] == "/var/run/runbook-operator/signing/ed25519.pem"
    assert env["RUNBOOK_PUBLIC_KEY_CONFIGMAP"] == "runbook-operator-ledger-key"
    assert (env["RUNBOOK_METRICS_PORT"], env["RUNBOOK_HEALTH_PORT"]) == ("8080", "8081")
    assert env["RUNBOOK_RECONCILE_WORKERS"] == "32"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["signing-key"] == "/var/run/runbook-operator/signing"
    # Cluster-wide: kopf watches CRDs; the operator makes the executor RBAC on first use.
    operator_role = one(docs, "ClusterRole", "rel-runbook-operator")
    rules = rules_of(operator_role)
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "watch") in rules
    assert _anchor_rule(operator_role) == {"get", "patch"}
    assert ("rbac.authorization.k8s.io", "roles", "create") in rules
    assert ("", "configmaps", "create") in rules  # held, so the executor Role is no escalation
    assert not {r for r in rules if r[1] in ("secrets", "namespaces") or r[2] in ("*", "escalate")}
    # The generated signing key is an Ed25519 key in PKCS#8 PEM, what the operator loads.
    secret = one(docs, "Secret")
    pem = base64.b64decode(secret["data"]["ed25519.pem"])
    assert isinstance(serialization.load_pem_private_key(pem, None), Ed25519PrivateKey)
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def _anchor_rule(role: dict[str, Any]) -> set[str]:
    """The verbs granted on the RunbookExecution CRD object (the ledger's trust anchor)."""
    return {
        verb
        for rule in role["rules"]
        if rule.get("resourceNames") == [f"runbookexecutions.{GROUP}"]
        for verb in rule["verbs"]
    }


def test_template_namespaced(helm: str) -> None:
    docs = render(helm, "ops", "watchNamespaces={team-a,team-b}")
    # Cluster-scoped: the ledger's trust anchor (one CRD object, by name) and the aggregated
    # roles (rbac.aggregatedRoles).
    cluster_roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    assert set(cluster_roles) == {
        "rel-runbook-operator-ledger-anchor",
        "rel-runbook-operator-ledger-anchor-reader",
        "rel-runbook-operator-admin",
        "rel-runbook-operator-edit",
        "rel-runbook-operator-view",
        "rel-runbook-operator-approver",
        "rel-runbook-operator-approver-base",
    }
    anchor = cluster_roles["rel-runbook-operator-ledger-anchor"]
    reader = cluster_roles["rel-runbook-operator-ledger-anchor-reader"]
    assert len(anchor["rules"]) == len(reader["rules"]) == 1
    assert _anchor_rule(anchor) == {"get", "patch"}
    assert _anchor_rule(reader) == {"get"}
    bindings = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRoleBinding"}
    assert bindings["rel-runbook-operator-ledger-anchor"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-runbook-operator", "namespace": "ops"}
    ]
    assert [
        s["name"] for s in bindings["rel-runbook-operator-ledger-anchor-reader"]["subjects"]
    ] == ["system:authenticated"]
    # Without the anchor, verifiers and aggregated roles, namespaced mode grants nothing
    # cluster-scoped but the admission policies.
    strict = render(
        helm,
        "ops",
        "watchNamespaces={team-a}",
        "signing.publishAnchor=false",
        "signing.verifiers=null",
        "rbac.aggregatedRoles=false",
    )
    assert {d["kind"] for d in strict if d["kind"].startswith("Cluster")} == set()
    roles = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"
    }
    assert roles == {
        ("team-a", "rel-runbook-operator"),
        ("team-b", "rel-runbook-operator"),
        ("team-a", "runbook-executor"),
        ("team-b", "runbook-executor"),
        ("team-a", "rel-runbook-operator-triggers"),  # the receiver reads triggers and tokens
        ("team-b", "rel-runbook-operator-triggers"),
        ("ops", "rel-runbook-operator-public-key"),
        ("ops", "rel-runbook-operator-ledger-key-reader"),
        ("ops", "rel-runbook-operator-leader-election"),
    }
    executor = one(
        [d for d in docs if d["metadata"].get("namespace") == "team-a"], "Role", "runbook-executor"
    )
    assert rules_of(executor) == {("", "configmaps", "create")}
    operator = one(
        [d for d in docs if d["metadata"].get("namespace") == "team-b"],
        "Role",
        "rel-runbook-operator",
    )
    assert not {
        r for r in rules_of(operator) if r[1] in ("serviceaccounts", "roles", "rolebindings")
    }
    env = env_of(one(docs, "Deployment", "rel-runbook-operator"))
    assert env["RUNBOOK_NAMESPACES"] == "team-a,team-b"
    assert env["RUNBOOK_MANAGE_EXECUTOR_RBAC"] == "false"  # the chart made it
    sas = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    assert sas == {
        ("ops", "rel-runbook-operator"),
        ("ops", "rel-runbook-operator-triggers"),
        ("team-a", "runbook-executor"),
        ("team-b", "runbook-executor"),
    }


def test_template_options(helm: str) -> None:
    docs = render(
        helm,
        "ops",
        "signing.existingSecret=my-key",
        "signing.existingSecretKey=key.pem",
        "metrics.serviceMonitor.enabled=true",
        "executor.manageRbac=false",
        crds=True,
    )
    assert not [d for d in docs if d["kind"] == "Secret"]
    deploy = one(docs, "Deployment", "rel-runbook-operator")
    volume = next(
        v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "signing-key"
    )
    assert volume["secret"]["secretName"] == "my-key"
    assert volume["secret"]["items"] == [{"key": "key.pem", "path": "ed25519.pem"}]
    assert env_of(deploy)["RUNBOOK_MANAGE_EXECUTOR_RBAC"] == "false"
    assert ("rbac.authorization.k8s.io", "roles", "create") not in rules_of(
        one(docs, "ClusterRole", "rel-runbook-operator")
    )
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    on_disk = [yaml.safe_load(p.read_text()) for p in sorted((REPO_ROOT / "crds").glob("*.yaml"))]
    assert sorted(crds, key=lambda d: d["metadata"]["name"]) == sorted(
        on_disk, key=lambda d: d["metadata"]["name"]
    )


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("replica=2", "replica"),
        ("replicas=9", "replicas"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("metrics.port=0", "port"),
        ("operator.reconcileWorkers=0", "reconcileWorkers"),
    ],
)
def test_values_schema_rejects(helm: str, value: str, complaint: str) -> None:
    proc = run(helm, "template", "rel", str(CHART), "--set", value, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert complaint in proc.stderr


# --- against the real apiserver


@pytest.fixture
def second_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    cluster.core.delete_namespace(name, propagation_policy="Background")


def kube_args(cluster: Cluster) -> list[str]:
    return ["--kubeconfig", cluster.kubeconfig] if cluster.kubeconfig else []


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_rendered_manifests_pass_server_dry_run(
    cluster: Cluster, namespace: str, second_namespace: str, helm: str, kubectl: str, mode: str
) -> None:
    values = (
        [] if mode == "cluster-wide" else [f"watchNamespaces={{{namespace},{second_namespace}}}"]
    )
    release = f"dry-{uuid.uuid4().hex[:6]}"
    out = run(
        helm,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        *sets(values),
    ).stdout
    proc = run(kubectl, *kube_args(cluster), "apply", "--dry-run=server", "-f", "-", stdin=out)
    assert "deployment.apps/" in proc.stdout and "(server dry run)" in proc.stdout
    expected = "clusterrole." if mode == "cluster-wide" else "role.rbac.authorization.k8s.io/"
    assert expected in proc.stdout


def can_i(kubectl: str, cluster: Cluster, who: str, verb: str, what: str, ns: str | None) -> bool:
    """`what`: `resource`, `resource/name`, or `resource/status` for the subresource (kubectl
    itself would read `x/status` as the object named "status")."""
    scope = ["-n", ns] if ns else ["--all-namespaces"]
    sub: list[str] = []
    if what.endswith("/status"):
        what, sub = what.removesuffix("/status"), ["--subresource", "status"]
    proc = run(
        kubectl,
        *kube_args(cluster),
        "auth",
        "can-i",
        verb,
        what,
        *sub,
        "--as",
        who,
        *scope,
        check=False,
    )
    return proc.stdout.strip() == "yes"


@pytest.fixture
def install(cluster: Cluster, namespace: str, helm: str) -> Iterator[Any]:
    """helm install into the test's namespace (uninstalled afterwards)."""
    releases: list[str] = []

    def do(*values: str, wait: bool = False, upgrade: bool = False, release: str = "") -> str:
        release = release or f"rb-{uuid.uuid4().hex[:6]}"
        verb = ["upgrade", "--install"] if upgrade else ["install"]
        timeout = ["--wait", "--timeout", "240s"] if wait else []
        image = IMAGE_VALUES if wait else IDLE_VALUES
        run(
            helm,
            *kube_args(cluster),
            "--namespace",
            namespace,
            *verb,
            release,
            str(CHART),
            *sets([*image, *values]),
            *timeout,
        )
        if release not in releases:
            releases.append(release)
        return release

    yield do
    for release in releases:
        run(
            helm,
            *kube_args(cluster),
            "--namespace",
            namespace,
            "uninstall",
            release,
            "--wait",
            check=False,
        )


def test_namespaced_rbac_is_least_privilege(
    cluster: Cluster, namespace: str, second_namespace: str, kubectl: str, install: Any
) -> None:
    release = install(f"watchNamespaces={{{second_namespace}}}")
    operator = f"system:serviceaccount:{namespace}:{release}-runbook-operator"
    executor = f"system:serviceaccount:{second_namespace}:runbook-executor"
    watched, home = second_namespace, namespace
    allowed = [
        (operator, "create", "jobs.batch", watched),
        (operator, "delete", "jobs.batch", watched),
        (operator, "watch", "pods", watched),
        (operator, "patch", f"runbookexecutions.{GROUP}", watched),
        (operator, "patch", f"runbookexecutions.{GROUP}/status", watched),
        (operator, "patch", f"runbooks.{GROUP}/status", watched),
        # scheduled triggers start executions; historyLimit deletes finished ones
        (operator, "create", f"runbookexecutions.{GROUP}", watched),
        (operator, "delete", f"runbookexecutions.{GROUP}", watched),
        (operator, "get", f"runbookapprovals.{GROUP}", watched),
        (operator, "patch", f"runbookapprovals.{GROUP}/status", watched),
        (operator, "update", "configmaps", watched),
        (operator, "create", "events", watched),
        (operator, "create", "configmaps", home),
        (operator, "update", "configmaps/runbook-operator-ledger-key", home),
        (operator, "patch", ANCHOR_CRD, None),
        (executor, "create", "configmaps", watched),
        # Anyone authenticated may read the trust anchor and the public key (to verify).
        ("someone", "get", ANCHOR_CRD, None),
        ("someone", "get", "configmaps/runbook-operator-ledger-key", home),
    ]
    denied = [
        (operator, "create", "jobs.batch", home),  # not watched
        (operator, "get", "secrets", watched),
        (operator, "delete", "pods", watched),
        (operator, "create", "pods", watched),
        (operator, "delete", f"runbookexecutions.{GROUP}", home),  # not watched
        (operator, "create", "serviceaccounts", watched),  # the chart made the executor RBAC
        (operator, "update", "configmaps/something-else", home),
        (operator, "patch", "configmaps", watched),  # never used: updates carry resourceVersion
        (operator, "patch", "configmaps/runbook-operator-ledger-key", home),
        (operator, "get", "pods", watched),
        (operator, "update", f"runbookexecutions.{GROUP}/status", watched),
        (operator, "get", f"runbooks.{GROUP}/status", watched),
        (operator, "list", "customresourcedefinitions.apiextensions.k8s.io", None),
        (
            operator,
            "patch",
            f"customresourcedefinitions.apiextensions.k8s.io/runbooks.{GROUP}",
            None,
        ),
        (executor, "get", "configmaps", watched),
        ("someone", "patch", ANCHOR_CRD, None),
        ("someone", "get", "configmaps/something-else", home),
        (executor, "create", "pods", watched),
        (executor, "create", "configmaps", home),
    ]
    wrong = [c for c in allowed if not can_i(kubectl, cluster, *c)]
    wrong += [("NOT DENIED", *c) for c in denied if can_i(kubectl, cluster, *c)]
    assert wrong == []


def test_cluster_wide_rbac_creates_executor_rbac_without_escalation(
    cluster: Cluster, namespace: str, second_namespace: str, kubectl: str, install: Any
) -> None:
    release = install()
    operator = f"system:serviceaccount:{namespace}:{release}-runbook-operator"
    for check in [
        ("create", "jobs.batch", second_namespace),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("create", "roles.rbac.authorization.k8s.io", second_namespace),
    ]:
        assert can_i(kubectl, cluster, operator, *check), check
    for check in [
        ("get", "secrets", second_namespace),
        ("list", "namespaces", None),
        ("escalate", "roles.rbac.authorization.k8s.io", second_namespace),
        ("bind", "roles.rbac.authorization.k8s.io", second_namespace),
    ]:
        assert not can_i(kubectl, cluster, operator, *check), check

    def role(name: str, resource: str, verb: str) -> str:
        return json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": second_namespace},
                "rules": [{"apiGroups": [""], "resources": [resource], "verbs": [verb]}],
            }
        )

    as_operator = [kubectl, *kube_args(cluster), "--as", operator, "create", "-f", "-"]
    # The executor Role (create configmaps) is within what the operator holds: allowed ...
    run(*as_operator, stdin=role("runbook-executor", "configmaps", "create"))
    # ... while a Role granting more than it holds is refused by the RBAC escalation check.
    proc = run(*as_operator, stdin=role("greedy", "secrets", "get"), check=False)
    assert proc.returncode != 0 and "permissions not currently held" in proc.stderr


def test_signing_key_survives_upgrade_and_uninstall(
    cluster: Cluster, namespace: str, helm: str, install: Any
) -> None:
    release = install()
    name = f"{release}-runbook-operator-signing-key"
    first = cluster.core.read_namespaced_secret(name, namespace).data["ed25519.pem"]
    install("operator.resyncSeconds=30", upgrade=True, release=release)
    assert cluster.core.read_namespaced_secret(name, namespace).data["ed25519.pem"] == first
    run(helm, *kube_args(cluster), "--namespace", namespace, "uninstall", release, "--wait")
    # helm.sh/resource-policy: keep -- checkpoints signed before stay verifiable.
    assert cluster.core.read_namespaced_secret(name, namespace).data["ed25519.pem"] == first
    install(upgrade=True, release=release)  # a re-install adopts and keeps the same key
    assert cluster.core.read_namespaced_secret(name, namespace).data["ed25519.pem"] == first


def test_operator_installed_by_the_chart_becomes_available(
    cluster: Cluster, namespace: str, install: Any
) -> None:
    if not OPERATOR_MAIN.exists():
        pytest.skip("`python -m runbook_operator` is not on this branch yet (issue 7, lead)")
    # Namespaced to its own namespace: it must not reconcile other tests' objects.
    release = install(f"watchNamespaces={{{namespace}}}", wait=True)
    apps = client.AppsV1Api(cluster.api)
    deploy = apps.read_namespaced_deployment(f"{release}-runbook-operator", namespace)
    conditions = {c.type: c.status for c in deploy.status.conditions or []}
    assert conditions.get("Available") == "True"
    # It runs with the chart's key: the published public key is the Secret's.
    pem = base64.b64decode(
        cluster.core.read_namespaced_secret(
            f"{release}-runbook-operator-signing-key", namespace
        ).data["ed25519.pem"]
    )
    key = serialization.load_pem_private_key(pem, None).public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    spki = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def published() -> str:
        try:
            cm = cluster.core.read_namespaced_config_map("runbook-operator-ledger-key", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return ""
            raise
        return json.dumps(cm.data)

    text = wait_for(published, 60, 1, "the public key ConfigMap")
    assert hashlib.sha256(raw).hexdigest() in text or spki.decode().strip()[30:80] in text
