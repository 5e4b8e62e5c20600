"""Job, pod and execution objects as the API server returns them (plain dicts) for the
operator's pure modules. Shapes follow batch/v1 Job and v1 Pod status."""

from __future__ import annotations

import copy
from typing import Any

from runbook_operator import names
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import results
from runbook_operator.steps.identity import SERVICE_ACCOUNT_MOUNT

REF = ExecutionRef("ns1", "demo", "0123456789abcdef-uid")
TEMPLATE: dict[str, Any] = {
    "serviceAccountName": "runbook-executor",
    "containers": [
        {
            "name": "step",
            "image": "img:1",
            "command": ["python3", "-m", "runbook_operator.steps.pod"],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
    ],
    "volumes": [{"name": "tmp", "emptyDir": {}}],
}
"""The pod template of the fake Jobs, which their pods run."""


def job_uid(job_name: str) -> str:
    """The uid the apiserver gave Job `job_name` (fixed here, so pods can name it)."""
    return f"job-uid-{job_name}"


def job(
    step: str, attempt: int, *, ref: ExecutionRef = REF, conditions: list[str] = ()
) -> dict[str, Any]:  # type: ignore[assignment]
    name = names.job_name(ref.name, ref.uid, step, attempt)
    return {
        "metadata": {
            "name": name,
            "uid": job_uid(name),
            "labels": names.labels(ref.name, ref.uid, "step", step_id=step, attempt=attempt),
            "ownerReferences": [ref.owner()],
        },
        "spec": {"template": {"spec": copy.deepcopy(TEMPLATE)}},
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


def job_owner(job_name: str) -> dict[str, Any]:
    """The controller reference the Job controller puts on the pods it makes."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job_name,
        "uid": job_uid(job_name),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod(
    step: str,
    attempt: int,
    state: dict[str, Any],
    *,
    ref: ExecutionRef = REF,
    suffix: str = "abcde",
    spec: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A pod the Job controller made for that attempt's Job: its labels plus the Job's own
    controller-uid label and controller reference, running the Job's template (`spec`, else
    TEMPLATE) with the token mount that admission adds."""
    run = copy.deepcopy(spec if spec is not None else TEMPLATE)
    token = {"name": "kube-api-access-x", "mountPath": SERVICE_ACCOUNT_MOUNT, "readOnly": True}
    for container in run["containers"]:
        container["volumeMounts"] = [*container.get("volumeMounts", []), token]
    run["volumes"] = [*run.get("volumes", []), {"name": "kube-api-access-x", "projected": {}}]
    name = names.job_name(ref.name, ref.uid, step, attempt)
    labels = names.labels(ref.name, ref.uid, "step", step_id=step, attempt=attempt)
    return {
        "metadata": {
            "name": f"{name}-{suffix}",
            "labels": {**labels, "batch.kubernetes.io/controller-uid": job_uid(name)},
            "ownerReferences": [job_owner(name)],
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": run,
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
