"""The checked-in CRDs are generated from the models, structural, and match the status shape."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_engine.model import RunbookDefinition
from runbook_engine.plan import compile_plan
from runbook_engine.scheduler import new_execution
from runbook_operator.apigroup import API_VERSION
from runbook_operator.crd.generate import generate_crds
from runbook_operator.crd.resources import Runbook, RunbookExecution, RunbookExecutionStatus

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_crds_do_not_drift() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "hack" / "gen_crds.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def walk(node: dict[str, Any], path: str = "$") -> list[str]:
    """Every violation of the structural-schema rules the apiserver enforces."""
    problems = []
    for banned in ("$ref", "anyOf", "oneOf", "allOf", "const", "default", "title"):
        if banned in node:
            problems.append(f"{path}: has {banned}")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties")
    for name, child in (node.get("properties") or {}).items():
        problems += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += walk(node["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("name", sorted(generate_crds()))
def test_schemas_are_structural(name: str) -> None:
    crd = generate_crds()[name]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert walk(schema) == []
    spec = schema["properties"]["spec"]
    assert spec["type"] == "object" and spec["properties"]


def test_execution_crd_has_control_fields_and_step_schema() -> None:
    crd = generate_crds()["runbook-operator.dev_runbookexecutions.yaml"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    assert spec["paused"]["type"] == "boolean" and spec["cancel"]["type"] == "boolean"
    assert spec["legalBasis"]["enum"][-1] == "legitimate_interests"
    status = schema["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [
        "PENDING",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]
    assert status["steps"]["items"]["properties"]["status"]["enum"][0] == "PENDING"


def test_engine_wire_state_fits_the_status_model() -> None:
    definition = RunbookDefinition.model_validate(
        {
            "id": "x",
            "steps": [
                {"id": "a", "actionType": "CUSTOM"},
                {"id": "b", "actionType": "CUSTOM", "dependsOn": ["a"]},
            ],
        }
    )
    state = new_execution(compile_plan(definition), "exec-1", datetime(2026, 1, 1, tzinfo=UTC))
    wire = state.to_wire(with_outputs=False)
    status = RunbookExecutionStatus.model_validate(wire)
    assert (
        status.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)["steps"][0][
            "stepId"
        ]
        == "a"
    )


KINDS: dict[str, type[Runbook | RunbookExecution]] = {
    "Runbook": Runbook,
    "RunbookExecution": RunbookExecution,
}
EXAMPLES = sorted((REPO / "examples").rglob("*.yaml"))


def example_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_manifests_validate(path: Path) -> None:
    """Every document in an example is one of our kinds, valid, and of our API version."""
    docs = example_documents(path)
    assert docs, f"{path}: no YAML document"
    for doc in docs:
        kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
        assert kind in KINDS, f"{path}: a {kind!r} document; examples hold {sorted(KINDS)}"
        manifest = KINDS[kind].model_validate(doc)
        assert manifest.api_version == API_VERSION
        assert manifest.metadata.name, f"{path}: a {kind} without metadata.name"


def test_examples_cover_every_kind() -> None:
    """The test above checks something: the examples hold at least one manifest of each kind."""
    kinds = {doc.get("kind") for path in EXAMPLES for doc in example_documents(path)}
    assert kinds == set(KINDS)
