"""Job, pod and execution objects as the API server returns them (plain dicts) for the
operator's pure modules. Shapes follow batch/v1 Job and v1 Pod status."""

from __future__ import annotations

from typing import Any

from runbook_operator import names
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import results

REF = ExecutionRef("ns1", "demo", "0123456789abcdef-uid")


def job(
    step: str, attempt: int, *, ref: ExecutionRef = REF, conditions: list[str] = ()
) -> dict[str, Any]:  # type: ignore[assignment]
    name = names.job_name(ref.name, ref.uid, step, attempt)
    return {
        "metadata": {
            "name": name,
            "labels": names.labels(ref.name, ref.uid, "step", step_id=step, attempt=attempt),
        },
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


def pod(
    step: str, attempt: int, state: dict[str, Any], *, ref: ExecutionRef = REF, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{names.job_name(ref.name, ref.uid, step, attempt)}-abcde",
            "labels": names.labels(ref.name, ref.uid, "step", step_id=step, attempt=attempt),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"containers": [{"name": "step", "image": "img:1"}]},
        "status": {"containerStatuses": [{"name": "step", "state": state}], **status},
    }


def terminated(
    message: str | None = None, code: int = 0, reason: str = "Completed"
) -> dict[str, Any]:
    out: dict[str, Any] = {"terminated": {"exitCode": code, "reason": reason}}
    if message is not None:
        out["terminated"]["message"] = message
    return out


def pointer_message(pointer: results.Pointer) -> str:
    import json

    return json.dumps(pointer.wire())


def execution(
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    ref: ExecutionRef = REF,
) -> dict[str, Any]:
    return {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "RunbookExecution",
        "metadata": {
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
            "generation": 1,
            "resourceVersion": "1",
            # what the chart's admission policy stamps on every create (docs/security.md)
            "annotations": {
                "runbook-operator.dev/created-by": "alice",
                "runbook-operator.dev/created-by-uid": "u-alice",
                "runbook-operator.dev/created-by-groups": "tenant-a,system:authenticated",
            },
        },
        "spec": {"runbookRef": {"name": "rb"}, **(spec or {})},
        "status": status or {},
    }
