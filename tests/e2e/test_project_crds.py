"""The project's generated CRDs on a real kube-apiserver: schemas enforced, status kept whole."""

from __future__ import annotations

import json
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

from .conftest import Cluster, apply_project_crds

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VERSION = "v1alpha1"


@pytest.fixture(scope="module")
def project_crds(cluster: Cluster) -> Iterator[None]:
    """Apply crds/*.yaml (create or replace) and wait until they are served."""
    apply_project_crds(cluster)
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


# --- CEL rules: what the apiserver checks at apply time (operator/runbook_operator/crdrules.py)


def _runbook(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{VERSION}",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": {"steps": steps},
    }


def _step(sid: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "actionType": "CUSTOM", "dependsOn": list(deps), **extra}


def _rejection(api: client.CustomObjectsApi, ns: str, plural: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        _create(api, ns, plural, body)
    assert info.value.status == 422, info.value.body
    return str(json.loads(info.value.body)["message"])


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [_step("a"), _step("b"), _step("a")],
            ["spec.steps[2]: Duplicate value", '"id":"a"', "step ids must be unique"],
            id="duplicate-step-id",
        ),
        pytest.param(
            [_step("a"), _step("b", "a", "zz")],
            ["spec.steps[1].dependsOn: unknown step zz"],
            id="unknown-dependency",
        ),
        pytest.param(
            [_step("a"), _step("b", "b")],
            ["spec.steps[1].dependsOn: Invalid value", "step b depends on itself"],
            id="self-dependency",
        ),
        pytest.param(
            [_step("a"), _step("b", "a", "a")],
            ["spec.steps[1].dependsOn[1]: Duplicate value"],
            id="dependency-twice",
        ),
        pytest.param(
            [_step("a", retryPolicy={"backoffSeconds": 10, "maxBackoffSeconds": 5})],
            ["spec.steps[0].retryPolicy.maxBackoffSeconds", "must be >= backoffSeconds"],
            id="cap-below-backoff",
        ),
        pytest.param(
            [_step("a", retryPolicy={"maxBackoffSeconds": 0.5})],
            ["spec.steps[0].retryPolicy.maxBackoffSeconds", "(default 1)"],
            id="cap-below-default-backoff",
        ),
        pytest.param(
            [_step(f"s{i}") for i in range(1001)],
            ["spec.steps: Too many: 1001: must have at most 1000 items"],
            id="too-many-steps",
        ),
    ],
)
def test_runbook_rules_reject_naming_the_field(
    cluster: Cluster,
    namespace: str,
    project_crds: None,
    steps: list[dict[str, Any]],
    expected: list[str],
) -> None:
    api = client.CustomObjectsApi(cluster.api)
    message = _rejection(api, namespace, "runbooks", _runbook("bad", steps))
    for part in expected:
        assert part in message, message


def test_rules_accept_what_they_should(
    cluster: Cluster, namespace: str, project_crds: None
) -> None:
    api = client.CustomObjectsApi(cluster.api)
    ok = [
        _step("a", retryPolicy={"backoffSeconds": 2, "maxBackoffSeconds": 2}),
        _step("b", "a", retryPolicy={"maxBackoffSeconds": 1}),
        _step("c", "b", "a", retryPolicy={"maxAttempts": 3}),
    ]
    assert len(_create(api, namespace, "runbooks", _runbook("fine", ok))["spec"]["steps"]) == 3


def _big_runbook(name: str, n: int = 1000) -> dict[str, Any]:
    """n steps with 63-character ids: a chain, a second parent each, and one step after all."""
    ids = [f"{i:04d}-" + "x" * 58 for i in range(n)]
    steps = [_step(ids[0])]
    steps += [
        _step(ids[i], ids[i - 1], *([ids[i // 2]] if i // 2 != i - 1 else []))
        for i in range(1, n - 1)
    ]
    steps.append(_step(ids[-1], *ids[:-1]))
    return _runbook(name, steps)


def test_a_thousand_step_runbook_is_accepted(
    cluster: Cluster, namespace: str, project_crds: None
) -> None:
    """The rules' runtime cost stays inside the per-call budget at the largest allowed size."""
    api = client.CustomObjectsApi(cluster.api)
    body = _big_runbook("big")
    created = _create(api, namespace, "runbooks", body)
    assert created["spec"]["steps"] == body["spec"]["steps"]
    assert len(created["spec"]["steps"][-1]["dependsOn"]) == 999
    # The same runbook with one unknown dependency at the very end is still checked, not skipped.
    bad = _big_runbook("big-bad")
    bad["spec"]["steps"][-1]["dependsOn"][-1] = "nowhere"
    message = _rejection(api, namespace, "runbooks", bad)
    assert "spec.steps[999].dependsOn: unknown step nowhere" in message, message


def _execution(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{VERSION}",
        "kind": "RunbookExecution",
        "metadata": {"name": name},
        "spec": {"runbookRef": {"name": "demo"}, "input": {"n": 1, "nested": {"k": "v"}}, **spec},
    }


def test_execution_spec_is_immutable_but_paused_and_cancel(
    cluster: Cluster, namespace: str, project_crds: None
) -> None:
    api = client.CustomObjectsApi(cluster.api)
    _create(api, namespace, "runbookexecutions", _execution("imm", tenantId="t1"))

    def patch(spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = api.patch_namespaced_custom_object(
            API_GROUP, VERSION, namespace, "runbookexecutions", "imm", {"spec": spec}
        )
        return result

    refused = [
        ({"input": {"n": 2}}, "spec.input"),
        ({"input": {"nested": {"k": "w"}}}, "spec.input"),
        ({"input": {"extra": True}}, "spec.input"),
        ({"runbookRef": {"name": "other"}}, "spec.runbookRef"),
        ({"tenantId": "t2"}, "spec.tenantId"),
        ({"tenantId": None}, "spec.tenantId"),
        ({"startedBy": "mallory"}, "spec.startedBy"),
        ({"legalBasis": "consent"}, "spec.legalBasis"),
        ({"maxParallelSteps": 3}, "spec.maxParallelSteps"),
    ]
    for change, field in refused:
        with pytest.raises(ApiException) as info:
            patch(change)
        assert info.value.status == 422, change
        message = json.loads(info.value.body)["message"]
        assert f"{field}: Forbidden: {field} is immutable after creation" in message, message

    assert patch({"paused": True})["spec"]["paused"] is True
    assert patch({"paused": False})["spec"]["paused"] is False
    assert patch({"cancel": False})["spec"]["cancel"] is False
    assert patch({"cancel": True})["spec"]["cancel"] is True
    for undo in ({"cancel": False}, {"cancel": None}):
        with pytest.raises(ApiException) as info:
            patch(undo)
        assert info.value.status == 422
        assert "spec.cancel: Forbidden: spec.cancel cannot go back to false" in str(
            json.loads(info.value.body)["message"]
        )
    # Metadata and status stay writable: the rules only guard the spec.
    api.patch_namespaced_custom_object(
        API_GROUP,
        VERSION,
        namespace,
        "runbookexecutions",
        "imm",
        {"metadata": {"labels": {"team": "blue"}}},
    )
    final = api.get_namespaced_custom_object(
        API_GROUP, VERSION, namespace, "runbookexecutions", "imm"
    )
    assert final["spec"]["input"] == {"n": 1, "nested": {"k": "v"}}
    assert final["spec"]["tenantId"] == "t1" and final["spec"]["cancel"] is True


def _table(cluster: Cluster, namespace: str, plural: str) -> dict[str, Any]:
    """`kubectl get <plural>` as the apiserver renders it (the Table the printer columns make)."""
    path = f"/apis/{API_GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    params = cluster.api.param_serialize(
        method="GET",
        resource_path=path,
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    raw = cluster.api.call_api(*params)
    assert raw.status == 200
    response = json.loads(raw.read())
    assert isinstance(response, dict)
    return response


def test_printer_columns(cluster: Cluster, namespace: str, project_crds: None) -> None:
    api = client.CustomObjectsApi(cluster.api)
    runbook = _runbook("cols", [_step("a"), _step("b", "a")])
    runbook["spec"].update(id="cols-id", version="1.2.0")
    _create(api, namespace, "runbooks", runbook)
    api.patch_namespaced_custom_object_status(
        API_GROUP,
        VERSION,
        namespace,
        "runbooks",
        "cols",
        {
            "status": {
                "stepCount": 2,
                "conditions": [
                    {
                        "type": "Valid",
                        "status": "True",
                        "reason": "Valid",
                        "message": "2 step(s)",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        },
    )
    table = _table(cluster, namespace, "runbooks")
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "ID", "Version", "Steps", "Valid", "Age"]
    assert table["rows"][0]["cells"][:5] == ["cols", "cols-id", "1.2.0", 2, "True"]

    _create(api, namespace, "runbookexecutions", _execution("cols-run"))
    api.patch_namespaced_custom_object_status(
        API_GROUP,
        VERSION,
        namespace,
        "runbookexecutions",
        "cols-run",
        {"status": {"phase": "RUNNING", "progress": "3/5"}},
    )
    table = _table(cluster, namespace, "runbookexecutions")
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Runbook", "Phase", "Progress", "Awaiting", "Age"]
    assert table["rows"][0]["cells"][:4] == ["cols-run", "demo", "RUNNING", "3/5"]
