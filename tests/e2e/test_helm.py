"""helm (built from helm.sh/helm/v3 by hack/cluster/build-tools.sh) installs a chart into
the cluster under KUBECONFIG: the path the project's chart tests will take."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import FIXTURES, REPO_ROOT, Cluster

pytestmark = pytest.mark.e2e


def _helm_binary() -> str | None:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    tool = REPO_ROOT / "hack" / "cluster" / "bin-path.sh"
    if shutil.which("go") and os.access(os.environ.get("RUNBOOK_CACHE", "/var/cache"), os.W_OK):
        proc = subprocess.run(
            [str(tool), "helm"], capture_output=True, text=True, check=False, timeout=900
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().splitlines()[-1]
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = _helm_binary()
    if not path or not Path(path).exists():
        pytest.skip("no helm binary (set HELM, or build it: hack/cluster/build-tools.sh helm)")
    return path


def test_helm_installs_a_chart(cluster: Cluster, namespace: str, helm: str) -> None:
    kube = ["--kubeconfig", cluster.kubeconfig] if cluster.kubeconfig else []
    chart = FIXTURES / "hello-chart"
    run = [helm, *kube, "--namespace", namespace]
    subprocess.run(
        [*run, "install", "hello", str(chart), "--set", "greeting=hi-e2e", "--wait"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cm = cluster.core.read_namespaced_config_map("hello-greeting", namespace)
    assert cm.data == {"greeting": "hi-e2e"}
    listed = subprocess.run([*run, "list", "-q"], check=True, capture_output=True, text=True)
    assert listed.stdout.split() == ["hello"]
    subprocess.run([*run, "uninstall", "hello", "--wait"], check=True, capture_output=True)
