"""Where verify takes a checkpoint's public key from: only the trust anchor (the operator's
namespace, recorded on the RunbookExecution CRD, or named with --key-namespace) or a pinned key;
a key found anywhere else (keyRef, a labelled ConfigMap in a tenant's namespace) is reported as
not trusted and never used. tests/e2e/test_trust_anchor.py runs the attack on a real cluster."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from runbook_operator.kube import (
    CONFIGMAPS,
    CRDS,
    EXECUTIONS,
    JSON_PATCH,
    Invalid,
    KubeError,
    NotFound,
    Resource,
)
from runbook_operator.ledger import find
from runbook_operator.ledger.anchor import (
    ANCHOR_PREFIX,
    EXECUTIONS_CRD,
    AnchorError,
    KeyAnchor,
    anchor_patch,
    anchors_for,
    anchors_of,
    parse_anchor,
    withdraw_if_unchanged,
)
from runbook_operator.ledger.checkpoint import KeyRef, Signer, make_checkpoint, public_key_configmap
from runbook_operator.ledger.find import TrustAnchorError, verify_execution
from runbook_operator.ledger.segments import entry_line
from runbook_operator.ledger.store import publish_ledger_anchor
from runbook_operator.names import ExecutionRef

from .helpers import T0, Store, append_lines, chain_of, store_checkpoint

TENANT = "team-a"
OPS = "runbook-system"
KEY_CM = "runbook-operator-ledger-key"
LID = ExecutionRef(TENANT, "demo", "0123456789abcdef-uid")
OPERATOR_KEY = Ed25519PrivateKey.generate()
OPERATOR = Signer(OPERATOR_KEY, KeyRef(OPS, KEY_CM))


class FakeKube:
    """ConfigMaps by (namespace, name), one CRD object, no RunbookExecution objects; `forbid`
    makes reads of a namespace (or of the CRD: None) answer 403, like RBAC would."""

    def __init__(self) -> None:
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.crd: dict[str, Any] | None = {"metadata": {"name": EXECUTIONS_CRD}}
        self.forbid: set[str | None] = set()
        self.patches: list[tuple[Any, str]] = []

    def _check(self, namespace: str | None) -> None:
        if namespace in self.forbid:
            raise KubeError(403, "Forbidden", f"cannot read in {namespace}")

    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        if res == EXECUTIONS:
            raise NotFound(404, "NotFound", name)
        if res == CRDS:
            self._check(None)
            if self.crd is None:
                raise NotFound(404, "NotFound", name)
            return copy.deepcopy(self.crd)
        assert res == CONFIGMAPS and namespace is not None
        self._check(namespace)
        if (namespace, name) not in self.configmaps:
            raise NotFound(404, "NotFound", f"configmaps {name!r} not found")
        return copy.deepcopy(self.configmaps[(namespace, name)])

    def list(
        self, res: Resource, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        assert res == CONFIGMAPS
        self._check(namespace)
        wanted = dict(kv.split("=", 1) for kv in (selector or "").split(",") if kv)
        return [
            copy.deepcopy(cm)
            for (ns, _), cm in sorted(self.configmaps.items())
            if (namespace is None or ns == namespace)
            and all(cm["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]

    def patch(
        self, res: Resource, namespace: str | None, name: str, body: Any, **kw: Any
    ) -> dict[str, Any]:
        assert res == CRDS and self.crd is not None
        self._check(None)
        self.patches.append((body, kw.get("content_type", "merge")))
        annotations = self.crd["metadata"].setdefault("annotations", {})
        if kw.get("content_type") == JSON_PATCH:
            test, _remove = body
            key = test["path"].rsplit("/", 1)[1].replace("~1", "/").replace("~0", "~")
            if annotations.get(key) != test["value"]:
                raise Invalid(422, "Invalid", "test failed")
            del annotations[key]
        else:
            for key, value in body["metadata"]["annotations"].items():
                if value is None:
                    annotations.pop(key, None)
                else:
                    annotations[key] = value
        return copy.deepcopy(self.crd)

    # -- set-up helpers -------------------------------------------------------------------------
    def publish_key(self, namespace: str, name: str, signer: Signer) -> None:
        """A public-key ConfigMap labelled like the operator's (anyone can label theirs)."""
        self.configmaps[(namespace, name)] = public_key_configmap(name, namespace, signer)

    def anchor(self, anchor: KeyAnchor) -> None:
        self.patch(CRDS, None, EXECUTIONS_CRD, anchor_patch(anchor))

    def ledger(self, signer: Signer | None, n: int = 6) -> None:
        """The execution's ledger segments (and a checkpoint signed by `signer`)."""
        store = Store()
        chain = chain_of(n, lid=LID)
        append_lines(store, [entry_line(e) for e in chain.entries], 3_000, lid=LID)
        if signer is not None:
            cp = make_checkpoint(
                execution_id=LID.execution_id, count=n, head=chain.head, now=T0, signer=signer
            )
            store_checkpoint(store, cp, 3_000, lid=LID)
        for cm in store.configmaps():
            cm["metadata"]["namespace"] = TENANT
            self.configmaps[(TENANT, cm["metadata"]["name"])] = cm


def _verify(kube: FakeKube, **kw: Any) -> find.Report:
    return verify_execution(kube, TENANT, LID.name, **kw)  # type: ignore[arg-type]


@pytest.fixture
def cluster() -> FakeKube:
    """The operator installed in OPS, its anchor on the CRD, a legitimately signed ledger."""
    kube = FakeKube()
    kube.publish_key(OPS, KEY_CM, OPERATOR)
    kube.anchor(KeyAnchor(OPS, KEY_CM))
    kube.ledger(OPERATOR)
    return kube


def _untrusted(report: find.Report) -> list[str]:
    return [n for n in report.notes if "not trusted" in n]


# -- the anchor on the CRD ---------------------------------------------------------------------
def test_the_operators_key_from_the_anchor_verifies_an_old_ledger_with_its_keyref(
    cluster: FakeKube,
) -> None:
    """Checkpoints written before the anchor carry keyRef to the operator's namespace: when
    that is the anchor, they verify with no note."""
    report = _verify(cluster)
    assert report.ok, report.headline()
    assert report.checkpoint is not None and report.checkpoint["keyRef"]["namespace"] == OPS
    assert _untrusted(report) == []


def test_a_forged_checkpoint_with_a_tenant_key_published_in_its_namespace_fails(
    cluster: FakeKube,
) -> None:
    """The attack of issue 16: a tenant key in the tenant's namespace, labelled like the real
    one and named by keyRef in the forged checkpoint."""
    tenant = Signer.generate(KeyRef(TENANT, "ledger-key"))
    cluster.publish_key(TENANT, "ledger-key", tenant)
    cluster.ledger(tenant)  # the whole ledger rewritten and signed by the tenant
    report = _verify(cluster)
    assert not report.ok
    assert "not a trusted public key" in report.headline()
    notes = _untrusted(report)
    assert any(f"keyRef {TENANT}/ledger-key" in n for n in notes), report.notes
    assert any(
        f"key {tenant.key_id[:16]}… is published in ConfigMap {TENANT}/ledger-key" in n
        for n in notes
    ), report.notes


def test_a_keyref_elsewhere_is_ignored_and_noted_even_when_the_key_is_trusted(
    cluster: FakeKube,
) -> None:
    moved = Signer(OPERATOR_KEY, KeyRef(TENANT, "copy-of-the-key"))  # same key, other keyRef
    cluster.ledger(moved)
    report = _verify(cluster)
    assert report.ok, report.headline()
    assert _untrusted(report) == [
        f"keyRef {TENANT}/copy-of-the-key in a checkpoint is not a trust anchor: not trusted, "
        "not used"
    ]


def test_a_labelled_key_in_another_namespace_is_ignored_and_noted(cluster: FakeKube) -> None:
    tenant = Signer.generate()  # no keyRef: only a label search could find its key
    cluster.publish_key("team-b", "innocent-looking", tenant)
    cluster.ledger(tenant)
    report = _verify(cluster)
    assert not report.ok and "not a trusted public key" in report.headline()
    assert _untrusted(report) == [
        f"key {tenant.key_id[:16]}… is published in ConfigMap team-b/innocent-looking "
        "(labelled app.kubernetes.io/component=ledger-key), which is not a trust anchor: "
        "not trusted"
    ]


def test_the_label_search_falls_back_to_the_namespace_when_the_cluster_is_forbidden(
    cluster: FakeKube,
) -> None:
    tenant = Signer.generate()
    cluster.publish_key(TENANT, "k", tenant)
    cluster.ledger(tenant)
    original = cluster.list

    def namespaced_only(res: Resource, namespace: str | None, selector: str | None = None) -> Any:
        if namespace is None:
            raise KubeError(403, "Forbidden", "cluster-wide list")
        return original(res, namespace, selector)

    cluster.list = namespaced_only  # type: ignore[method-assign]
    report = _verify(cluster)
    assert not report.ok
    assert any(f"ConfigMap {TENANT}/k" in n for n in _untrusted(report)), report.notes


def test_an_anchor_vouches_only_for_the_namespaces_it_watches(cluster: FakeKube) -> None:
    """A namespaced installation in team-b's operator namespace cannot verify team-a's ledger,
    even if it is the only anchor; with one covering team-a it can."""
    cluster.crd = {"metadata": {"name": EXECUTIONS_CRD}}
    other = Signer.generate()
    cluster.publish_key("team-b-ops", KEY_CM, other)
    cluster.anchor(KeyAnchor("team-b-ops", KEY_CM, ("team-b",)))
    cluster.ledger(other)
    with pytest.raises(TrustAnchorError, match="covers it"):
        _verify(cluster)
    cluster.anchor(KeyAnchor(OPS, KEY_CM, ("team-*", "!team-b")))
    report = _verify(cluster)
    assert not report.ok and "not a trusted public key" in report.headline()
    cluster.ledger(OPERATOR)
    assert _verify(cluster).ok


# -- no anchor: a clear error naming what to pass -----------------------------------------------
@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda k: setattr(k, "crd", {"metadata": {"name": EXECUTIONS_CRD}}), "annotation"),
        (lambda k: setattr(k, "crd", None), "cannot read customresourcedefinitions"),
        (lambda k: k.forbid.add(None), "403 Forbidden"),
        (lambda k: k.configmaps.pop((OPS, KEY_CM)), f"ConfigMap {OPS}/{KEY_CM}: 404"),
        (lambda k: k.forbid.add(OPS), f"ConfigMap {OPS}/{KEY_CM}: 403"),
    ],
    ids=["no annotation", "no CRD", "CRD forbidden", "key ConfigMap gone", "key forbidden"],
)
def test_without_a_usable_anchor_verify_fails_saying_how_to_pass_one(
    cluster: FakeKube, break_it: Any, reason: str
) -> None:
    cluster.publish_key(TENANT, "ledger-key", OPERATOR)  # a copy elsewhere is never a fallback
    break_it(cluster)
    with pytest.raises(TrustAnchorError) as caught:
        _verify(cluster)
    message = str(caught.value)
    assert reason in message
    assert "--key-namespace" in message and "--public-key" in message


def test_a_ledger_without_checkpoints_needs_no_anchor(cluster: FakeKube) -> None:
    cluster.crd = None
    cluster.configmaps = {}
    cluster.ledger(None)
    report = _verify(cluster)
    assert report.ok and any("no signed checkpoint" in n for n in report.notes)


def test_an_explicit_anchor_replaces_the_crds(cluster: FakeKube) -> None:
    cluster.crd = None
    assert _verify(cluster, key_anchor=KeyAnchor(OPS, KEY_CM)).ok
    tenant = Signer.generate(KeyRef(TENANT, "ledger-key"))
    cluster.publish_key(TENANT, "ledger-key", tenant)
    cluster.ledger(tenant)
    assert not _verify(cluster, key_anchor=KeyAnchor(OPS, KEY_CM)).ok
    # What the auditor names is what is trusted (their choice, on the command line).
    assert _verify(cluster, key_anchor=KeyAnchor(TENANT, "ledger-key")).ok


# -- a pinned key ------------------------------------------------------------------------------
def test_a_pinned_key_is_the_only_key_trusted(cluster: FakeKube) -> None:
    cluster.crd = None  # no anchor needed
    assert _verify(cluster, public_key_pem=OPERATOR.public_pem).ok
    other = Signer.generate()
    report = _verify(cluster, public_key_pem=other.public_pem)
    assert not report.ok and "not a trusted public key" in report.headline()
    # The anchor's key (published in the cluster) does not override the pin.
    cluster.crd = {"metadata": {"name": EXECUTIONS_CRD}}
    cluster.anchor(KeyAnchor(OPS, KEY_CM))
    assert not _verify(cluster, public_key_pem=other.public_pem).ok


def test_a_pinned_key_reports_where_the_checkpoints_key_came_from(cluster: FakeKube) -> None:
    tenant = Signer.generate(KeyRef(TENANT, "ledger-key"))
    cluster.publish_key(TENANT, "ledger-key", tenant)
    cluster.ledger(tenant)
    report = _verify(cluster, public_key_pem=OPERATOR.public_pem)
    assert not report.ok
    assert any(f"ConfigMap {TENANT}/ledger-key" in n for n in _untrusted(report))


# -- the anchor record (pure) ------------------------------------------------------------------
def test_anchor_patch_is_one_annotation_keyed_by_the_operator_namespace() -> None:
    patch = anchor_patch(KeyAnchor(OPS, KEY_CM, ("team-a", "team-b")))
    key = f"{ANCHOR_PREFIX}{OPS}"
    assert patch == {
        "metadata": {
            "annotations": {
                key: json.dumps({"configMap": KEY_CM, "watchNamespaces": ["team-a", "team-b"]})
                .replace(", ", ",")
                .replace(": ", ":")
            }
        }
    }
    assert parse_anchor(key, patch["metadata"]["annotations"][key]) == KeyAnchor(
        OPS, KEY_CM, ("team-a", "team-b")
    )


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("not json", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"configMap": "Bad_Name"}', "configMap"),
        ('{"configMap": "k", "watchNamespaces": "team-a"}', "watchNamespaces: expected a list"),
        ('{"configMap": "k", "watchNamespaces": ["Team A"]}', "watchNamespaces"),
        ('{"configMap": "k", "x": "' + "y" * 5000 + '"}', "at most"),
        (7, "expected a JSON object"),
    ],
)
def test_a_bad_anchor_annotation_names_itself_and_the_field(value: Any, complaint: str) -> None:
    key = f"{ANCHOR_PREFIX}{OPS}"
    with pytest.raises(AnchorError, match=complaint) as caught:
        parse_anchor(key, value)
    assert key in str(caught.value)


def test_anchors_of_skips_bad_annotations_and_ignores_others() -> None:
    good = anchor_patch(KeyAnchor(OPS, KEY_CM))["metadata"]["annotations"]
    crd = {
        "metadata": {
            "annotations": {
                **good,
                f"{ANCHOR_PREFIX}Not_A_Namespace": '{"configMap": "k"}',
                f"{ANCHOR_PREFIX}broken": "{",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            }
        }
    }
    anchors, skipped = anchors_of(crd)
    assert anchors == [KeyAnchor(OPS, KEY_CM)]
    assert len(skipped) == 2 and all(s.startswith("annotation ") for s in skipped)
    assert anchors_of({}) == ([], [])


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True))
def test_coverage_follows_the_watched_namespaces(namespace: str) -> None:
    assert KeyAnchor(OPS).covers(namespace)  # cluster-wide
    assert KeyAnchor(OPS, KEY_CM, (namespace,)).covers(namespace)
    assert not KeyAnchor(OPS, KEY_CM, (f"{namespace}x",)).covers(namespace)
    assert not KeyAnchor(OPS, KEY_CM, (f"!{namespace}",)).covers(namespace)
    assert KeyAnchor(OPS, KEY_CM, ("*",)).covers(namespace)
    assert anchors_for([KeyAnchor(OPS, KEY_CM, ("zz-none",))], namespace) == (
        [] if namespace != "zz-none" else [KeyAnchor(OPS, KEY_CM, ("zz-none",))]
    )


def test_withdraw_if_unchanged_escapes_the_json_pointer() -> None:
    test, remove = withdraw_if_unchanged(OPS, "v")
    assert test == {
        "op": "test",
        "path": f"/metadata/annotations/ledger-key.runbook-operator.dev~1{OPS}",
        "value": "v",
    }
    assert remove == {"op": "remove", "path": test["path"]}


# -- publishing the anchor (the operator at start-up) -----------------------------------------
def test_publish_writes_the_anchor_and_withdraws_only_vanished_ones() -> None:
    kube = FakeKube()
    kube.publish_key("alive-ops", KEY_CM, Signer.generate())
    kube.anchor(KeyAnchor("alive-ops", KEY_CM))
    kube.anchor(KeyAnchor("gone-ops", KEY_CM))  # its namespace was deleted
    kube.anchor(KeyAnchor("hidden-ops", KEY_CM))
    kube.forbid.add("hidden-ops")  # unreadable: kept
    kube.publish_key(OPS, KEY_CM, OPERATOR)
    assert publish_ledger_anchor(kube, OPS, KEY_CM, ["team-a"]) is True  # type: ignore[arg-type]
    anchors, _ = anchors_of(kube.crd or {})
    assert {a.namespace for a in anchors} == {OPS, "alive-ops", "hidden-ops"}
    assert KeyAnchor(OPS, KEY_CM, ("team-a",)) in anchors
    assert publish_ledger_anchor(kube, OPS, KEY_CM, ["team-a"]) is True  # type: ignore[arg-type]


def test_publish_without_the_right_warns_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    kube.forbid.add(None)
    assert publish_ledger_anchor(kube, OPS, KEY_CM, []) is False  # type: ignore[arg-type]
    assert "--key-namespace runbook-system" in caplog.text
    assert publish_ledger_anchor(kube, OPS, KEY_CM, ["Bad Glob"]) is False  # type: ignore[arg-type]


# -- the command line --------------------------------------------------------------------------
def _ctl(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbookctl.cli", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        timeout=60,
        check=False,
    )


def test_the_anchor_options_are_checked_before_connecting(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    alone = _ctl("verify", "x", "--key-configmap", "k", kubeconfig=missing)
    assert alone.returncode == 2 and "--key-configmap needs --key-namespace" in alone.stderr
    both = _ctl("verify", "x", "--key-namespace", OPS, "--public-key", "p.pem", kubeconfig=missing)
    assert both.returncode == 2 and "not both" in both.stderr
    bad = _ctl("verify", "x", "--key-namespace", "Not_A_Namespace", kubeconfig=missing)
    assert bad.returncode == 2 and "not a namespace name" in bad.stderr
