"""The same DAG shape as the operator's Runbook + RunbookExecution and as an Argo Workflow.

Pure builders returning dicts. On kwok nodes nothing runs in the pods: kwok's stages mark them
Succeeded (hack/cluster/kwok/stages.yaml), so what is measured is the controller, not the
container. With `kwok=False` the operator's steps run for real on the kubelet.
"""

from __future__ import annotations

from typing import Any

from .shapes import Shape

GROUP, VERSION = "runbook-operator.dev", "v1alpha1"
KWOK_SELECTOR = {"type": "kwok"}
KWOK_TOLERATIONS = [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]


def _step(step: str, deps: list[str]) -> dict[str, Any]:
    # A TRANSFORM with one constant expression: real work in a real pod, nothing on kwok.
    return {
        "id": step,
        "actionType": "TRANSFORM",
        "dependsOn": deps,
        "config": {"expressions": {"step": f"'{step}'"}},
    }


def runbook(name: str, shape: Shape) -> dict[str, Any]:
    """A Runbook for `shape`; every step may run at once (maxParallelSteps is the most allowed)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": {
            "id": name,
            "maxParallelSteps": 1000,
            "steps": [_step(step, deps) for step, deps in shape.items()],
        },
    }


def execution(name: str, runbook_name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookExecution",
        "metadata": {"name": name},
        "spec": {"runbookRef": {"name": runbook_name}},
    }


def _fan_out_tasks(shape: Shape) -> list[dict[str, Any]] | None:
    """root → N middle → sink written the way Argo users write it: one looped task.

    A DAG task depending on 998 others fails in Argo v4.0.5 ("unable to evaluate expression":
    its dependency expression has one clause per dependency), so the middle steps are one task
    with `withSequence`; its pods are the same N pods, named `m(i:i)` (see `argo_step`).
    """
    middle = [s for s in shape if s.startswith("m")]
    if set(shape) != {"root", "sink", *middle} or shape.get("sink") != middle:
        return None
    loop = {"count": str(len(middle)), "format": "%04d"}
    return [
        {"name": "root", "template": "noop"},
        {"name": "m", "template": "noop", "dependencies": ["root"], "withSequence": loop},
        {"name": "sink", "template": "noop", "dependencies": ["m"]},
    ]


def argo_step(node_name: str) -> str:
    """The shape's step name of an Argo node display name: `s001`, or `m(12:0012)` → `m0012`."""
    task = node_name.rsplit(".", 1)[-1]
    if task.startswith("m(") and ":" in task:
        return "m" + task[task.index(":") + 1 : -1]
    return task


def workflow(name: str, shape: Shape) -> dict[str, Any]:
    """An Argo Workflow with one DAG task per step, its pods placed on the kwok nodes."""
    tasks = _fan_out_tasks(shape) or [
        {"name": step, "template": "noop"} | ({"dependencies": deps} if deps else {})
        for step, deps in shape.items()
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "main",
            "nodeSelector": KWOK_SELECTOR,
            "tolerations": KWOK_TOLERATIONS,
            "templates": [
                {"name": "noop", "container": {"image": "bench-noop:1", "command": ["true"]}},
                {"name": "main", "dag": {"tasks": tasks}},
            ],
        },
    }
