"""What the generated CRDs ask the apiserver to check (the e2e tests run the rules for real)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runbook_engine.model import STEP_ID_PATTERN, RunbookDefinition
from runbook_operator.crd.generate import generate_crds, model_schema
from runbook_operator.crd.rules import (
    MAX_STEPS,
    MUTABLE_EXECUTION_FIELDS,
    STEP_ID_MAX_LENGTH,
    with_rules,
)

REPO = Path(__file__).resolve().parents[3]
CHART_CRDS = REPO / "charts" / "runbook-operator" / "crds"


def spec_schema(name: str) -> dict[str, Any]:
    crd = generate_crds()[name]
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]  # type: ignore[no-any-return]


def test_chart_crds_are_identical_to_crds() -> None:
    top = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in CHART_CRDS.glob("*.yaml")}
    assert top and chart == top


def test_steps_are_a_bounded_list_map_keyed_by_id() -> None:
    steps = spec_schema("runbook-operator.dev_runbooks.yaml")["properties"]["steps"]
    assert steps["x-kubernetes-list-type"] == "map"
    assert steps["x-kubernetes-list-map-keys"] == ["id"]
    assert steps["maxItems"] == MAX_STEPS >= 1000
    item = steps["items"]
    assert "id" in item["required"] and item["properties"]["id"]["maxLength"] == 63
    deps = item["properties"]["dependsOn"]
    assert deps["x-kubernetes-list-type"] == "set"
    assert deps["maxItems"] == MAX_STEPS and deps["items"]["maxLength"] == 63


def test_id_length_bound_is_the_patterns() -> None:
    assert re.fullmatch(STEP_ID_PATTERN, "a" * STEP_ID_MAX_LENGTH)
    assert not re.fullmatch(STEP_ID_PATTERN, "a" * (STEP_ID_MAX_LENGTH + 1))


def test_runbook_rules_name_their_fields() -> None:
    steps = spec_schema("runbook-operator.dev_runbooks.yaml")["properties"]["steps"]
    (known,) = steps["x-kubernetes-validations"]
    assert (
        "transformMapEntry" in known["rule"]
        and "'spec.steps[%d].dependsOn: unknown step %s" in (known["messageExpression"])
    )
    (self_dep,) = steps["items"]["x-kubernetes-validations"]
    assert self_dep["fieldPath"] == ".dependsOn"
    retry = steps["items"]["properties"]["retryPolicy"]
    (cap,) = retry["x-kubernetes-validations"]
    assert cap["fieldPath"] == ".maxBackoffSeconds"
    # CEL must use the model's default when backoffSeconds is left out.
    assert "has(self.backoffSeconds) ? self.backoffSeconds : 1.0" in cap["rule"]


def test_every_execution_field_but_the_controls_is_immutable() -> None:
    spec = spec_schema("runbook-operator.dev_runbookexecutions.yaml")
    rules = spec["x-kubernetes-validations"]
    guarded = {r["fieldPath"][1:] for r in rules if "immutable" in r["message"]}
    assert guarded == set(spec["properties"]) - set(MUTABLE_EXECUTION_FIELDS)
    assert MUTABLE_EXECUTION_FIELDS == ("paused", "cancel")
    for rule in rules:
        name = rule["fieldPath"][1:]
        assert rule["message"].startswith(f"spec.{name} ")
        assert "oldSelf" in rule["rule"]


def test_with_rules_appends_and_leaves_the_input_alone() -> None:
    base = model_schema(RunbookDefinition)
    extra = {"rule": "true", "message": "m"}
    once = with_rules(base, [(("steps",), {"x-kubernetes-validations": [extra]})])
    twice = with_rules(once, [(("steps",), {"x-kubernetes-validations": [extra]})])
    assert "x-kubernetes-validations" not in base["properties"]["steps"]
    assert twice["properties"]["steps"]["x-kubernetes-validations"] == [extra, extra]


def test_printer_columns() -> None:
    crds = generate_crds()
    rb = crds["runbook-operator.dev_runbooks.yaml"]["spec"]["versions"][0]
    rbx = crds["runbook-operator.dev_runbookexecutions.yaml"]["spec"]["versions"][0]
    default = [c["name"] for c in rb["additionalPrinterColumns"] if not c.get("priority")]
    assert default == ["ID", "Version", "Steps", "Valid", "Age"]
    default = [c["name"] for c in rbx["additionalPrinterColumns"] if not c.get("priority")]
    assert default == ["Runbook", "Phase", "Progress", "Awaiting", "Age"]
    rba = crds["runbook-operator.dev_runbookapprovals.yaml"]["spec"]["versions"][0]
    default = [c["name"] for c in rba["additionalPrinterColumns"] if not c.get("priority")]
    assert default == ["Execution", "Step", "Decision", "By", "Verdict", "Age"]
