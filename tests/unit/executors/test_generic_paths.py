"""Dotted paths and JMESPath-or-dotted selection shared by VALIDATE and TRANSFORM."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_executors.generic._common import (
    MISSING,
    ConfigError,
    get_path,
    parse_path,
    select,
    step_document,
)

DOC: dict[str, Any] = {
    "input": {"indicators": ["a", "b", "c"], "codes": {"404": "nf"}, "n": None},
    "outputs": {"ingest-1": {"items": [{"score": 5}, {"score": 9}]}, "plain": {"k": 1}},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("input.indicators.0", "a"),
        ("input.indicators[1]", "b"),
        ("input.indicators[-1]", "c"),
        ("input.indicators.-1", "c"),
        ("input.codes.404", "nf"),
        ("input.n", None),
        ("outputs.ingest-1.items[1].score", 9),
        ("outputs.ingest-1.items.1.score", 9),
        ("input", DOC["input"]),
    ],
)
def test_get_path_finds(path: str, expected: Any) -> None:
    assert get_path(DOC, path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "input.indicators.3",
        "input.indicators[-4]",
        "input.indicators.x",
        "input.codes[0]",
        "input.n.deeper",
        "outputs.ghost",
        "input.indicators.0.0",
    ],
)
def test_get_path_missing_is_distinct_from_null(path: str) -> None:
    assert get_path(DOC, path) is MISSING
    assert get_path(DOC, "input.n") is None  # a present null is not MISSING


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a[x]", "a[0", "a]0["])
def test_malformed_paths(path: str) -> None:
    with pytest.raises(ConfigError):
        parse_path(path, where="f")


def test_parse_path_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^config\.x: malformed path 'a\.\.b'"):
        parse_path("a..b", where="config.x")
    with pytest.raises(ConfigError, match=r"^config\.x: expected a non-empty dotted path"):
        parse_path(3, where="config.x")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("input.indicators[0]", "a"),
        ("outputs.plain.k", 1),
        ("length(input.indicators)", 3),
        ('outputs."ingest-1".items[?score > `6`].score', [9]),
        ("outputs.ingest-1.items.0.score", 5),  # not JMESPath: read as a dotted path
        ("outputs.nothing", None),
        ("outputs.ingest-1.nothing", None),
    ],
)
def test_select(expression: str, expected: Any) -> None:
    assert select(DOC, expression, where="t") == expected


def test_select_neither_jmespath_nor_path() -> None:
    with pytest.raises(ConfigError, match=r"^t: 'a\.\.b\]' is neither valid JMESPath"):
        select(DOC, "a..b]", where="t")


def test_select_runtime_error_names_field() -> None:
    with pytest.raises(ConfigError, match=r"^t: evaluating 'length\(input\.n\)' failed"):
        select(DOC, "length(input.n)", where="t")


def test_step_document_shape(make_ctx: Any) -> None:
    ctx = make_ctx(input={"a": 1}, previous_outputs={"s": {"b": 2}})
    assert step_document(ctx) == {"input": {"a": 1}, "outputs": {"s": {"b": 2}}}


keys = st.text(alphabet="abcxyz-_0123456789", min_size=1, max_size=4).filter(
    lambda k: not k.lstrip("-").isdigit()
)
trees = st.recursive(
    st.integers() | st.none(),
    lambda children: (
        st.dictionaries(keys, children, min_size=1, max_size=3)
        | st.lists(children, min_size=1, max_size=3)
    ),
    max_leaves=15,
)


def all_paths(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        found.append((path, child))
        found.extend(all_paths(child, path))
    return found


@given(st.dictionaries(keys, trees, min_size=1, max_size=3))
def test_every_dotted_path_resolves_to_its_value(tree: dict[str, Any]) -> None:
    for path, value in all_paths(tree):
        assert get_path(tree, path) == value
