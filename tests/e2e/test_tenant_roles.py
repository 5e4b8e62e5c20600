"""What a tenant may do, decided by the real apiserver: the chart's aggregated ClusterRoles give the
built-in `edit` and `view` roles the project's resources (never their /status), the step
NetworkPolicy the chart renders is one the apiserver accepts, with the apiserver's real addresses,
and a step image outside the operator's allow-list makes the Runbook invalid.

Only the aggregated ClusterRoles are installed (rendered with `helm template --show-only`, named
after a release of this test, deleted afterwards); users are impersonated (`Impersonate-User`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .conftest import REPO_ROOT, Cluster, wait_for
from .operator_env import OperatorProcess, Runbooks, operator_env, shell_step
from .test_helm import _helm_binary

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "runbook-operator"
GROUP, VERSION = "runbook-operator.dev", "v1alpha1"
EDIT_USER, VIEW_USER = "edit-user", "view-user"


@pytest.fixture(scope="module")
def helm() -> str:
    path = _helm_binary()
    if not path or not Path(path).exists():
        pytest.skip("no helm binary (set HELM, or build it: hack/cluster/build-tools.sh helm)")
    return path


def helm_template(helm: str, release: str, *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [helm, "template", release, str(CHART), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)]


def kube_args(cluster: Cluster) -> list[str]:
    return ["--kubeconfig", cluster.kubeconfig] if cluster.kubeconfig else []


def impersonating(cluster: Cluster, user: str) -> client.CustomObjectsApi:
    """The project's resources as `user` (authenticated as the admin, who may impersonate)."""
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    api.set_default_header("Impersonate-User", user)
    return client.CustomObjectsApi(api)


def user_may(cluster: Cluster, user: str, verb: str, resource: str, ns: str, sub: str = "") -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            resource_attributes=client.V1ResourceAttributes(
                group=GROUP, resource=resource, subresource=sub or None, verb=verb, namespace=ns
            ),
        )
    )
    answer = client.AuthorizationV1Api(cluster.api).create_subject_access_review(review)
    return bool(answer.status.allowed)


def status_of(call: Callable[[], Any]) -> int:
    """The HTTP status of an API call: 200 when it succeeds."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def bind(cluster: Cluster, ns: str, user: str, cluster_role: str) -> None:
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role_binding(
        ns,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{cluster_role}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def others_aggregate_runbooks(cluster: Cluster) -> bool:
    """Whether some ClusterRole outside this test already brings runbooks into `edit` (a chart
    installed in the shared cluster): then `edit` allowed them before this test started."""
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    roles = rbac.list_cluster_role(
        label_selector="rbac.authorization.k8s.io/aggregate-to-edit"
    ).items
    return any(GROUP in (rule.api_groups or []) for role in roles for rule in role.rules or [])


@pytest.fixture
def aggregated_roles(cluster: Cluster, project_crds: None, helm: str) -> Iterator[list[str]]:
    """The chart's aggregated ClusterRoles and nothing else of the chart."""
    release = f"e2e-agg-{uuid.uuid4().hex[:6]}"
    docs = helm_template(helm, release, "--show-only", "templates/aggregated-roles.yaml")
    # admin, edit, view, and the approver role with its aggregated base (docs/approvals.md)
    assert sorted(d["kind"] for d in docs) == ["ClusterRole"] * 5
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    names: list[str] = []
    try:
        for doc in docs:
            rbac.create_cluster_role(doc)
            names.append(doc["metadata"]["name"])
        yield names
    finally:
        for name in names:
            with contextlib.suppress(ApiException):
                rbac.delete_cluster_role(name)


def runbook(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": {"id": name, "steps": [{"id": "a", "actionType": "TRANSFORM"}]},
    }


def execution(name: str, runbook_name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookExecution",
        "metadata": {"name": name},
        "spec": {"runbookRef": {"name": runbook_name}, "paused": True},
    }


def test_edit_and_view_cover_runbooks_but_never_their_status(
    cluster: Cluster, namespace: str, project_crds: None, helm: str, request: Any
) -> None:
    bind(cluster, namespace, EDIT_USER, "edit")
    bind(cluster, namespace, VIEW_USER, "view")
    # Without the chart's roles, `edit` alone cannot create an execution (issue 17's 403) --
    # unless a chart installed in the shared cluster already brought them in.
    if not others_aggregate_runbooks(cluster):
        assert not user_may(cluster, EDIT_USER, "create", "runbookexecutions", namespace)
    names = request.getfixturevalue("aggregated_roles")
    assert all(n.startswith("e2e-agg-") for n in names)
    wait_for(
        lambda: (
            user_may(cluster, EDIT_USER, "create", "runbookexecutions", namespace)
            and user_may(cluster, VIEW_USER, "list", "runbookexecutions", namespace)
        ),
        60,
        0.5,
        "the aggregation controller to fold the roles into edit and view",
    )

    editor = impersonating(cluster, EDIT_USER)
    ns = namespace
    editor.create_namespaced_custom_object(GROUP, VERSION, ns, "runbooks", runbook("rb-edit"))
    editor.create_namespaced_custom_object(
        GROUP, VERSION, ns, "runbookexecutions", execution("rbx-edit", "rb-edit")
    )
    editor.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "runbookexecutions", "rbx-edit", {"spec": {"paused": False}}
    )
    editor.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "runbooks", "rb-edit", {"metadata": {"labels": {"team": "a"}}}
    )
    got = editor.get_namespaced_custom_object(GROUP, VERSION, ns, "runbookexecutions", "rbx-edit")
    assert got["spec"]["paused"] is False
    assert editor.list_namespaced_custom_object(GROUP, VERSION, ns, "runbooks")["items"]
    # The status is the operator's record: a tenant with `edit` cannot forge it.
    forged = {"status": {"phase": "COMPLETED"}}
    for plural, name in (("runbookexecutions", "rbx-edit"), ("runbooks", "rb-edit")):
        assert (
            status_of(
                lambda p=plural, n=name: editor.patch_namespaced_custom_object_status(
                    GROUP, VERSION, ns, p, n, forged
                )
            )
            == 403
        )
    # Only where the RoleBinding is: another namespace stays closed.
    assert not user_may(cluster, EDIT_USER, "create", "runbookexecutions", "default")

    viewer = impersonating(cluster, VIEW_USER)
    assert viewer.get_namespaced_custom_object(GROUP, VERSION, ns, "runbooks", "rb-edit")
    listed = viewer.list_namespaced_custom_object(GROUP, VERSION, ns, "runbookexecutions")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["rbx-edit"]
    refused = {
        "patch": lambda: viewer.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "runbookexecutions", "rbx-edit", {"spec": {"paused": True}}
        ),
        "create": lambda: viewer.create_namespaced_custom_object(
            GROUP, VERSION, ns, "runbookexecutions", execution("rbx-view", "rb-edit")
        ),
        "delete": lambda: viewer.delete_namespaced_custom_object(
            GROUP, VERSION, ns, "runbooks", "rb-edit"
        ),
        "patch status": lambda: viewer.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, "runbookexecutions", "rbx-edit", forged
        ),
    }
    assert {what: status_of(call) for what, call in refused.items()} == dict.fromkeys(refused, 403)

    # And `edit` may delete what it made. (Asked, not done, for the execution: an admission
    # policy of the project may require a running execution to be cancelled first.)
    assert user_may(cluster, EDIT_USER, "delete", "runbookexecutions", ns)
    editor.delete_namespaced_custom_object(GROUP, VERSION, ns, "runbooks", "rb-edit")


def test_removing_the_roles_takes_the_rights_away(
    cluster: Cluster, namespace: str, project_crds: None, helm: str, request: Any
) -> None:
    """The rights come from the chart's roles, not from anything else in the cluster."""
    if others_aggregate_runbooks(cluster):
        pytest.skip("a chart installed in this cluster already aggregates runbooks into edit")
    bind(cluster, namespace, EDIT_USER, "edit")
    names = request.getfixturevalue("aggregated_roles")
    wait_for(
        lambda: user_may(cluster, EDIT_USER, "patch", "runbookexecutions", namespace),
        60,
        0.5,
        "edit to allow patching executions",
    )
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    for name in names:
        rbac.delete_cluster_role(name)
    wait_for(
        lambda: not user_may(cluster, EDIT_USER, "patch", "runbookexecutions", namespace),
        60,
        0.5,
        "edit to lose the runbook rights again",
    )


# --- the step NetworkPolicy, validated by the apiserver ---------------------------------------


def apiserver_addresses(cluster: Cluster) -> set[str]:
    svc = cluster.core.read_namespaced_service("kubernetes", "default")
    addresses = set(svc.spec.cluster_ips or [svc.spec.cluster_ip])
    slice_ = client.DiscoveryV1Api(cluster.api).read_namespaced_endpoint_slice(
        "kubernetes", "default"
    )
    for endpoint in slice_.endpoints or []:
        addresses.update(endpoint.addresses)
    return addresses


def test_the_step_network_policy_is_valid_and_finds_the_apiserver(
    cluster: Cluster, namespace: str, helm: str
) -> None:
    egress = [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]},
    ]
    # `--dry-run=server`: helm connects to the cluster, so `lookup` finds the apiserver.
    docs = helm_template(
        helm,
        f"np-{uuid.uuid4().hex[:6]}",
        *kube_args(cluster),
        "--dry-run=server",
        "--namespace",
        "runbook-system",
        "--show-only",
        "templates/step-networkpolicy.yaml",
        "--set-json",
        f'watchNamespaces=["{namespace}"]',
        "--set",
        "stepNetworkPolicy.enabled=true",
        "--set-json",
        f"stepNetworkPolicy.egress={json.dumps(egress)}",
    )
    (policy,) = docs
    dns, api, anywhere, monitoring = policy["spec"]["egress"]
    wanted = {f"{ip}/{'128' if ':' in ip else '32'}" for ip in apiserver_addresses(cluster)}
    assert {peer["ipBlock"]["cidr"] for peer in api["to"]} == wanted
    slice_ = client.DiscoveryV1Api(cluster.api).read_namespaced_endpoint_slice(
        "kubernetes", "default"
    )
    endpoint_ports = {p.port for p in slice_.ports or []}
    ports = [p["port"] for p in api["ports"]]
    assert endpoint_ports <= set(ports) and len(ports) == len(set(ports)), ports
    assert anywhere["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]
    assert monitoring["to"][0]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["runbook-system"]}
    ]
    # The apiserver accepts it as it is (its own validation: except inside cidr, selectors...).
    netv1 = client.NetworkingV1Api(cluster.api)
    created = netv1.create_namespaced_network_policy(namespace, policy, dry_run="All")
    assert created.spec.pod_selector.match_labels == {
        "app.kubernetes.io/managed-by": "runbook-operator",
        "app.kubernetes.io/component": "step",
    }
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


# --- the image policy, seen by a tenant -------------------------------------------------------


@pytest.fixture
def strict_operator(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, str]]:
    """An operator of this test's own with an image allow-list, watching only its namespace."""
    ns = f"e2e-img-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    folder = tmp_path_factory.mktemp("strict-operator")
    env = operator_env(cluster, folder, ns, ns)
    env["RUNBOOK_IMAGE_ALLOW_PREFIXES"] = '["registry.example/allowed/"]'
    op = OperatorProcess(env, folder / "operator.log")
    op.start()
    yield op, ns
    op.stop()
    print(f"--- strict operator log (tail) ---\n{op.tail(80)}")
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(ns, propagation_policy="Background")


def test_an_image_outside_the_allow_list_makes_the_runbook_invalid(
    cluster: Cluster, strict_operator: tuple[OperatorProcess, str]
) -> None:
    op, ns = strict_operator
    rb = Runbooks(cluster, ns, op.tail)
    foreign = {"id": "x", "actionType": "CUSTOM", "container": {"image": "busybox:1.36"}}
    allowed = {
        "id": "y",
        "actionType": "CUSTOM",
        "container": {"image": "registry.example/allowed/tool:1"},
    }
    # The executor image (a step with a command in it) is always allowed.
    rb.runbook("refused", [shell_step("own", "pass"), foreign])
    rb.runbook("accepted", [shell_step("own", "pass"), allowed])

    def valid(name: str) -> dict[str, Any] | None:
        body = rb.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "runbooks", name)
        status = body.get("status") or {}
        return status if status.get("conditions") else None

    refused = wait_for(lambda: valid("refused"), 60, 0.5, "the refused Runbook's status")
    conditions = {c["type"]: c for c in refused["conditions"]}
    cond = conditions["Valid"]
    assert (cond["status"], cond["reason"]) == ("False", "ImageNotAllowed"), op.tail()
    assert conditions["Stalled"]["status"] == "True"  # kstatus: an invalid Runbook is Failed
    (problem,) = refused["problems"]
    assert problem["field"] == "spec.steps[1].container.image"
    assert "'busybox:1.36'" in problem["reason"]
    assert "not under an allowed prefix" in problem["reason"]
    assert "registry.example/allowed/" in problem["reason"]
    accepted = wait_for(lambda: valid("accepted"), 60, 0.5, "the accepted Runbook's status")
    valid_condition = {c["type"]: c for c in accepted["conditions"]}["Valid"]
    assert valid_condition["status"] == "True" and accepted["problems"] == []
