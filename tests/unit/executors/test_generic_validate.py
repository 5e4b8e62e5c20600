"""VALIDATE: JSON Schema 2020-12 with formats, targets, the reference's rules, every violation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic.validate import ValidateStepExecutor

MakeCtx = Callable[..., StepExecutorContext]
RunStep = Callable[[BaseStepExecutor, StepExecutorContext], StepExecutorResult]
Run = Callable[..., StepExecutorResult]

INDICATOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "input": {
            "type": "object",
            "required": ["caseId", "indicators", "contact"],
            "properties": {
                "caseId": {"type": "string", "pattern": "^CASE-"},
                "indicators": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "contact": {"type": "string", "format": "email"},
            },
        }
    },
}


@pytest.fixture
def run(run_step: RunStep, make_ctx: MakeCtx) -> Run:
    """Run VALIDATE with `config` over a context built from keywords."""

    def go(config: dict[str, Any], **kw: Any) -> StepExecutorResult:
        return run_step(ValidateStepExecutor(), make_ctx("VALIDATE", config=config, **kw))

    return go


def test_valid_document_passes_with_kpis_and_evidence(run: Run) -> None:
    good = {"caseId": "CASE-1", "indicators": ["1.2.3.4"], "contact": "a@example.org"}
    result = run({"schema": INDICATOR_SCHEMA}, input=good)
    assert result.success, result.error
    assert result.output == {"valid": True, "violations": []}
    assert result.kpis["violationCount"] == 0
    (evidence,) = result.evidence
    assert evidence.type == "validation"
    assert evidence.data["valid"] is True and evidence.data["stepId"] == "step-1"
    # same step, same verdict: same id; another step: another id
    again = run({"schema": INDICATOR_SCHEMA}, input=good)
    other = run({"schema": INDICATOR_SCHEMA}, input=good, step_id="step-2")
    assert again.evidence[0].id == evidence.id != other.evidence[0].id


def test_every_violation_is_listed(run: Run) -> None:
    result = run(
        {"schema": INDICATOR_SCHEMA},
        input={"caseId": "X-1", "indicators": [1, "ok", 2], "contact": "not-an-email"},
    )
    assert not result.success
    violations = result.output["violations"]
    paths = sorted((v["path"], v["keyword"]) for v in violations)
    assert paths == [
        ("input.caseId", "pattern"),
        ("input.contact", "format"),
        ("input.indicators.0", "type"),
        ("input.indicators.2", "type"),
    ]
    assert all(v["source"] == "schema" for v in violations)
    assert result.output["valid"] is False
    assert result.kpis["violationCount"] == 4
    error = result.error or ""
    assert error.startswith("validation failed with 4 violations: ")
    assert "(and 1 more)" in error
    # the summary quotes the first three in the (sorted) output order
    for v in violations[:3]:
        assert v["path"] in error
    assert violations[3]["message"] not in error


def test_missing_required_properties_all_reported(run: Run) -> None:
    result = run({"schema": INDICATOR_SCHEMA}, input={})
    messages = sorted(v["message"] for v in result.output["violations"])
    assert messages == [
        "'caseId' is a required property",
        "'contact' is a required property",
        "'indicators' is a required property",
    ]
    assert {v["path"] for v in result.output["violations"]} == {"input"}


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("ipv4", "10.0.0.1", "10.0.0.256"),
        ("email", "a@b.example", "nobody"),
        ("date-time", "2024-01-15T10:00:00Z", "2024-13-15T10:00:00Z"),
        ("date-time", "2024-01-15T10:00:00.5+02:00", "2024-01-15 10:00"),
        ("date", "2024-02-29", "2023-02-29"),
        ("uuid", "12345678-1234-5678-1234-567812345678", "1234"),
    ],
)
def test_formats_are_checked(run: Run, fmt: Any, good: Any, bad: Any) -> None:
    schema = {"properties": {"input": {"properties": {"v": {"type": "string", "format": fmt}}}}}
    assert run({"schema": schema}, input={"v": good}).success
    bad_result = run({"schema": schema}, input={"v": bad})
    assert not bad_result.success
    assert bad_result.output["violations"][0]["keyword"] == "format"


def test_target_jmespath_selects_upstream_output(run: Run) -> None:
    outputs = {"ingest": {"indicators": [{"value": "1.2.3.4"}, {"value": 7}]}}
    schema = {"type": "array", "items": {"properties": {"value": {"type": "string"}}}}
    result = run(
        {"schema": schema, "target": "outputs.ingest.indicators"},
        previous_outputs=outputs,
    )
    assert not result.success
    assert result.output["violations"] == [
        {
            "source": "schema",
            "path": "outputs.ingest.indicators.1.value",
            "keyword": "type",
            "message": "7 is not of type 'string'",
        }
    ]


def test_target_jmespath_projection(run: Run) -> None:
    outputs = {"ingest": {"indicators": [{"value": "a"}, {"value": "b"}]}}
    schema = {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2}
    config = {"schema": schema, "target": "outputs.ingest.indicators[*].value"}
    assert run(config, previous_outputs=outputs).success


def test_target_dotted_path_for_step_ids_jmespath_cannot_spell(run: Run) -> None:
    outputs = {"ingest-1": {"items": [{"score": "high"}]}}
    config = {"schema": {"type": "integer"}, "target": "outputs.ingest-1.items.0.score"}
    result = run(config, previous_outputs=outputs)
    assert not result.success
    assert result.output["violations"][0]["path"] == "outputs.ingest-1.items.0.score"


def test_missing_target_is_validated_as_null(run: Run) -> None:
    result = run({"schema": {"type": "object"}, "target": "outputs.none.x"})
    assert not result.success
    assert result.output["violations"][0]["message"] == "None is not of type 'object'"
    assert run({"schema": {"type": "null"}, "target": "outputs.none.x"}).success


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "objekt"}, "config.schema.type"),
        ({"properties": {"a": {"minLength": -1}}}, "config.schema.properties.a.minLength"),
        ({"required": "a"}, "config.schema.required"),
    ],
)
def test_invalid_schema_names_field_and_reason(run: Run, schema: Any, where: Any) -> None:
    result = run({"schema": schema})
    assert not result.success
    assert (result.error or "").startswith(f"{where}: invalid JSON Schema: ")
    assert result.output == {}


@pytest.mark.parametrize("ref", ["http://127.0.0.1:9/remote.json", "#/$defs/nowhere"])
def test_unresolvable_ref_is_a_config_error(run: Run, ref: Any) -> None:
    result = run({"schema": {"$ref": ref}})
    assert not result.success
    assert (result.error or "").startswith("config.schema: unresolvable $ref: ")


def test_local_refs_resolve(run: Run) -> None:
    schema = {
        "$defs": {"ip": {"type": "string", "format": "ipv4"}},
        "properties": {"input": {"properties": {"ip": {"$ref": "#/$defs/ip"}}}},
    }
    assert run({"schema": schema}, input={"ip": "10.0.0.1"}).success
    assert not run({"schema": schema}, input={"ip": "10.0.0.999"}).success


def test_huge_integers_in_schema_still_hash(run: Run) -> None:
    assert run({"schema": {"type": "object", "maximum": 2**60}}).success


def test_schema_must_be_object(run: Run) -> None:
    result = run({"schema": "string"})
    assert result.error == "config.schema: expected an object, got string"


def test_target_without_schema_is_an_error(run: Run) -> None:
    result = run({"rules": [{"field": "input.a"}], "target": "input"})
    assert result.error == "config.target: only used with 'schema'"


def test_neither_schema_nor_rules(run: Run) -> None:
    assert run({}).error == "config: VALIDATE needs 'schema' and/or 'rules'"


# -- rules ---------------------------------------------------------------------------------------
def test_rules_report_each_violation(run: Run) -> None:
    rules = [
        {"field": "input.caseId", "required": True},
        {"field": "input.indicators", "required": True, "minLength": 2},
        {"field": "outputs.enrich.report", "hasProperty": "summary"},
        {"field": "input.optional", "minLength": 5},  # absent and not required: fine
        {"field": "input.title", "minLength": 3},
    ]
    result = run(
        {"rules": rules},
        input={"caseId": None, "indicators": ["x"], "title": "abc"},
        previous_outputs={"enrich": {"report": {"body": "..."}}},
    )
    assert not result.success
    assert result.output["violations"] == [
        {
            "source": "rule",
            "path": "input.caseId",
            "keyword": "required",
            "message": "is required but null",
        },
        {
            "source": "rule",
            "path": "input.indicators",
            "keyword": "minLength",
            "message": "length 1 is less than minimum 2",
        },
        {
            "source": "rule",
            "path": "outputs.enrich.report",
            "keyword": "hasProperty",
            "message": "has no property 'summary'",
        },
    ]
    assert result.kpis == {"violationCount": 3, "rulesChecked": 5}


def test_rules_all_passing(run: Run) -> None:
    rules = [
        {"field": "input.indicators[1]", "required": True, "minLength": 3},
        {"field": "outputs.enrich.report", "required": True, "hasProperty": "summary"},
    ]
    result = run(
        {"rules": rules},
        input={"indicators": ["a", "bcd"]},
        previous_outputs={"enrich": {"report": {"summary": "s"}}},
    )
    assert result.success, result.error


def test_rule_type_mismatches(run: Run) -> None:
    rules = [
        {"field": "input.n", "minLength": 1},
        {"field": "input.n", "hasProperty": "x"},
        {"field": "input.missing", "required": True},
    ]
    result = run({"rules": rules}, input={"n": 5})
    assert [v["message"] for v in result.output["violations"]] == [
        "has no length (number)",
        "is number, not an object with 'x'",
        "is required but missing",
    ]


def test_schema_and_rules_combine(run: Run) -> None:
    config = {
        "schema": {"properties": {"input": {"required": ["a"]}}},
        "rules": [{"field": "input.b", "required": True}],
    }
    result = run(config, input={})
    assert [v["source"] for v in result.output["violations"]] == ["schema", "rule"]
    assert result.error is not None and result.error.startswith("validation failed with 2 ")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("x", "config.rules: expected a list, got string"),
        ([3], "config.rules[0]: expected an object, got number"),
        ([{"field": "a", "minlength": 1}], "config.rules[0]: unknown key(s) minlength"),
        ([{"required": True}], "config.rules[0].field: expected a non-empty dotted path"),
        ([{"field": "a", "minLength": -1}], "config.rules[0].minLength: expected a non-negative"),
        ([{"field": "a", "minLength": True}], "config.rules[0].minLength: expected a non-negative"),
        ([{"field": "a", "required": "yes"}], "config.rules[0].required: expected true or false"),
        ([{"field": "a..b"}], "config.rules[0].field: malformed path"),
        ([{"field": "a", "hasProperty": ""}], "config.rules[0].hasProperty: expected a property"),
    ],
)
def test_bad_rules_config(run: Run, rules: Any, message: Any) -> None:
    result = run({"rules": rules})
    assert not result.success
    assert (result.error or "").startswith(message)


def test_violation_order_does_not_depend_on_key_order(run: Run) -> None:
    schema = {"properties": {"input": {"additionalProperties": {"type": "integer"}}}}
    forward = {f"k{i}": "s" for i in range(6)}
    backward = dict(reversed(list(forward.items())))
    a = run({"schema": schema}, input=forward)
    b = run({"schema": schema}, input=backward)
    assert a.output == b.output
    assert a.error == b.error
    assert [e.hash for e in a.evidence] == [e.hash for e in b.evidence]


def test_huge_instance_message_is_truncated(run: Run) -> None:
    result = run({"schema": {"type": "string"}, "target": "input"}, input={"x": "y" * 5000})
    message = result.output["violations"][0]["message"]
    assert len(message) <= 300 and message.endswith("…")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.text(max_size=4), max_size=6),
    minimum=st.integers(min_value=0, max_value=8),
)
def test_min_length_rule_matches_len(run: Run, values: Any, minimum: Any) -> None:
    result = run(
        {"rules": [{"field": "input.v", "minLength": minimum}]},
        input={"v": values},
    )
    assert result.success == (len(values) >= minimum)
    assert result.kpis["violationCount"] == (0 if len(values) >= minimum else 1)
