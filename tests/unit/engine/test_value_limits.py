"""Depth and size limits of an execution's input and a step's config (runbook_engine.limits).

The walk must be iterative: the values come from a tenant and may nest thousands of levels
(the apiserver stores about 10,000), so the check itself must not be what overflows.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from runbook_engine.limits import (
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    shape_of,
    value_too_big,
)
from runbook_engine.model import ExecutionRequest, RunbookDefinition
from runbook_engine.problems import problems_from_pydantic


def nested(levels: int) -> Any:
    """A value `levels` deep as the loader counts: {"a": {"a": ... 1}} (the scalar is a level)."""
    value: Any = 1
    for _ in range(levels - 1):
        value = {"a": value}
    return value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1


@given(json_values)
def test_shape_is_the_compact_json_size_and_the_loaders_depth(value: Any) -> None:
    shape = shape_of(value)
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert shape.json_bytes == len(compact.encode("utf-8", "surrogatepass"))
    assert shape.depth == _depth(value)
    assert shape.complete


@pytest.mark.parametrize("levels", [3_000, 10_000, 50_000])
def test_a_value_deeper_than_recursion_can_go_is_measured_without_recursion(levels: int) -> None:
    assert levels > sys.getrecursionlimit() or levels == 3_000
    too_big = value_too_big(nested(levels), "spec.input", max_bytes=10 * levels)
    assert too_big is not None and too_big.kind == "TooDeep"
    assert str(too_big.problem) == (
        f"spec.input: nested {levels} levels deep, the limit is {MAX_VALUE_DEPTH}"
    )


def test_the_depth_limit_is_inclusive() -> None:
    assert value_too_big(nested(MAX_VALUE_DEPTH), "spec.input") is None
    assert value_too_big(nested(MAX_VALUE_DEPTH + 1), "spec.input") is not None


def test_a_large_value_names_its_size_and_the_limit() -> None:
    value = {"blob": "x" * MAX_VALUE_BYTES}
    too_big = value_too_big(value, "spec.steps[0].config")
    assert too_big is not None and too_big.kind == "TooLarge"
    size = len(json.dumps(value, separators=(",", ":")))
    assert str(too_big.problem) == (
        f"spec.steps[0].config: {size} bytes of JSON, the limit is {MAX_VALUE_BYTES} bytes"
    )
    assert value_too_big({"blob": "x" * (MAX_VALUE_BYTES - 20)}, "f") is None


def test_a_wide_value_stops_the_walk_at_the_budget() -> None:
    too_big = value_too_big([0] * 1_000_000, "spec.input", max_bytes=1000)
    assert too_big is not None and too_big.kind == "TooLarge"
    # the list's own brackets and commas are counted before the walk stops in its items
    assert too_big.problem.reason == "at least 1001001 bytes of JSON, the limit is 1000 bytes"
    shape = shape_of([[0] * 5000], node_budget=1000)
    assert not shape.complete and shape.json_bytes > 1000


def test_a_self_referencing_value_ends() -> None:
    loop: list[Any] = []
    loop.append(loop)
    too_big = value_too_big(loop, "spec.input", max_bytes=10_000)
    assert too_big is not None and too_big.kind == "TooDeep"
    assert "nested at least" in too_big.problem.reason


def test_the_model_refuses_deep_input_and_config_naming_the_field() -> None:
    with pytest.raises(ValidationError) as request_error:
        ExecutionRequest.model_validate({"runbookRef": {"name": "x"}, "input": nested(3000)})
    assert [str(p) for p in problems_from_pydantic(request_error.value, "spec")] == [
        "spec.input: nested 3000 levels deep, the limit is 64"
    ]
    step = {"id": "a", "actionType": "TRANSFORM", "config": {"x": nested(2000)}}
    with pytest.raises(ValidationError) as runbook_error:
        RunbookDefinition.model_validate(
            {"id": "rb", "steps": [{"id": "ok", "actionType": "T"}, step]}
        )
    assert [str(p) for p in problems_from_pydantic(runbook_error.value, "spec")] == [
        "spec.steps[1].config: nested 2001 levels deep, the limit is 64"
    ]


def test_the_model_refuses_a_large_config() -> None:
    step = {"id": "a", "actionType": "TRANSFORM", "config": {"x": "y" * MAX_VALUE_BYTES}}
    with pytest.raises(
        ValidationError, match=rf"bytes of JSON, the limit is {MAX_VALUE_BYTES} bytes"
    ):
        RunbookDefinition.model_validate({"id": "rb", "steps": [step]})
