"""The operator installed by its Helm chart runs the Rapid Attribution example (issue 7).

Namespaced mode (watchNamespaces = the release namespace), so the chart's operator never
touches what other tests' operators watch.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import IMAGE, REPO_ROOT, Cluster, wait_for
from .operator_env import Runbooks

pytestmark = pytest.mark.e2e
EXAMPLE = REPO_ROOT / "examples" / "rapid-attribution"
CHART = REPO_ROOT / "charts" / "runbook-operator"


def _tool(name: str) -> str:
    out = subprocess.run(
        [str(REPO_ROOT / "hack" / "cluster" / "bin-path.sh"), name],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.fixture
def chart_release(cluster: Cluster, project_crds: None) -> Iterator[str]:
    ns = f"e2e-chart-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    repo, tag = IMAGE.rsplit(":", 1)
    helm = [_tool("helm"), "--kubeconfig", cluster.kubeconfig or "", "-n", ns]
    subprocess.run(
        [
            *helm,
            "install",
            "rbo",
            str(CHART),
            "--skip-crds",
            "--set",
            f"image.repository={repo}",
            "--set",
            f"image.tag={tag}",
            "--set-json",
            f'watchNamespaces=["{ns}"]',
            "--wait",
            "--timeout",
            "180s",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    yield ns
    subprocess.run([*helm, "uninstall", "rbo", "--wait"], check=False, capture_output=True)
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(ns, propagation_policy="Background")


def _apply(cluster: Cluster, ns: str, path: Path) -> dict:  # type: ignore[type-arg]
    body = yaml.safe_load(path.read_text())
    plural = "runbooks" if body["kind"] == "Runbook" else "runbookexecutions"
    return client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(  # type: ignore[no-any-return]
        "runbook-operator.dev", "v1alpha1", ns, plural, body
    )


def test_the_chart_installed_operator_runs_rapid_attribution(
    cluster: Cluster, chart_release: str
) -> None:
    ns = chart_release
    bundle = (EXAMPLE / "stix-bundle.json").read_text()
    cluster.core.create_namespaced_config_map(
        ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="rapid-attribution-files"),
            data={"stix-bundle.json": bundle},
        ),
    )
    _apply(cluster, ns, EXAMPLE / "runbook.yaml")
    created = _apply(cluster, ns, EXAMPLE / "execution.yaml")
    name = created["metadata"]["name"]
    rb = Runbooks(cluster, ns)
    status = rb.wait_phase(name, "COMPLETED", "FAILED", timeout=420)
    assert status["phase"] == "COMPLETED", json.dumps(rb.steps(name), indent=1)
    report = rb.output(name, "generate_report")
    assert "PAPER LANTERN" in report["markdown"]
    assert status["kpis"]["hasAttribution"] is True
    verify = subprocess.run(
        [
            str(Path(sys.executable).parent / "runbookctl"),
            "verify",
            name,
            "-n",
            ns,
            "--kubeconfig",
            cluster.kubeconfig or "",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("OK"), verify.stdout

    def valid() -> bool:
        rbook = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "runbook-operator.dev", "v1alpha1", ns, "runbooks", "rapid-attribution-cti"
        )
        conditions = (rbook.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Valid" and c["status"] == "True" for c in conditions)

    wait_for(valid, 60, 1, "the Runbook's Valid condition")
