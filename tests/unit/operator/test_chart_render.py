"""The chart as `helm template` renders it (no cluster): the operator's RBAC is exactly the verbs
it uses, the executor identity is the operator's own (executor_identity), the aggregated
ClusterRoles, the step images settings and the optional NetworkPolicy for step pods.

Needs a helm binary (HELM, the one hack/cluster/build-tools.sh built, or helm on PATH); the
local cluster enforces no NetworkPolicy, so the policy is checked here, as rendered, and by the
apiserver's validation in tests/e2e/test_tenant_roles.py.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_operator import names
from runbook_operator.steps import executor_identity

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "runbook-operator"
GROUP = "runbook-operator.dev"
API = ["10.0.0.1/32", "192.168.7.10/32"]
"""Apiserver addresses for renders with the policy on (`helm template` cannot look them up)."""


def _helm() -> str | None:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    cache = os.environ.get("RUNBOOK_CACHE", "/var/cache/runbook-operator")
    built = sorted(glob.glob(f"{cache}/bin/helm-*/helm"))
    return built[-1] if built else shutil.which("helm")


HELM = _helm()
pytestmark = pytest.mark.skipif(
    HELM is None, reason="no helm binary (set HELM, or run hack/cluster/build-tools.sh helm)"
)


def helm_template(*values: str, namespace: str = "ops") -> subprocess.CompletedProcess[str]:
    sets = [arg for value in values for arg in ("--set-json", value)]
    return subprocess.run(
        [str(HELM), "template", "rel", str(CHART), "--namespace", namespace, *sets],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def render(*values: str, namespace: str = "ops") -> list[dict[str, Any]]:
    proc = helm_template(*values, namespace=namespace)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if isinstance(d, dict)]


def refused(*values: str) -> str:
    proc = helm_template(*values)
    assert proc.returncode != 0, "rendered although it should not"
    return proc.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str, ns: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and d["metadata"].get("namespace") == ns
    ]
    assert len(found) == 1, f"{kind} {ns}/{name}: {len(found)} found"
    return found[0]


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, rules without resourceNames only."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if rule.get("resourceNames"):
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deploy = find(docs, "Deployment", "rel-runbook-operator", "ops")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- the operator's own RBAC: the verbs it uses, no more ----------------------------------------

OPERATOR_GRANTS = {
    (GROUP, "runbooks"): {"get", "list", "watch", "patch"},
    # create: scheduled triggers start executions; delete: historyLimit (docs/triggers.md)
    (GROUP, "runbookexecutions"): {"get", "list", "watch", "patch", "create", "delete"},
    (GROUP, "runbooks/status"): {"patch"},
    (GROUP, "runbookexecutions/status"): {"patch"},
    # fire: the custom verb admission asks of whoever creates a triggered execution
    (GROUP, "runbooktriggers"): {"get", "list", "watch", "patch", "fire"},
    (GROUP, "runbooktriggers/status"): {"patch"},
    (GROUP, "runbookapprovals"): {"get", "list", "watch"},
    (GROUP, "runbookapprovals/status"): {"patch"},
    ("authorization.k8s.io", "localsubjectaccessreviews"): {"create"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "configmaps"): {"get", "list", "create", "update"},
    ("", "events"): {"get", "create"},
    # not a resource: the custom verb the ledger-writers admission policy checks
    (GROUP, "ledgers"): {"write"},
}
"""docs/operator.md's RBAC table, verb for verb."""
EXECUTOR_RBAC_GRANTS = {
    ("", "serviceaccounts"): {"get", "create"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "create"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "create"},
}


def test_cluster_wide_role_grants_exactly_the_verbs_the_operator_uses() -> None:
    role = find(render(), "ClusterRole", "rel-runbook-operator")
    assert grants(role["rules"]) == {
        **OPERATOR_GRANTS,
        **EXECUTOR_RBAC_GRANTS,
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }


def test_namespaced_roles_grant_exactly_the_verbs_the_operator_uses() -> None:
    docs = render('watchNamespaces=["team-a","team-b"]')
    for ns in ("team-a", "team-b"):
        role = find(docs, "Role", "rel-runbook-operator", ns)
        assert grants(role["rules"]) == OPERATOR_GRANTS  # the chart made the executor identity
    public_key = find(docs, "Role", "rel-runbook-operator-public-key", "ops")
    named = [r for r in public_key["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["runbook-operator-ledger-key"],
            "verbs": ["get", "update"],
        }
    ]


def test_no_role_of_the_chart_patches_configmaps() -> None:
    docs = render('watchNamespaces=["team-a"]') + render()
    for doc in docs:
        for rule in doc.get("rules") or []:
            if "configmaps" in rule["resources"]:
                assert "patch" not in rule["verbs"] and "*" not in rule["verbs"], doc["metadata"]


# --- the executor identity: one definition ----------------------------------------------------


@pytest.mark.parametrize("account", ["runbook-executor", "steps"])
def test_the_charts_executor_identity_is_the_operators(account: str) -> None:
    """What the chart makes in namespaced mode is what the operator makes in cluster-wide mode:
    same kinds, names, labels, rules, binding (the namespace aside)."""
    docs = render('watchNamespaces=["team-a"]', f'executor.serviceAccountName="{account}"')
    made = [
        {**d, "metadata": {k: v for k, v in d["metadata"].items() if k != "namespace"}}
        for d in docs
        if d["metadata"].get("namespace") == "team-a" and d["metadata"]["name"] == account
    ]
    assert len(made) == 3
    assert sorted(made, key=lambda d: d["kind"]) == sorted(
        executor_identity.objects("team-a", account), key=lambda d: d["kind"]
    )
    role = find(docs, "Role", account, "team-a")
    assert role["rules"] == executor_identity.rules()
    assert role["metadata"]["labels"] == executor_identity.labels()


# --- aggregated ClusterRoles ------------------------------------------------------------------


def test_aggregated_roles_extend_admin_edit_and_view() -> None:
    docs = render()
    for role in ("admin", "edit", "view"):
        cr = find(docs, "ClusterRole", f"rel-runbook-operator-{role}")
        labels = cr["metadata"]["labels"]
        assert labels[f"rbac.authorization.k8s.io/aggregate-to-{role}"] == "true"
        assert not {k for k in labels if k.startswith("rbac.") and not k.endswith(role)}
        granted = grants(cr["rules"])
        read = {"get", "list", "watch"}
        for resource in ("runbooks", "runbookexecutions"):
            writes = set() if role == "view" else {"create", "update", "patch", "delete"}
            assert granted[(GROUP, resource)] == read | writes | (
                {"deletecollection"} if writes else set()
            )
            # The status is the operator's record: readable, never writable by a user role.
            assert granted[(GROUP, f"{resource}/status")] == read
        assert {group for group, _ in granted} == {GROUP}


def test_aggregated_roles_can_be_left_out() -> None:
    docs = render("rbac.aggregatedRoles=false")
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"} == {
        "rel-runbook-operator",
        "rel-runbook-operator-ledger-anchor-reader",  # verifiers read the trust anchor
        "rel-runbook-operator-triggers",  # the trigger receiver (its own identity)
    }
    namespaced = render(
        'watchNamespaces=["team-a"]',
        "rbac.aggregatedRoles=false",
        "signing.publishAnchor=false",
        "signing.verifiers=null",
    )
    assert not [d for d in namespaced if d["kind"].startswith("Cluster")]


# --- the trigger receiver ---------------------------------------------------------------------

RECEIVER_GRANTS = {
    (GROUP, "runbooktriggers"): {"get", "fire"},
    (GROUP, "runbooktriggers/status"): {"patch"},
    (GROUP, "runbookexecutions"): {"get", "list", "create", "patch"},
    ("", "secrets"): {"get"},
}
"""docs/triggers.md: read triggers and the Secret one names, create and cancel executions."""


def test_the_receiver_has_its_own_identity_service_and_exactly_its_verbs() -> None:
    docs = render()
    assert grants(find(docs, "ClusterRole", "rel-runbook-operator-triggers")["rules"]) == (
        RECEIVER_GRANTS
    )
    deploy = find(docs, "Deployment", "rel-runbook-operator-triggers", "ops")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-runbook-operator-triggers"
    assert pod["containers"][0]["command"] == ["python", "-m", "runbook_operator.triggers"]
    assert deploy["spec"]["replicas"] == 1
    service = find(docs, "Service", "rel-runbook-operator-triggers", "ops")
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "triggers"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "triggers"
    namespaced = render('watchNamespaces=["team-a","team-b"]')
    for ns in ("team-a", "team-b"):
        role = find(namespaced, "Role", "rel-runbook-operator-triggers", ns)
        assert grants(role["rules"]) == RECEIVER_GRANTS


def test_only_the_receiver_and_the_operator_hold_the_verb_fire() -> None:
    """The receiver starts alert runs, the operator scheduled ones (docs/schedules.md); the
    aggregated admin/edit/view roles never get it."""
    holders = set()
    for doc in render() + render('watchNamespaces=["team-a"]'):
        for rule in doc.get("rules") or []:
            if "fire" in rule["verbs"] or "*" in rule["verbs"]:
                holders.add(doc["metadata"]["name"])
    assert holders == {"rel-runbook-operator-triggers", "rel-runbook-operator"}


def test_token_secrets_are_made_where_listed() -> None:
    docs = render('triggers.tokenSecret.namespaces=["team-a"]')
    secret = find(docs, "Secret", "alertmanager-token", "team-a")
    assert len(secret["data"]["token"]) >= 48
    assert not [
        d
        for d in render()
        if d["kind"] == "Secret" and d["metadata"]["name"] == "alertmanager-token"
    ]


# --- step images ------------------------------------------------------------------------------


def test_step_image_settings_reach_the_operator() -> None:
    env = env_of(render())
    assert env["RUNBOOK_IMAGE_ALLOW_PREFIXES"] == "[]"
    assert env["RUNBOOK_IMAGE_REQUIRE_DIGEST"] == "false"
    assert env["RUNBOOK_STEP_IMAGE_PULL_POLICY"] == "Always"
    assert env["RUNBOOK_IMAGE_PULL_POLICY"] == "IfNotPresent"  # the executor image's own
    env = env_of(
        render(
            'stepImages.allowPrefixes=["ghcr.io/acme/","registry.example:5000/team"]',
            "stepImages.requireDigest=true",
            'stepImages.pullPolicy="IfNotPresent"',
        )
    )
    assert env["RUNBOOK_IMAGE_ALLOW_PREFIXES"] == '["ghcr.io/acme/","registry.example:5000/team"]'
    assert env["RUNBOOK_IMAGE_REQUIRE_DIGEST"] == "true"
    assert env["RUNBOOK_STEP_IMAGE_PULL_POLICY"] == "IfNotPresent"


def test_the_settings_the_chart_writes_load_in_the_operator() -> None:
    from runbook_operator.config import load_config

    env = env_of(
        render('stepImages.allowPrefixes=["ghcr.io/acme/"]', "stepImages.requireDigest=true")
    )
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    cfg = load_config(plain)
    assert cfg.image_allow_prefixes == ("ghcr.io/acme/",)
    assert cfg.image_require_digest and cfg.step_image_pull_policy == "Always"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ('stepImages.pullPolicy="Sometimes"', "pullPolicy"),
        ('stepImages.allowPrefixes=["a b"]', "allowPrefixes"),
        ('stepImages.allowPrefixes=[""]', "allowPrefixes"),
        ('stepImages.requireDigest="yes"', "requireDigest"),
    ],
)
def test_bad_step_image_values_are_refused(value: str, complaint: str) -> None:
    stderr = refused(value)
    assert "values don't meet the specifications of the schema" in stderr
    assert complaint in stderr


# --- the NetworkPolicy for step pods ----------------------------------------------------------


def policy_of(docs: list[dict[str, Any]], ns: str) -> dict[str, Any]:
    return find(docs, "NetworkPolicy", "rel-runbook-operator-steps", ns)


def on(*values: str) -> list[str]:
    return [
        "stepNetworkPolicy.enabled=true",
        f"stepNetworkPolicy.apiServer.cidrs={json.dumps(API)}",
        *values,
    ]


def test_no_network_policy_by_default() -> None:
    assert not [d for d in render('watchNamespaces=["team-a"]') if d["kind"] == "NetworkPolicy"]


def test_step_pods_may_reach_dns_and_the_apiserver_only() -> None:
    docs = render('watchNamespaces=["team-a","team-b"]', *on())
    for ns in ("team-a", "team-b"):
        spec = policy_of(docs, ns)["spec"]
        # Exactly the labels every step pod carries (names.labels(..., "step")).
        step_labels = names.labels("x", "uid", "step", step_id="a", attempt=1)
        selector = spec["podSelector"]["matchLabels"]
        assert selector == {
            "app.kubernetes.io/managed-by": "runbook-operator",
            "app.kubernetes.io/component": "step",
        }
        assert selector.items() <= step_labels.items()
        assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
        dns, api = spec["egress"]
        assert dns == {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
        assert api == {
            "to": [{"ipBlock": {"cidr": cidr}} for cidr in API],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
        }
    # Only in the watched namespaces: not in the operator's own.
    assert [d["metadata"]["namespace"] for d in docs if d["kind"] == "NetworkPolicy"] == [
        "team-a",
        "team-b",
    ]


def test_the_egress_allow_list_never_opens_metadata_or_the_operators_namespace() -> None:
    egress = [
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
            "ports": [{"port": 443}],
        },
        {"to": [{"ipBlock": {"cidr": "169.0.0.0/8"}}, {"ipBlock": {"cidr": "10.1.0.0/16"}}]},
        {"to": [{"ipBlock": {"cidr": "::/0"}}]},
        {"to": [{"namespaceSelector": {}}, {"namespaceSelector": {"matchLabels": {"t": "m"}}}]},
        {"to": [{"podSelector": {"matchLabels": {"app": "cache"}}}]},
    ]
    docs = render(
        'watchNamespaces=["team-a"]', *on(f"stepNetworkPolicy.egress={json.dumps(egress)}")
    )
    rules = policy_of(docs, "team-a")["spec"]["egress"][2:]
    assert rules[0] == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}}],
        "ports": [{"port": 443}],
    }
    assert rules[1]["to"] == [
        {"ipBlock": {"cidr": "169.0.0.0/8", "except": ["169.254.0.0/16"]}},
        {"ipBlock": {"cidr": "10.1.0.0/16"}},  # nothing denied inside it
    ]
    assert rules[2]["to"] == [
        {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10", "fd00:ec2::254/128"]}}
    ]
    not_ops = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["ops"]}
    assert rules[3]["to"] == [
        {"namespaceSelector": {"matchExpressions": [not_ops]}},
        {"namespaceSelector": {"matchLabels": {"t": "m"}, "matchExpressions": [not_ops]}},
    ]
    assert rules[4]["to"] == [{"podSelector": {"matchLabels": {"app": "cache"}}}]


@pytest.mark.parametrize(
    ("cidr", "excepted"),
    [
        ("168.0.0.0/7", True),  # 168-169.x: contains 169.254/16
        ("170.0.0.0/7", False),  # 170-171.x
        ("169.254.0.0/16", None),  # the denied block itself
        ("169.254.169.254/32", None),  # the metadata address
        ("169.255.0.0/16", False),
        ("169.252.0.0/14", True),
        ("128.0.0.0/1", True),
        ("0.0.0.0/1", False),
    ],
)
def test_denied_cidrs_are_computed_exactly(cidr: str, excepted: bool | None) -> None:
    egress = json.dumps([{"to": [{"ipBlock": {"cidr": cidr}}]}])
    args = ('watchNamespaces=["team-a"]', *on(f"stepNetworkPolicy.egress={egress}"))
    if excepted is None:
        stderr = refused(*args)
        assert "stepNetworkPolicy.egress[0].to[0]" in stderr and "169.254.0.0/16" in stderr
        return
    (peer,) = policy_of(render(*args), "team-a")["spec"]["egress"][2]["to"]
    assert ("169.254.0.0/16" in peer["ipBlock"].get("except", [])) == excepted


def test_cluster_wide_mode_needs_the_namespaces_listed() -> None:
    stderr = refused(*on())
    assert "stepNetworkPolicy.namespaces" in stderr and "cluster-wide" in stderr
    docs = render(*on('stepNetworkPolicy.namespaces=["runbooks-a","runbooks-b"]'))
    assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "NetworkPolicy") == [
        "runbooks-a",
        "runbooks-b",
    ]


def test_the_apiserver_must_be_given_when_it_cannot_be_looked_up() -> None:
    stderr = refused('watchNamespaces=["team-a"]', "stepNetworkPolicy.enabled=true")
    assert "stepNetworkPolicy.apiServer.cidrs" in stderr


@pytest.mark.parametrize(
    ("egress", "complaint"),
    [
        ([{"ports": [{"port": 443}]}], "/stepNetworkPolicy/egress/0': missing property 'to'"),
        ([{"to": []}], "/stepNetworkPolicy/egress/0/to': minItems"),
        ([{"to": [{"ipBlock": {"cidr": "nope"}}]}], "/egress/0/to/0/ipBlock/cidr': 'nope'"),
        ([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}, "x": 1}]}], "additional properties 'x'"),
    ],
)
def test_malformed_or_unbounded_egress_rules_are_refused(egress: list[Any], complaint: str) -> None:
    stderr = refused(
        'watchNamespaces=["team-a"]', *on(f"stepNetworkPolicy.egress={json.dumps(egress)}")
    )
    assert complaint in stderr


def test_a_rule_without_to_is_refused_by_the_template_too() -> None:
    """The schema's check has a backstop: `--skip-schema-validation` still renders no rule that
    opens every destination."""
    egress = json.dumps([{"ports": [{"port": 443}]}])
    proc = subprocess.run(
        [
            str(HELM),
            "template",
            "rel",
            str(CHART),
            "--skip-schema-validation",
            "--set-json",
            'watchNamespaces=["team-a"]',
            *[arg for v in on(f"stepNetworkPolicy.egress={egress}") for arg in ("--set-json", v)],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "stepNetworkPolicy.egress[0]: give `to`" in proc.stderr


def test_approving_is_its_own_duty_not_part_of_edit() -> None:
    """docs/approvals.md: the verb `approve` comes from the approver role only."""
    docs = render()
    for role in ("admin", "edit", "view"):
        rules = find(docs, "ClusterRole", f"rel-runbook-operator-{role}")["rules"]
        assert all("approve" not in r["verbs"] for r in rules), role
    edit = grants(find(docs, "ClusterRole", "rel-runbook-operator-edit")["rules"])
    assert edit[(GROUP, "runbookapprovals")] >= {"create"}
    assert "update" not in edit[(GROUP, "runbookapprovals")]
    approver = find(docs, "ClusterRole", "rel-runbook-operator-approver")
    selector = approver["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
    base = find(docs, "ClusterRole", "rel-runbook-operator-approver-base")
    assert base["metadata"]["labels"].items() >= selector.items()
    assert "approve" in grants(base["rules"])[(GROUP, "runbookexecutions")]
