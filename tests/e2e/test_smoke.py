"""Smoke tests that prove the cluster under KUBECONFIG can host the operator:
CRDs with schema validation, Jobs running the project image, and in-cluster API access
with a pod's service-account token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import FIXTURES, IMAGE, IMAGE_PULL_POLICY, Cluster, wait_for

pytestmark = pytest.mark.e2e


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture
def widget_crd(cluster: Cluster) -> Any:
    ext = client.ApiextensionsV1Api(cluster.api)
    body = _load(FIXTURES / "widget-crd.yaml")
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(name)
        return any(
            c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
        )

    wait_for(established, 60, 0.5, f"CRD {name} Established")
    yield body
    ext.delete_custom_resource_definition(name)


def _widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "e2e.runbook.test/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_crd_applies_and_schema_is_enforced(
    cluster: Cluster, namespace: str, widget_crd: Any
) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    args = ("e2e.runbook.test", "v1", namespace, "widgets")

    # The CRD may be Established a moment before the new resource is served everywhere.
    def create_valid() -> bool:
        try:
            custom.create_namespaced_custom_object(
                *args, _widget("good", {"size": 3, "color": "red"})
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_for(create_valid, 30, 0.5, "the widgets resource to be served")
    got = custom.get_namespaced_custom_object(*args, "good")
    assert got["spec"] == {"size": 3, "color": "red"}

    for bad_name, bad_spec, needle in [
        ("too-big", {"size": 11, "color": "red"}, "spec.size"),
        ("bad-color", {"size": 1, "color": "purple"}, "spec.color"),
        ("missing", {"size": 1}, "spec.color"),
        ("wrong-type", {"size": "three", "color": "blue"}, "spec.size"),
    ]:
        with pytest.raises(ApiException) as info:
            custom.create_namespaced_custom_object(*args, _widget(bad_name, bad_spec))
        assert info.value.status == 422, info.value.body
        assert needle in info.value.body


def _job(name: str, command: list[str], **pod_spec: Any) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            ttl_seconds_after_finished=600,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        client.V1Container(
                            name="main",
                            image=IMAGE,
                            image_pull_policy=IMAGE_PULL_POLICY,
                            command=command,
                        )
                    ],
                    **pod_spec,
                )
            ),
        ),
    )


def _run_job_and_get_logs(
    cluster: Cluster, namespace: str, job: client.V1Job, timeout: float = 180
) -> str:
    batch, core = cluster.batch, cluster.core
    name = job.metadata.name
    batch.create_namespaced_job(namespace, job)

    def finished() -> str | None:
        status = batch.read_namespaced_job_status(name, namespace).status
        for cond in status.conditions or []:
            if cond.status == "True" and cond.type in ("Complete", "Failed"):
                return str(cond.type)
        return None

    try:
        state = wait_for(finished, timeout, 1, f"Job {name} to finish")
    except AssertionError:
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        events = core.list_namespaced_event(namespace).items
        detail = [(p.metadata.name, p.status.phase, p.status.container_statuses) for p in pods]
        msgs = [f"{e.involved_object.name}: {e.reason}: {e.message}" for e in events]
        raise AssertionError(f"Job {name} did not finish; pods={detail}; events={msgs}") from None
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    assert pods, "the Job has no pod"
    logs = core.read_namespaced_pod_log(pods[0].metadata.name, namespace)
    assert state == "Complete", f"Job {name} failed; logs:\n{logs}"
    return str(logs)


def test_job_with_project_image_completes_and_logs_are_readable(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    script = (
        "import sys, runbook_engine, runbook_executors, kopf, kubernetes; "
        "print('runbook-e2e-ok', sys.version_info[:2], kubernetes.__version__)"
    )
    logs = _run_job_and_get_logs(cluster, namespace, _job("hello", ["python3", "-c", script]))
    assert "runbook-e2e-ok" in logs


# Runs inside the pod: authenticates to the API server through the `kubernetes` Service
# with the pod's projected service-account token and reports who it is.
IN_POD_CLIENT = r"""
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
token = open(f"{sa}/token").read().strip()
ns = open(f"{sa}/namespace").read().strip()
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
def call(method, path, body=None):
    req = urllib.request.Request(f"https://{host}:{port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return resp.status, json.load(resp)
status, review = call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
print(json.dumps({"host": host, "port": port, "namespace": ns, "status": status,
                  "username": review["status"]["userInfo"]["username"]}))
"""


def test_pod_reaches_api_with_service_account_token(
    cluster: Cluster, namespace: str, real_node: str
) -> None:
    logs = _run_job_and_get_logs(
        cluster, namespace, _job("whoami", ["python3", "-c", IN_POD_CLIENT])
    )
    report = json.loads(logs.strip().splitlines()[-1])
    svc = cluster.core.read_namespaced_service("kubernetes", "default")
    assert report["host"] == svc.spec.cluster_ip, (
        "pods must reach the API via the kubernetes Service"
    )
    assert report["status"] == 201
    assert report["namespace"] == namespace
    assert report["username"] == f"system:serviceaccount:{namespace}:default"
