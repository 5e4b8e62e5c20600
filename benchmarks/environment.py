"""The benchmark's cluster: the project's local Kubernetes, with both controllers' CRDs.

Everything is installed by the project's own scripts (cluster-up, build-tools, image), so
`make bench` works on a fresh machine; a second run reuses the caches.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parent.parent
HACK = REPO / "hack" / "cluster"


@dataclass
class BenchEnv:
    api: client.ApiClient
    cluster_dir: Path
    argo_binary: Path

    @property
    def audit_log(self) -> Path:
        return self.cluster_dir / "logs" / "audit.log"

    def kubeconfig(self, identity: str) -> Path:
        return self.cluster_dir / f"{identity}.kubeconfig"


def _sh(*args: str) -> str:
    done = subprocess.run(args, cwd=REPO, text=True, capture_output=True)
    if done.returncode:
        raise SystemExit(f"bench: {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def _apply_crds(api: client.ApiClient, folder: Path) -> None:
    ext = client.ApiextensionsV1Api(api)
    for path in sorted(folder.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        if not body or body.get("kind") != "CustomResourceDefinition":
            continue
        try:
            current = ext.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[union-attr]
            ext.replace_custom_resource_definition(body["metadata"]["name"], body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            ext.create_custom_resource_definition(body)


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})  # type: ignore[arg-type]
    except ApiException as exc:
        if exc.status != 409:
            raise


def prepare() -> BenchEnv:
    """Cluster up (full mode: kubelet and kwok nodes), Argo built, both sets of CRDs applied."""
    _sh("hack/image/build.sh")
    last = _sh("hack/cluster/cluster-up.sh").splitlines()[-1]
    kubeconfig = Path(last.removeprefix("export KUBECONFIG="))
    argo = Path(_sh("hack/cluster/bin-path.sh", "workflow-controller"))
    argo_crds = Path(_sh("hack/cluster/bin-path.sh", "argo-crds"))
    api = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
    _apply_crds(api, REPO / "crds")
    _apply_crds(api, argo_crds)
    ensure_namespace(api, "bench-home")
    try:
        client.CoreV1Api(api).create_namespaced_config_map(
            "bench-home",
            {"metadata": {"name": "workflow-controller-configmap"}},  # type: ignore[arg-type]
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    return BenchEnv(api, kubeconfig.parent, argo)
