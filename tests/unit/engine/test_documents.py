"""Hostile runbook text: alias bombs, deep nesting, duplicate keys, bad bytes, huge files."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook_engine.limits import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH
from runbook_engine.loader import parse_documents, plan_from_text
from runbook_engine.problems import InvalidRunbook
from runbookctl.files import load_plan, read_text


def alias_bomb(levels: int) -> str:
    """The issue's runbook: `levels` anchors of nine aliases each in metadata, used in config."""
    lines = ["kind: Runbook", "metadata:", "  name: bomb", '  l0: &l0 ["lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*l{i - 1}"] * 9)
        lines.append(f"  l{i}: &l{i} [{refs}]")
    lines += ["spec:", "  steps:", "    - id: s", "      actionType: TRANSFORM"]
    lines.append(f"      config: {{x: *l{levels - 1}}}")
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return (
        "kind: Runbook\nmetadata: {name: deep}\nspec:\n  steps:\n    - id: s\n"
        f"      actionType: TRANSFORM\n      config:\n        x: {'[' * depth}{']' * depth}\n"
    )


def problem_of(excinfo: pytest.ExceptionInfo[InvalidRunbook]) -> str:
    return "\n".join(str(p) for p in excinfo.value.problems)


@pytest.mark.parametrize("levels", [7, 9])
def test_an_alias_bomb_is_refused_at_load(levels: int) -> None:
    text = alias_bomb(levels)
    assert len(text.encode()) < 700  # the bomb is 451 bytes
    with pytest.raises(InvalidRunbook) as excinfo:
        plan_from_text(text, source="bomb.yaml")
    assert "alias bomb" in problem_of(excinfo)


def test_modest_aliases_still_work() -> None:
    text = (
        "metadata: {retry: &retry {maxAttempts: 3, backoffSeconds: 1}}\n"
        "id: rb\nsteps:\n"
        "  - {id: a, actionType: TRANSFORM, retryPolicy: *retry}\n"
        "  - {id: b, actionType: TRANSFORM, retryPolicy: *retry, dependsOn: [a]}\n"
    )
    plan = plan_from_text(text)
    assert [plan.steps[s].max_attempts for s in plan.order] == [3, 3]


@pytest.mark.parametrize("depth", [300, 500, 5000])
def test_deep_nesting_is_refused_with_the_field_path(depth: int) -> None:
    with pytest.raises(InvalidRunbook) as excinfo:
        plan_from_text(nested(depth))
    (problem,) = excinfo.value.problems
    assert problem.field.startswith("spec.steps[0].config.x[0][0]")
    assert f"nested deeper than {MAX_DOCUMENT_DEPTH} levels" in problem.reason


def test_nesting_within_the_limit_loads() -> None:
    plan = plan_from_text(nested(MAX_DOCUMENT_DEPTH - 8))
    assert list(plan.order) == ["s"]


def test_aliases_cannot_smuggle_depth_past_the_limit() -> None:
    half = MAX_DOCUMENT_DEPTH // 2 + 4
    text = (
        f"metadata: {{a: &a {'[' * half}1{']' * half}}}\n"
        f"id: rb\nsteps: [{{id: s, actionType: T, config: {{x: {'[' * half}*a{']' * half}}}}}]\n"
    )
    with pytest.raises(InvalidRunbook, match="nested deeper"):
        parse_documents(text)


@pytest.mark.parametrize(
    ("text", "line"),
    [("id: a\nid: b\nsteps: []\n", 2), ("steps: []\nmetadata: {x: 1, x: 2}\nid: a\n", 2)],
)
def test_duplicate_keys_are_refused(text: str, line: int) -> None:
    with pytest.raises(InvalidRunbook) as excinfo:
        parse_documents(text)
    assert "duplicate key" in problem_of(excinfo)
    assert f"line {line}" in problem_of(excinfo)


def test_merge_keys_are_not_duplicates() -> None:
    (doc,) = parse_documents("base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n")
    assert doc["m"] == {"x": 1, "y": 2}


def test_yaml_errors_name_line_and_column_without_echoing_the_source() -> None:
    with pytest.raises(InvalidRunbook) as excinfo:
        parse_documents("a: [1,\n")
    assert "line 2, column 1" in problem_of(excinfo)
    assert "<unicode string>" not in problem_of(excinfo)


def test_non_utf8_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_bytes(b"id: a\xff\nsteps: []\n")
    with pytest.raises(InvalidRunbook, match=r"not UTF-8 text: byte 0xff at offset 5"):
        load_plan(path)


def test_an_endless_file_is_read_only_up_to_the_limit() -> None:
    with pytest.raises(InvalidRunbook, match=f"larger than the limit of {MAX_DOCUMENT_BYTES}"):
        read_text(Path("/dev/zero"))


def test_a_directory_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidRunbook, match="cannot read file"):
        load_plan(tmp_path)
