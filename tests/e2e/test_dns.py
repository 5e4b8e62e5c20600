"""Cluster DNS: pods resolve Service names and reach a Service by its DNS name.

Runs unchanged against the local cluster (CoreDNS on the node, ``kube-dns`` Service, see
docs/cluster.md) and any other cluster with DNS. A NOTIFY step's webhook to an in-cluster
receiver depends on exactly this."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from .conftest import IMAGE, IMAGE_PULL_POLICY, Cluster, wait_for

pytestmark = pytest.mark.e2e

WEB_PORT = 8080
MARKER = "runbook-dns-e2e"

# Serves /tmp/www (an index.html holding the marker) on WEB_PORT.
WEB_SERVER = (
    "import http.server, os, sys\n"
    "os.makedirs('/tmp/www', exist_ok=True)\n"
    "open('/tmp/www/index.html', 'w').write(sys.argv[1])\n"
    "os.chdir('/tmp/www')\n"
    f"http.server.ThreadingHTTPServer(('', {WEB_PORT}), "
    "http.server.SimpleHTTPRequestHandler).serve_forever()\n"
)

# Runs in the client pod: resolves the names, then fetches http://web/ through the Service,
# retrying while the web pod (started at the same time) is not serving yet. Prints one JSON
# line; every check reports its result or its error, so a failure says what went wrong.
DNS_CLIENT = r"""
import json, socket, time, urllib.request

def resolve(name):
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})

def fetch(url, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return {"status": resp.status, "body": resp.read().decode()}
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

def check(fn, *args):
    try:
        return {"ok": fn(*args)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}

report = {
    "resolv_conf": open("/etc/resolv.conf").read(),
    "kubernetes.default.svc": check(resolve, "kubernetes.default.svc"),
    "web": check(resolve, "web"),
    "http://web/": check(fetch, "http://web/", 120),
}
print(json.dumps(report))
"""


def _pod(name: str, command: list[str], labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=1,
            containers=[
                client.V1Container(
                    name="main",
                    image=IMAGE,
                    image_pull_policy=IMAGE_PULL_POLICY,
                    command=command,
                )
            ],
        ),
    )


def _web_service() -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector={"app": "web"},
            ports=[client.V1ServicePort(name="http", port=80, target_port=WEB_PORT)],
        ),
    )


def _finished(core: client.CoreV1Api, name: str, namespace: str) -> str | None:
    phase = core.read_namespaced_pod(name, namespace).status.phase
    return str(phase) if phase in ("Succeeded", "Failed") else None


def _diagnostics(core: client.CoreV1Api, namespace: str) -> str:
    pods = [(p.metadata.name, p.status.phase) for p in core.list_namespaced_pod(namespace).items]
    events = [
        f"{e.involved_object.name}: {e.reason}: {e.message}"
        for e in core.list_namespaced_event(namespace).items
    ]
    return f"pods={pods}; events={events}"


def _run_client(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """Starts the web pod, its Service and the client pod at once; returns the client's report."""
    core = cluster.core
    core.create_namespaced_service(namespace, _web_service())
    core.create_namespaced_pod(
        namespace, _pod("web", ["python3", "-c", WEB_SERVER, MARKER], {"app": "web"})
    )
    core.create_namespaced_pod(namespace, _pod("client", ["python3", "-c", DNS_CLIENT]))
    try:
        phase = wait_for(lambda: _finished(core, "client", namespace), 180, 1, "the client pod")
    except AssertionError:
        raise AssertionError(
            f"client pod did not finish; {_diagnostics(core, namespace)}"
        ) from None
    logs = str(core.read_namespaced_pod_log("client", namespace))
    assert phase == "Succeeded", f"client pod {phase}; logs:\n{logs}"
    report: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
    return report


def test_pod_resolves_services_and_reaches_one_by_name(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    core = cluster.core
    report = _run_client(cluster, namespace)
    kubernetes_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    web_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip

    assert report["kubernetes.default.svc"] == {"ok": [kubernetes_ip]}, report
    assert report["web"] == {"ok": [web_ip]}, report
    assert report["http://web/"] == {"ok": {"status": 200, "body": MARKER}}, report
    # The pod's resolver is the cluster DNS Service, searching its own namespace first.
    dns_ip = core.read_namespaced_service("kube-dns", "kube-system").spec.cluster_ip
    assert f"nameserver {dns_ip}" in report["resolv_conf"], report["resolv_conf"]
    assert f"{namespace}.svc." in report["resolv_conf"], report["resolv_conf"]
