"""TRANSFORM: JMESPath expressions and the reference's passthrough/flatten/extract/aggregate."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic.transform import (
    TransformDataError,
    TransformStepExecutor,
    flatten,
    flatten_list,
    unflatten,
)

MakeCtx = Callable[..., StepExecutorContext]
RunStep = Callable[[BaseStepExecutor, StepExecutorContext], StepExecutorResult]
Run = Callable[..., StepExecutorResult]

INDICATORS = [
    {"type": "ip", "value": "1.2.3.4", "score": 80, "meta": {"tlp": "amber"}},
    {"type": "domain", "value": "evil.example", "score": 40},
    {"type": "ip", "value": "5.6.7.8", "score": 10},
    {"value": "untyped", "score": None},
]


@pytest.fixture
def run(run_step: RunStep, make_ctx: MakeCtx) -> Run:
    """Run TRANSFORM with `config` over a context built from keywords."""

    def go(config: dict[str, Any], **kw: Any) -> StepExecutorResult:
        return run_step(TransformStepExecutor(), make_ctx("TRANSFORM", config=config, **kw))

    return go


# -- expressions ---------------------------------------------------------------------------------
def test_expressions_over_input_and_outputs(run: Run) -> None:
    config = {
        "expressions": {
            "case": "input.caseId",
            "ips": "outputs.ingest.indicators[?type=='ip'].value",
            "highest": "max_by(outputs.ingest.indicators[?score], &score).value",
            "count": "length(outputs.ingest.indicators)",
            "absent": "input.nothing",
        }
    }
    result = run(
        config, input={"caseId": "CASE-9"}, previous_outputs={"ingest": {"indicators": INDICATORS}}
    )
    assert result.success, result.error
    assert result.output == {
        "case": "CASE-9",
        "ips": ["1.2.3.4", "5.6.7.8"],
        "highest": "1.2.3.4",
        "count": 4,
        "absent": None,
    }
    assert result.kpis["outputSize"] == len(json.dumps(result.output, separators=(",", ":")))


def test_invalid_expression_names_key(run: Run) -> None:
    result = run({"expressions": {"good": "input", "bad": "input.[?"}})
    assert not result.success
    assert (result.error or "").startswith("config.expressions.bad: invalid JMESPath 'input.[?'")


def test_expression_runtime_error_names_key(run: Run) -> None:
    result = run({"expressions": {"n": "length(input.number)"}}, input={"number": 3})
    assert not result.success
    assert (result.error or "").startswith("config.expressions.n: evaluation failed")


@pytest.mark.parametrize("value", [{}, [], "input", {"k": 3}, {"k": ""}])
def test_expressions_config_shape(run: Run, value: Any) -> None:
    result = run({"expressions": value})
    assert not result.success
    assert (result.error or "").startswith("config.expressions")


# -- passthrough ---------------------------------------------------------------------------------
def test_default_is_passthrough_of_the_input_only(run: Run) -> None:
    outputs = {"a": {"x": 1}}
    result = run({}, input={"i": 1}, previous_outputs=outputs)
    assert result.output == {"transformType": "passthrough", "transformedData": {"i": 1}}
    # the reference's size KPIs: compact JSON length of what was read and what was produced
    assert result.kpis["inputSize"] == len('{"i":1}')
    assert result.kpis["outputSize"] == len(
        '{"transformType":"passthrough","transformedData":{"i":1}}'
    )


def test_a_chain_of_default_transforms_does_not_grow(run: Run) -> None:
    """Each step's output used to embed every upstream output: n=20 gave 51.6 MB."""
    previous: dict[str, dict[str, object]] = {}
    sizes = []
    for i in range(20):
        result = run({}, input={"seed": "x" * 100}, previous_outputs=previous)
        sizes.append(result.kpis["outputSize"])
        previous = {**previous, f"s{i}": result.output}
    assert len(set(sizes)) == 1


def test_passthrough_source_and_output_key(run: Run) -> None:
    result = run(
        {"transformType": "passthrough", "source": "outputs.a.x", "outputKey": "copy"},
        previous_outputs={"a": {"x": [1, 2]}},
    )
    assert result.output == {"transformType": "passthrough", "copy": [1, 2]}


def test_reference_input_path_uses_nearest_upstream_key(run: Run) -> None:
    outputs = {"first": {"items": [1]}, "second": {"items": [2]}}
    result = run({"transformType": "passthrough", "inputPath": "items"}, previous_outputs=outputs)
    assert result.output["transformedData"] == [2]
    missing = run({"inputPath": "nope", "transformType": "passthrough"}, previous_outputs=outputs)
    assert missing.error == "config.inputPath: no upstream output has key 'nope'"


def test_source_selecting_nothing_is_an_error(run: Run) -> None:
    result = run({"transformType": "flatten", "source": "outputs.ghost"})
    assert result.error == "config.source: 'outputs.ghost' selects nothing in the document"


def test_expressions_and_transform_combine_and_clash(run: Run) -> None:
    ok = run({"expressions": {"n": "input.n"}, "transformType": "passthrough"}, input={"n": 1})
    assert ok.output["n"] == 1 and ok.output["transformType"] == "passthrough"
    clash = run({"expressions": {"transformedData": "input"}, "transformType": "passthrough"})
    assert not clash.success and "clash" in (clash.error or "")


@pytest.mark.parametrize("key", ["source", "inputPath", "outputKey"])
def test_transform_keys_without_transform_type_are_errors(run: Run, key: str) -> None:
    result = run({"expressions": {"a": "input"}, key: "x"})
    assert (result.error or "").startswith(f"config.{key}: only used with 'transformType'")


def test_unknown_transform_type(run: Run) -> None:
    result = run({"transformType": "explode"})
    assert result.error is not None
    assert result.error.startswith("config.transformType: unknown 'explode'")


# -- flatten / unflatten ---------------------------------------------------------------------------
def test_flatten_nested_source(run: Run) -> None:
    source = {"a": {"b": 1, "c": {"d": [1, {"e": 2}]}}, "empty": {}, "z": None}
    result = run({"transformType": "flatten", "source": "input"}, input=source)
    assert result.output["transformedData"] == {
        "a.b": 1,
        "a.c.d": [1, {"e": 2}],
        "empty": {},
        "z": None,
    }


def test_flatten_whole_document_by_default(run: Run) -> None:
    result = run({"transformType": "flatten"}, input={"k": 1}, previous_outputs={"s": {"v": 2}})
    assert result.output["transformedData"] == {"input.k": 1, "outputs.s.v": 2}


def test_flatten_custom_separator_and_unflatten(run: Run) -> None:
    flat = run(
        {"transformType": "flatten", "source": "input", "separator": "/"}, input={"a": {"b": 1}}
    )
    assert flat.output["transformedData"] == {"a/b": 1}
    back = run(
        {"transformType": "unflatten", "source": "input", "separator": "/"}, input={"a/b": 1}
    )
    assert back.output["transformedData"] == {"a": {"b": 1}}


def test_flatten_array_source_deep_flattens(run: Run) -> None:
    result = run(
        {"transformType": "flatten", "source": "input.x"}, input={"x": [1, [2, [3, [4]]], []]}
    )
    assert result.output["transformedData"] == [1, 2, 3, 4]


def test_flatten_collision_is_an_error_not_a_loss(run: Run) -> None:
    result = run({"transformType": "flatten", "source": "input"}, input={"a.b": 1, "a": {"b": 2}})
    assert not result.success
    assert result.error == "flatten: key 'a.b' is produced twice"


def test_flatten_scalar_source(run: Run) -> None:
    result = run({"transformType": "flatten", "source": "input.n"}, input={"n": 3})
    assert result.error == "flatten: source is number, expected object or array"


def test_unflatten_conflict() -> None:
    with pytest.raises(TransformDataError, match="conflicts"):
        unflatten({"a": 1, "a.b": 2})
    with pytest.raises(TransformDataError, match="conflicts"):
        unflatten({"a.b": 2, "a": 1})


keys = st.text(alphabet=st.characters(blacklist_characters="."), max_size=5)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.lists(st.integers(), max_size=3)
)
nested = st.recursive(
    leaves, lambda children: st.dictionaries(keys, children, max_size=4), max_leaves=20
)


@given(st.dictionaries(keys, nested, max_size=5))
def test_flatten_round_trips(value: Any) -> None:
    flat = flatten(value)
    assert unflatten(flat) == value
    assert all(not isinstance(v, dict) or v == {} for v in flat.values())


@given(st.recursive(st.integers(), lambda children: st.lists(children, max_size=4), max_leaves=30))
def test_flatten_list_keeps_leaves_in_order(value: Any) -> None:
    def leaves_of(x: Any) -> list[int]:
        return [y for item in x for y in leaves_of(item)] if isinstance(x, list) else [x]

    if isinstance(value, list):
        assert flatten_list(value) == leaves_of(value)


# -- extract -------------------------------------------------------------------------------------
def test_extract_fields_and_missing(run: Run) -> None:
    config = {
        "transformType": "extract",
        "source": "outputs.enrich",
        "fields": ["report.summary", {"path": "indicators[0].value", "as": "first"}, "ghost.x"],
    }
    result = run(
        config,
        previous_outputs={"enrich": {"report": {"summary": "S"}, "indicators": INDICATORS}},
    )
    assert result.output["transformedData"] == {"report.summary": "S", "first": "1.2.3.4"}
    assert result.output["missingFields"] == ["ghost.x"]


def test_extract_reference_spelling(run: Run) -> None:
    result = run({"transformType": "extract", "extractPaths": ["input.a"]}, input={"a": 1})
    assert result.output["transformedData"] == {"input.a": 1}


@pytest.mark.parametrize(
    "fields", [None, [], "input.a", [{"as": "x"}], [3], ["input.a", "input.a"]]
)
def test_extract_bad_fields(run: Run, fields: Any) -> None:
    config: dict[str, Any] = {"transformType": "extract"}
    if fields is not None:
        config["fields"] = fields
    result = run(config, input={"a": 1})
    assert not result.success
    assert (result.error or "").startswith("config.fields")


# -- aggregate -----------------------------------------------------------------------------------
def test_aggregate_grouped(run: Run) -> None:
    config = {
        "transformType": "aggregate",
        "source": "outputs.ingest.indicators",
        "groupBy": "type",
        "operations": [
            "count",
            "sum:score",
            "min:score",
            "max:score",
            "avg:score",
            {"op": "count", "field": "meta.tlp", "as": "withTlp"},
        ],
    }
    result = run(config, previous_outputs={"ingest": {"indicators": INDICATORS}})
    assert result.success, result.error
    assert result.output["transformedData"] == {
        "ip": {
            "count": 2,
            "sum_score": 90,
            "min_score": 10,
            "max_score": 80,
            "avg_score": 45.0,
            "withTlp": 1,
        },
        "domain": {
            "count": 1,
            "sum_score": 40,
            "min_score": 40,
            "max_score": 40,
            "avg_score": 40.0,
            "withTlp": 0,
        },
    }
    assert result.output["skippedItems"] == 1


def test_aggregate_ungrouped_defaults_to_count_and_handles_empty(run: Run) -> None:
    result = run({"transformType": "aggregate", "source": "input.items"}, input={"items": []})
    assert result.output["transformedData"] == {"count": 0}
    stats = run(
        {"transformType": "aggregate", "source": "input.items", "operations": ["avg:v", "sum:v"]},
        input={"items": [{"v": None}, {}]},
    )
    assert stats.output["transformedData"] == {"avg_v": None, "sum_v": 0}


def test_aggregate_non_string_group_keys_are_json(run: Run) -> None:
    items = [{"k": 1}, {"k": True}, {"k": None}, {"k": "1"}]
    result = run(
        {"transformType": "aggregate", "source": "input.items", "aggregateField": "k"},
        input={"items": items},
    )
    assert list(result.output["transformedData"]) == ["1", "true", "null"]
    assert result.output["transformedData"]["1"] == {"count": 2}


def test_aggregate_non_numeric_is_an_error(run: Run) -> None:
    result = run(
        {"transformType": "aggregate", "source": "input.items", "operations": ["sum:v"]},
        input={"items": [{"v": 1}, {"v": "2"}]},
    )
    assert result.error == "aggregate: sum over 'v': item 1 has string '2', not a number"


@pytest.mark.parametrize(
    ("operations", "message"),
    [
        (["median:v"], "config.operations[0]: unknown operation 'median'"),
        (["sum"], "config.operations[0]: sum needs a field"),
        ([], "config.operations: expected a non-empty list"),
        (["count", {"op": "count"}], "config.operations[1]: result name 'count' is used twice"),
        ([{"op": "sum", "fld": "v"}], "config.operations[0]: expected"),
    ],
)
def test_aggregate_bad_operations(run: Run, operations: Any, message: Any) -> None:
    result = run(
        {"transformType": "aggregate", "source": "input.items", "operations": operations},
        input={"items": [{"v": 1}]},
    )
    assert (result.error or "").startswith(message)


def test_aggregate_source_must_be_array(run: Run) -> None:
    result = run({"transformType": "aggregate", "source": "input"}, input={"a": 1})
    assert result.error == "aggregate: source is object, expected array"


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.fixed_dictionaries({"g": st.sampled_from(["a", "b", "c"]), "v": st.integers(-50, 50)}),
        max_size=15,
    )
)
def test_aggregate_matches_python(run: Run, items: Any) -> None:
    result = run(
        {
            "transformType": "aggregate",
            "source": "input.items",
            "groupBy": "g",
            "operations": ["count", "sum:v", "max:v"],
        },
        input={"items": items},
    )
    groups = result.output["transformedData"]
    assert {g: r["count"] for g, r in groups.items()} == dict(Counter(i["g"] for i in items))
    for g, r in groups.items():
        values = [i["v"] for i in items if i["g"] == g]
        assert r["sum_v"] == sum(values)
        assert r["max_v"] == max(values)
