"""The project's generated CRDs on a real kube-apiserver: schemas enforced, status kept whole."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from runbook_engine.model import RunbookDefinition
from runbook_engine.plan import compile_plan
from runbook_engine.scheduler import new_execution
from runbook_operator.apigroup import API_GROUP

from .conftest import Cluster, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VERSION = "v1alpha1"


@pytest.fixture(scope="module")
def project_crds(cluster: Cluster) -> Iterator[None]:
    """Apply crds/*.yaml (create or replace) and wait until both are Established."""
    ext = client.ApiextensionsV1Api(cluster.api)
    names = []
    for path in sorted((REPO / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        names.append(body["metadata"]["name"])
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(body["metadata"]["name"], body)

    def established() -> bool:
        for name in names:
            crd = ext.read_custom_resource_definition(name)
            if not any(
                c.type == "Established" and c.status == "True"
                for c in (crd.status.conditions or [])
            ):
                return False
        return True

    wait_for(established, 60, 0.5, "project CRDs Established")
    yield


def _objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def _create(
    api: client.CustomObjectsApi, ns: str, plural: str, body: dict[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = api.create_namespaced_custom_object(
        API_GROUP, VERSION, ns, plural, body
    )
    return result


def test_examples_are_accepted(cluster: Cluster, namespace: str, project_crds: None) -> None:
    api = client.CustomObjectsApi(cluster.api)
    runbook = _objects(REPO / "examples" / "rapid-attribution" / "runbook.yaml")[0]
    created = _create(api, namespace, "runbooks", runbook)
    # Nothing the model declares was pruned by the apiserver.
    assert created["spec"]["steps"] == runbook["spec"]["steps"]
    execution = _objects(REPO / "examples" / "rapid-attribution" / "execution.yaml")[0]
    created = _create(api, namespace, "runbookexecutions", execution)
    assert created["spec"]["input"] == execution["spec"]["input"]
    generic = _objects(REPO / "examples" / "generic" / "runbook.yaml")[0]
    assert _create(api, namespace, "runbooks", generic)["spec"]["steps"] == generic["spec"]["steps"]


@pytest.mark.parametrize(
    ("plural", "spec", "field"),
    [
        (
            "runbookexecutions",
            {"runbookRef": {"name": "x"}, "legalBasis": "because"},
            "spec.legalBasis",
        ),
        ("runbookexecutions", {"input": {}}, "spec.runbookRef"),
        ("runbookexecutions", {"runbookRef": {"name": "x"}, "paused": "yes"}, "spec.paused"),
        (
            "runbooks",
            {"steps": [{"id": "a", "actionType": "CUSTOM", "retryPolicy": {"maxAttempts": 0}}]},
            "spec.steps[0].retryPolicy.maxAttempts",
        ),
        (
            "runbooks",
            {"steps": [{"id": "a", "actionType": "lower_case"}]},
            "spec.steps[0].actionType",
        ),
        (
            "runbooks",
            {"steps": [{"id": "a", "actionType": "CUSTOM", "timeoutMs": 0}]},
            "spec.steps[0].timeoutMs",
        ),
    ],
)
def test_schema_violations_are_rejected_naming_the_field(
    cluster: Cluster,
    namespace: str,
    project_crds: None,
    plural: str,
    spec: dict[str, Any],
    field: str,
) -> None:
    api = client.CustomObjectsApi(cluster.api)
    kind = "Runbook" if plural == "runbooks" else "RunbookExecution"
    body = {
        "apiVersion": f"{API_GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    with pytest.raises(ApiException) as info:
        _create(api, namespace, plural, body)
    assert info.value.status == 422
    assert field in str(info.value.body)


def test_engine_status_survives_the_status_subresource(
    cluster: Cluster, namespace: str, project_crds: None
) -> None:
    """What the scheduler writes is kept whole (no silent pruning: kopf#574), via /status only."""
    api = client.CustomObjectsApi(cluster.api)
    body = {
        "apiVersion": f"{API_GROUP}/{VERSION}",
        "kind": "RunbookExecution",
        "metadata": {"name": "status-check"},
        "spec": {"runbookRef": {"name": "demo"}, "input": {"n": 1}},
    }
    _create(api, namespace, "runbookexecutions", body)
    definition = RunbookDefinition.model_validate(
        {
            "id": "demo",
            "steps": [
                {"id": "a", "actionType": "CUSTOM"},
                {"id": "b", "actionType": "CUSTOM", "dependsOn": ["a"]},
            ],
        }
    )
    status = new_execution(
        compile_plan(definition), "exec-1", datetime(2026, 1, 1, tzinfo=UTC)
    ).to_wire(with_outputs=False)
    status["kpis"] = {"confidenceScore": 0.75, "hasAttribution": True, "label": "x"}
    status["conditions"] = [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Running",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
    ]
    status["audit"] = {
        "count": 1,
        "head": "a" * 64,
        "recent": [{"seq": 0, "eventType": "EXECUTION_STARTED"}],
    }
    patched = api.patch_namespaced_custom_object_status(
        API_GROUP, VERSION, namespace, "runbookexecutions", "status-check", {"status": status}
    )
    assert patched["status"] == status
    # Writing spec through the main resource must not touch status.
    obj = api.get_namespaced_custom_object(
        API_GROUP, VERSION, namespace, "runbookexecutions", "status-check"
    )
    obj["spec"]["paused"] = True
    obj["status"] = {"phase": "COMPLETED"}
    replaced = api.replace_namespaced_custom_object(
        API_GROUP, VERSION, namespace, "runbookexecutions", "status-check", obj
    )
    assert replaced["spec"]["paused"] is True
    assert replaced["status"]["phase"] == "PENDING"
