"""Generate the CRDs from the pydantic models: JSON Schema → structural OpenAPI v3.

Kubernetes wants *structural* schemas: every node typed, no $ref, no type inside anyOf, maps of
free-form JSON marked `x-kubernetes-preserve-unknown-fields`. Pure: returns dicts; the writer is
`hack/gen_crds.py` and `tests/unit/test_crds.py` fails if the checked-in files drift.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from runbook_engine.model import ExecutionRequest, RunbookDefinition
from runbook_operator.apigroup import API_GROUP, API_VERSION_NAME
from runbook_operator.crd.resources import (
    RunbookApprovalSpec,
    RunbookApprovalStatus,
    RunbookExecutionStatus,
    RunbookStatus,
)
from runbook_operator.crd.rules import RUNBOOK_SPEC_RULES, execution_spec_rules, with_rules
from runbook_operator.triggers.model import SOURCE_RULE, RunbookTriggerSpec, RunbookTriggerStatus

_KEEP = {
    "type",
    "properties",
    "items",
    "required",
    "description",
    "enum",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return node


def structural(node: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    if not isinstance(node, dict) or not node:
        return {"x-kubernetes-preserve-unknown-fields": True}
    description = node.get("description")
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [_resolve(o, defs) for o in node[key]]
            non_null = [o for o in options if o.get("type") != "null"]
            nullable = len(non_null) != len(options)
            choice: dict[str, Any]
            if len(non_null) == 1:
                choice = structural(non_null[0], defs)
            elif all(o.get("type") in ("integer", "number") for o in non_null):
                choice = {"type": "number"}
            else:
                choice = {"x-kubernetes-preserve-unknown-fields": True}
            if nullable:
                choice["nullable"] = True
            if description and "description" not in choice:
                choice["description"] = description
            return choice
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return structural({**_resolve(node["allOf"][0], defs), **rest}, defs)
    out: dict[str, Any] = {}
    kind = node.get("type")
    if "const" in node:
        out["type"] = "string"
        out["enum"] = [node["const"]]
    elif kind is None and "enum" in node:
        out["type"] = "string"
    elif kind is None:
        return {
            "x-kubernetes-preserve-unknown-fields": True,
            **({"description": description} if description else {}),
        }
    else:
        out["type"] = kind
    for key, value in node.items():
        if key not in _KEEP or key in ("type", "properties", "items", "additionalProperties"):
            continue
        out[key] = value
    if "exclusiveMinimum" in node:
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if kind == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props:
            out["properties"] = {k: structural(v, defs) for k, v in props.items()}
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra, defs)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    if kind == "array":
        out["items"] = structural(node.get("items", {}), defs)
    return out


def model_schema(model: type[BaseModel], *, drop_required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    out = structural(schema, defs)
    if drop_required and "required" in out:
        out["required"] = [r for r in out["required"] if r not in drop_required]
        if not out["required"]:
            del out["required"]
    return out


def _crd(
    kind: str,
    plural: str,
    short: list[str],
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{API_GROUP}",
            "labels": {
                "app.kubernetes.io/name": "runbook-operator",
                "app.kubernetes.io/part-of": "runbook-operator",
            },
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["runbooks"],
            },
            "versions": [
                {
                    "name": API_VERSION_NAME,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"{kind} (generated from the pydantic models by hack/gen_crds.py; do not edit)",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def generate_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD object."""
    runbook = _crd(
        "Runbook",
        "runbooks",
        ["rb"],
        with_rules(model_schema(RunbookDefinition, drop_required=("id",)), RUNBOOK_SPEC_RULES),
        model_schema(RunbookStatus),
        [
            {"name": "ID", "type": "string", "jsonPath": ".spec.id"},
            {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
            {"name": "Steps", "type": "integer", "jsonPath": ".status.stepCount"},
            {
                "name": "Valid",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Valid")].status',
            },
            {
                "name": "Message",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Valid")].message',
                "priority": 1,
            },
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )
    execution_spec = model_schema(ExecutionRequest)
    execution_spec["x-kubernetes-validations"] = execution_spec_rules(execution_spec)
    execution = _crd(
        "RunbookExecution",
        "runbookexecutions",
        ["rbx"],
        execution_spec,
        model_schema(RunbookExecutionStatus),
        [
            {"name": "Runbook", "type": "string", "jsonPath": ".spec.runbookRef.name"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            {"name": "Awaiting", "type": "string", "jsonPath": ".status.awaitingApproval"},
            {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
            {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )
    trigger_spec = model_schema(RunbookTriggerSpec)
    trigger_spec["x-kubernetes-validations"] = [SOURCE_RULE]
    trigger = _crd(
        "RunbookTrigger",
        "runbooktriggers",
        ["rbt"],
        trigger_spec,
        model_schema(RunbookTriggerStatus),
        [
            {"name": "Runbook", "type": "string", "jsonPath": ".spec.runbookRef.name"},
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule.cron"},
            {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
            {"name": "Active", "type": "integer", "jsonPath": ".status.activeCount"},
            {"name": "Last", "type": "date", "jsonPath": ".status.lastTriggered"},
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
            {"name": "Next", "type": "string", "jsonPath": ".status.nextFire", "priority": 1},
            {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )
    approval_spec = model_schema(RunbookApprovalSpec)
    approval_spec["x-kubernetes-validations"] = [
        {"rule": "self == oldSelf", "message": "a decision cannot be changed: create another"}
    ]
    by = API_GROUP.replace(".", "\\.")
    approval = _crd(
        "RunbookApproval",
        "runbookapprovals",
        ["rba"],
        approval_spec,
        model_schema(RunbookApprovalStatus),
        [
            {"name": "Execution", "type": "string", "jsonPath": ".spec.executionRef.name"},
            {"name": "Step", "type": "string", "jsonPath": ".spec.stepId"},
            {"name": "Decision", "type": "string", "jsonPath": ".spec.decision"},
            {
                "name": "By",
                "type": "string",
                "jsonPath": f".metadata.annotations.{by}/created-by",
            },
            {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
            {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )
    return {
        "runbook-operator.dev_runbooks.yaml": runbook,
        "runbook-operator.dev_runbookexecutions.yaml": execution,
        "runbook-operator.dev_runbooktriggers.yaml": trigger,
        "runbook-operator.dev_runbookapprovals.yaml": approval,
    }
