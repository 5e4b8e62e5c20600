"""Fixtures for the end-to-end tests: a real Kubernetes API server and a namespace per test.

Cluster selection (once per session):

1. ``KUBECONFIG`` (or ``~/.kube/config``, or the local cluster's own admin.kubeconfig when
   ``KUBECONFIG`` is unset) points at a reachable cluster: it is used as is (the local
   cluster, kind, anything). Nothing is started or stopped.
2. Otherwise, when the run selects e2e/kwok tests explicitly (``-m e2e``, ``-m "e2e or kwok"``)
   or ``RUNBOOK_E2E_START=1``, the local cluster is started with the same script as
   ``make cluster-up`` (``hack/cluster/cluster-up.sh``; ``RUNBOOK_E2E_KWOK=1`` for kwok mode),
   before the first test so that pytest's per-test timeout does not cover a cold build, and
   brought down again at the end of the session (``RUNBOOK_E2E_KEEP=1`` keeps it).
3. Otherwise the e2e tests are skipped, so a plain ``pytest`` on a laptop stays fast.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_UP = REPO_ROOT / "hack" / "cluster" / "cluster-up.sh"
CLUSTER_DOWN = REPO_ROOT / "hack" / "cluster" / "cluster-down.sh"
LOCAL_KUBECONFIG = (
    Path(os.environ.get("RUNBOOK_CACHE", "/var/cache/runbook-operator"))
    / "cluster"
    / "admin.kubeconfig"
)
"""Where cluster-up.sh writes the local cluster's kubeconfig."""
FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: The project image; ``make image`` builds it and loads it into the local cluster
#: (``make kind-load`` for kind).
IMAGE = os.environ.get("RUNBOOK_E2E_IMAGE", "runbook-operator:dev")
IMAGE_PULL_POLICY = os.environ.get("RUNBOOK_E2E_PULL_POLICY", "IfNotPresent")

KWOK_LABEL = "type=kwok"
KWOK_TOLERATION = {
    "key": "kwok.x-k8s.io/node",
    "operator": "Exists",
    "effect": "NoSchedule",
}


@dataclass
class Cluster:
    kubeconfig: str | None
    api: client.ApiClient
    started_here: bool

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)


_state: dict[str, Any] = {}

LEDGER_ANCHOR_PREFIX = "ledger-key.runbook-operator.dev/"


def keep_ledger_anchors(body: dict[str, Any], current: client.V1CustomResourceDefinition) -> None:
    """Carry the ledger trust anchors (annotations operators write at start-up, docs/audit.md)
    over to a CRD body about to replace `current`, so re-applying crds/ in one test session
    does not take them from the operators of another."""
    anchors = {
        k: v
        for k, v in (current.metadata.annotations or {}).items()
        if k.startswith(LEDGER_ANCHOR_PREFIX)
    }
    if anchors:
        body["metadata"].setdefault("annotations", {}).update(anchors)


def apply_project_crds(cluster: Cluster, only_if_changed: bool = False) -> None:
    """Apply this checkout's crds/ (create, or replace keeping the ledger trust anchors) and
    return once every one is Established *and served*.

    The cluster is shared: another checkout's session may have replaced the CRDs with a schema
    that prunes newer fields, so tests call this again right before they rely on one. A CRD is
    Established a moment before its resource is served; a request in that gap gets 503 "There
    can be a delay..." (or 404), so readiness is a real list call, not the condition alone.
    """
    ext = client.ApiextensionsV1Api(cluster.api)
    plurals: list[tuple[str, str, str]] = []
    for path in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        version = body["spec"]["versions"][0]["name"]
        plurals.append((body["spec"]["group"], version, body["spec"]["names"]["plural"]))
        for _ in range(20):  # conflicts: others' writes (kopf, the trust anchors)
            try:
                current = ext.read_custom_resource_definition(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                try:
                    ext.create_custom_resource_definition(body)
                    break
                except ApiException as made:
                    if made.status != 409:
                        raise
                    continue
            if only_if_changed:
                served = cluster.api.sanitize_for_serialization(current.spec.versions[0].schema)
                if served == body["spec"]["versions"][0]["schema"]:
                    break
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            keep_ledger_anchors(body, current)
            try:
                ext.replace_custom_resource_definition(name, body)
                break
            except ApiException as exc:
                if exc.status != 409:
                    raise
                time.sleep(0.2)

        def established(name: str = name) -> bool:
            crd = ext.read_custom_resource_definition(name)
            return any(
                c.type == "Established" and c.status == "True"
                for c in (crd.status.conditions or [])
            )

        wait_for(established, 60, 0.5, f"CRD {name} Established")

    custom = client.CustomObjectsApi(cluster.api)

    def served() -> bool:
        for group, version, plural in plurals:
            try:
                custom.list_cluster_custom_object(group, version, plural, limit=1)
            except ApiException as exc:
                if exc.status in (404, 503):
                    return False
                raise
        return True

    wait_for(served, 60, 0.3, "the project's resources to be served")


def _try_connect(kubeconfig: str | None) -> client.ApiClient | None:
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        client.VersionApi(api).get_code(_request_timeout=5)
        return api
    except Exception:
        return None


def _wants_start(cfg: pytest.Config) -> bool:
    if os.environ.get("RUNBOOK_E2E_START") == "1":
        return True
    expr = (cfg.getoption("markexpr", default="") or "").replace(" ", "")
    return ("e2e" in expr or "kwok" in expr) and "note2e" not in expr


def _start_local_cluster() -> str:
    env = dict(os.environ)
    if os.environ.get("RUNBOOK_E2E_KWOK") == "1":
        env["KWOK"] = "1"
    proc = subprocess.run(
        [str(CLUSTER_UP)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines or not lines[-1].startswith("export KUBECONFIG="):
        raise RuntimeError(
            f"cluster-up.sh failed (exit {proc.returncode}); see its log output above"
        )
    return lines[-1].split("=", 1)[1].strip()


def _ensure_cluster(cfg: pytest.Config) -> Cluster | str:
    """The session's cluster, or the reason why there is none."""
    if "cluster" in _state:
        return _state["cluster"]  # type: ignore[no-any-return]
    result: Cluster | str
    kubeconfig = os.environ.get("KUBECONFIG") or None
    api = _try_connect(kubeconfig)
    if api is None and kubeconfig is None and LOCAL_KUBECONFIG.exists():
        # The local cluster is up already (`make cluster-up`, or another session's on a shared
        # machine): use it, and never bring it down when this session ends.
        api = _try_connect(str(LOCAL_KUBECONFIG))
        if api is not None:
            kubeconfig = str(LOCAL_KUBECONFIG)
            os.environ["KUBECONFIG"] = kubeconfig
    if api is not None:
        result = Cluster(kubeconfig, api, started_here=False)
    elif not _wants_start(cfg):
        result = "no reachable cluster (set KUBECONFIG, or run with -m e2e / RUNBOOK_E2E_START=1)"
    elif os.geteuid() != 0:
        result = "no reachable cluster and the local one needs root (sudo make cluster-up)"
    else:
        try:
            kubeconfig = _start_local_cluster()
            os.environ["KUBECONFIG"] = kubeconfig
            api = _try_connect(kubeconfig)
            if api is None:
                raise RuntimeError(f"cluster started but {kubeconfig} is not reachable")
            result = Cluster(kubeconfig, api, started_here=True)
        except Exception as exc:  # reported by the fixture, as a failure
            result = f"FAILED: {exc}"
    _state["cluster"] = result
    return result


def pytest_collection_finish(session: pytest.Session) -> None:
    # Start (or find) the cluster before the first test, outside any per-test timeout.
    if any(
        item.get_closest_marker("e2e") or item.get_closest_marker("kwok") for item in session.items
    ):
        _ensure_cluster(session.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    cl = _state.get("cluster")
    if isinstance(cl, Cluster) and cl.started_here and os.environ.get("RUNBOOK_E2E_KEEP") != "1":
        subprocess.run([str(CLUSTER_DOWN)], cwd=REPO_ROOT, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    cl = _ensure_cluster(request.config)
    if isinstance(cl, str):
        if cl.startswith("FAILED"):
            pytest.fail(cl, pytrace=False)
        pytest.skip(cl)
    return cl


def wait_for(predicate: Any, timeout: float, interval: float = 1.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = cluster.core
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"runbook-e2e": "1"}))
    )

    def has_default_sa() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    try:
        wait_for(has_default_sa, 60, 0.5, "the default ServiceAccount")
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise


def _node_ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> str:
    """Name of a Ready node that really runs containers (not a kwok fake node)."""
    for node in cluster.core.list_node().items:
        labels = node.metadata.labels or {}
        if labels.get("type") != "kwok" and _node_ready(node):
            return str(node.metadata.name)
    pytest.skip("the cluster has no real (kubelet) node, e.g. KWOK=1 mode")


@pytest.fixture(scope="session")
def kwok_nodes(cluster: Cluster) -> list[str]:
    """Names of the Ready kwok fake nodes (label type=kwok, tainted kwok.x-k8s.io/node)."""
    nodes = [n for n in cluster.core.list_node(label_selector=KWOK_LABEL).items if _node_ready(n)]
    if not nodes:
        pytest.skip("the cluster has no kwok nodes (start it with hack/cluster/cluster-up.sh)")
    return [str(n.metadata.name) for n in nodes]


# The operator under test and its helpers (imported last: operator_env imports this module).
from .operator_env import (  # noqa: E402, F401
    op_namespace,
    operator,
    own_operator,
    project_crds,
    rb,
)
