"""Loading and validating runbooks: every problem names its field and its reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_engine.contract import ActionType
from runbook_engine.loader import definition_from_document
from runbook_engine.model import RunbookDefinition
from runbook_engine.plan import compile_plan, find_cycle, graph_problems, legal_problems
from runbook_engine.problems import InvalidRunbook, Problem
from runbookctl.files import load_plan, load_runbook_file

KNOWN = {str(a) for a in ActionType}


def s(step_id: str, *deps: str, action: str = "TRANSFORM", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "actionType": action, "dependsOn": list(deps), **extra}


def plain(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "rb", "name": "Runbook", "steps": list(steps), **extra}


def manifest(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": "rb"},
        "spec": {"name": "Runbook", "steps": list(steps), **extra},
    }


def problems_of(doc: dict[str, Any], known: set[str] | None = KNOWN) -> list[tuple[str, str]]:
    definition = definition_from_document(doc)
    return [(p.field, p.reason) for p in graph_problems(definition, known)]


def load_problems(doc: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRunbook) as info:
        definition_from_document(doc)
    return [(p.field, p.reason) for p in info.value.problems]


# --- graph problems ---------------------------------------------------------------------------


def test_valid_runbook_has_no_problems_and_compiles() -> None:
    doc = plain(s("a"), s("b", "a"), s("c", "a", "b"))
    assert problems_of(doc) == []
    plan = compile_plan(definition_from_document(doc), KNOWN)
    assert plan.order == ("a", "b", "c")
    assert plan.dependents["a"] == ("b", "c")
    assert plan.ancestors("c") == ["a", "b"]
    assert plan.descendants("a") == ["b", "c"]


def test_cycle_is_reported_as_a_path() -> None:
    doc = plain(s("a", "b"), s("b", "c"), s("c", "a"), s("d", "a"))
    assert problems_of(doc) == [("steps", "dependency cycle: a -> b -> c -> a")]
    with pytest.raises(InvalidRunbook) as info:
        compile_plan(definition_from_document(doc))
    assert "steps: dependency cycle: a -> b -> c -> a" in str(info.value)


def test_cycle_not_reachable_from_the_first_step_is_found() -> None:
    doc = plain(s("root"), s("x", "root", "z"), s("y", "x"), s("z", "y"))
    assert problems_of(doc) == [("steps", "dependency cycle: x -> z -> y -> x")]


def test_two_step_cycle() -> None:
    assert problems_of(plain(s("a", "b"), s("b", "a"))) == [
        ("steps", "dependency cycle: a -> b -> a")
    ]


def test_long_chain_has_no_cycle_and_no_recursion_error() -> None:
    n = 5000
    steps = [s("s0")] + [s(f"s{i}", f"s{i - 1}") for i in range(1, n)]
    assert problems_of(plain(*steps)) == []
    deps = {f"s{i}": [f"s{i + 1}"] for i in range(n - 1)} | {f"s{n - 1}": ["s0"]}
    cycle = find_cycle(deps, list(deps))
    assert cycle is not None and len(cycle) == n + 1 and cycle[0] == cycle[-1] == "s0"


def test_unknown_dependency() -> None:
    assert problems_of(plain(s("a"), s("b", "a", "ghost"))) == [
        ("steps[1].dependsOn[1]", "unknown step 'ghost'")
    ]


def test_self_dependency() -> None:
    assert problems_of(plain(s("a"), s("b", "b"))) == [
        ("steps[1].dependsOn[0]", "step 'b' depends on itself")
    ]


def test_duplicate_dependency() -> None:
    assert problems_of(plain(s("a"), s("b", "a", "a"))) == [
        ("steps[1].dependsOn[1]", "dependency 'a' listed twice")
    ]


def test_duplicate_step_id() -> None:
    doc = plain(s("a"), s("b"), s("a", "b"))
    assert problems_of(doc) == [("steps[2].id", "duplicate step id 'a' (first at steps[0])")]


def test_unknown_action_type_lists_the_known_set() -> None:
    doc = plain(s("a"), s("b", action="FROBNICATE"))
    [(field, reason)] = problems_of(doc)
    assert field == "steps[1].actionType"
    assert reason == f"unknown actionType 'FROBNICATE' (known: {', '.join(sorted(KNOWN))})"
    assert problems_of(doc, {"FROBNICATE", "TRANSFORM"}) == []
    assert problems_of(doc, None) == []  # no registry given: any well-formed name


def test_no_steps() -> None:
    assert problems_of(plain()) == [("steps", "a runbook needs at least one step")]
    with pytest.raises(InvalidRunbook, match="at least one step"):
        compile_plan(definition_from_document(plain()))


def test_unknown_benchmark_step() -> None:
    doc = plain(s("a"), benchmarks={"totalMs": 10, "perStepMs": {"a": 1, "zz": 2}})
    assert problems_of(doc) == [("benchmarks.perStepMs.zz", "unknown step 'zz'")]


def test_every_problem_is_reported_at_once() -> None:
    doc = plain(s("a", "ghost"), s("a"), s("c", "c", action="NOPE"))
    problems = problems_of(doc)
    assert problems == [
        ("steps[1].id", "duplicate step id 'a' (first at steps[0])"),
        ("steps[0].dependsOn[0]", "unknown step 'ghost'"),
        ("steps[2].actionType", f"unknown actionType 'NOPE' (known: {', '.join(sorted(KNOWN))})"),
        ("steps[2].dependsOn[0]", "step 'c' depends on itself"),
    ]
    with pytest.raises(InvalidRunbook) as info:
        compile_plan(definition_from_document(doc), KNOWN)
    assert len(info.value.problems) == 4
    assert "invalid (4 problem(s))" in str(info.value)


# --- structural problems (pydantic) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("step_extra", "field", "reason"),
    [
        (
            {"retryPolicy": {"maxAttempts": 0}},
            "steps[0].retryPolicy.maxAttempts",
            "Input should be greater than or equal to 1",
        ),
        (
            {"retryPolicy": {"backoffSeconds": 5, "maxBackoffSeconds": 1}},
            "steps[0].retryPolicy.maxBackoffSeconds",
            "maxBackoffSeconds (1.0) is below backoffSeconds (5.0): the cap would shorten every wait",
        ),
        ({"timeoutMs": 0}, "steps[0].timeoutMs", "Input should be greater than or equal to 1"),
        (
            {"actionType": "transform"},
            "steps[0].actionType",
            "String should match pattern '^[A-Z][A-Z0-9_]{0,62}$'",
        ),
        (
            {"actionType": "BAD-TYPE"},
            "steps[0].actionType",
            "String should match pattern '^[A-Z][A-Z0-9_]{0,62}$'",
        ),
        (
            {"id": "-leading-dash"},
            "steps[0].id",
            "String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'",
        ),
        ({"bogus": 1}, "steps[0].bogus", "Extra inputs are not permitted"),
    ],
)
def test_structural_problems_name_the_field(
    step_extra: dict[str, Any], field: str, reason: str
) -> None:
    step = {**s("a"), **step_extra}
    assert load_problems(plain(step)) == [(field, reason)]
    assert load_problems(manifest(step)) == [(f"spec.{field}", reason)]


def test_max_backoff_equal_to_base_is_fine() -> None:
    doc = plain(s("a", retryPolicy={"backoffSeconds": 2, "maxBackoffSeconds": 2}))
    assert definition_from_document(doc).steps[0].retry_policy is not None


def test_field_paths_are_indexed_for_later_steps() -> None:
    doc = manifest(s("a"), s("b", "a", retryPolicy={"maxAttempts": 0}), s("c", timeoutMs=-5))
    assert [f for f, _ in load_problems(doc)] == [
        "spec.steps[1].retryPolicy.maxAttempts",
        "spec.steps[2].timeoutMs",
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([1, 2], [("", "expected a mapping, got list")]),
        (
            {"kind": "RunbookExecution", "spec": {}},
            [("kind", "expected Runbook, got 'RunbookExecution'")],
        ),
        ({"spec": {"steps": []}}, [("kind", "expected Runbook, got None")]),
    ],
)
def test_wrong_documents(doc: Any, expected: list[tuple[str, str]]) -> None:
    assert load_problems(doc) == expected


def test_problem_str() -> None:
    assert str(Problem("steps[1].dependsOn[0]", "unknown step 'x'")) == (
        "steps[1].dependsOn[0]: unknown step 'x'"
    )
    assert str(Problem("", "bad")) == "bad"


# --- manifests and files ----------------------------------------------------------------------


def test_manifest_and_plain_definition_load_equal() -> None:
    steps = [
        s("a", retryPolicy={"maxAttempts": 3, "backoffSeconds": 0.5}),
        s("b", "a", timeoutMs=1000, skipOnFailure=True, config={"k": [1, 2]}),
    ]
    extra = {"legalBasisRequired": ["consent"], "dataLicensesRequired": ["cc_by"]}
    from_manifest = definition_from_document(manifest(*copy.deepcopy(steps), **extra))
    from_plain = definition_from_document(plain(*copy.deepcopy(steps), **extra))
    assert from_manifest == from_plain
    assert from_manifest.id == "rb"  # taken from metadata.name
    # and the wire form loads back to the same definition
    wire = from_plain.model_dump(mode="json", by_alias=True)
    assert RunbookDefinition.model_validate(wire) == from_plain
    assert wire["steps"][0]["retryPolicy"]["maxAttempts"] == 3


def test_manifest_spec_id_wins_over_metadata_name() -> None:
    doc = manifest(s("a"))
    doc["spec"]["id"] = "explicit"
    assert definition_from_document(doc).id == "explicit"


def _write(tmp_path: Path, name: str, *docs: Any) -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(docs[0]))
    else:
        path.write_text(yaml.safe_dump_all(docs))
    return path


def test_load_plan_prefixes_graph_problems_with_spec_for_manifests(tmp_path: Path) -> None:
    bad = [s("a"), s("b", "ghost")]
    with pytest.raises(InvalidRunbook) as info:
        load_plan(_write(tmp_path, "m.yaml", manifest(*bad)))
    assert [(p.field, p.reason) for p in info.value.problems] == [
        ("spec.steps[1].dependsOn[0]", "unknown step 'ghost'")
    ]
    assert info.value.source == str(tmp_path / "m.yaml")
    with pytest.raises(InvalidRunbook) as info:
        load_plan(_write(tmp_path, "p.json", plain(*bad)))
    assert [p.field for p in info.value.problems] == ["steps[1].dependsOn[0]"]


def test_load_plan_with_a_cycle_in_a_manifest(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.yaml", manifest(s("a", "b"), s("b", "c"), s("c", "a")))
    with pytest.raises(InvalidRunbook) as info:
        load_plan(path)
    assert [(p.field, p.reason) for p in info.value.problems] == [
        ("spec.steps", "dependency cycle: a -> b -> c -> a")
    ]


def test_load_runbook_file_picks_the_runbook_among_other_documents(tmp_path: Path) -> None:
    execution = {"kind": "RunbookExecution", "spec": {"runbookRef": {"name": "rb"}}}
    path = _write(tmp_path, "both.yaml", execution, manifest(s("a")))
    assert load_runbook_file(path).id == "rb"
    two = _write(tmp_path, "two.yaml", manifest(s("a")), manifest(s("b")))
    with pytest.raises(InvalidRunbook, match="2 Runbook documents found"):
        load_runbook_file(two)
    with pytest.raises(InvalidRunbook, match="no Runbook document"):
        load_runbook_file(_write(tmp_path, "none.yaml", execution))
    with pytest.raises(InvalidRunbook, match="cannot read file"):
        load_runbook_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [unclosed")
    with pytest.raises(InvalidRunbook, match="not valid YAML/JSON"):
        load_runbook_file(broken)


def test_load_plan_accepts_a_valid_manifest(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, "ok.yaml", manifest(s("a"), s("b", "a"))), KNOWN)
    assert plan.order == ("a", "b")


# --- legal problems ---------------------------------------------------------------------------


def test_legal_problems() -> None:
    d = definition_from_document(
        plain(s("a"), legalBasisRequired=["consent"], dataLicensesRequired=["cc_by", "odbl"])
    )
    assert legal_problems(d, "consent", ["cc_by", "odbl", "cc0"]) == []
    assert legal_problems(d, None, ["cc_by", "odbl"]) == [
        Problem("legalBasis", "required: this runbook needs one of consent")
    ]
    assert legal_problems(d, "contract", ["odbl"]) == [
        Problem("legalBasis", "contract is not accepted by this runbook (needs one of consent)"),
        Problem("dataLicenses", "missing required data license(s): cc_by"),
    ]
    free = definition_from_document(plain(s("a")))
    assert legal_problems(free, None, []) == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"kind": "Runbook", "metadata": ["x"], "spec": {"steps": []}},
            [("metadata", "expected a mapping, got list")],
        ),
        ({"kind": "Runbook", "spec": "ab"}, [("spec", "expected a mapping, got str")]),
        ({"kind": "Runbook", "spec": [1]}, [("spec", "expected a mapping, got list")]),
    ],
)
def test_malformed_manifest_parts_are_problems_not_crashes(
    doc: Any, expected: list[tuple[str, str]]
) -> None:
    assert load_problems(doc) == expected


# --- fuzz: any document gives a definition or InvalidRunbook, never a crash ---------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=5)
)
json_any = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
step_ids = st.sampled_from(["a", "b", "c", "d"])
step_docs = st.fixed_dictionaries(
    {"id": st.one_of(step_ids, json_any)},
    optional={
        "actionType": st.one_of(st.sampled_from(["TRANSFORM", "NOTIFY", "X_Y", "bad"]), json_any),
        "dependsOn": st.one_of(st.lists(step_ids, max_size=3), json_any),
        "retryPolicy": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "maxAttempts": st.integers(-1, 101),
                    "backoffSeconds": st.floats(-1, 100),
                    "backoffMultiplier": st.floats(0, 3),
                    "maxBackoffSeconds": st.one_of(st.none(), st.floats(-1, 100)),
                },
            ),
            json_any,
        ),
        "timeoutMs": st.one_of(st.integers(-1, 10**6), json_any),
        "skipOnFailure": st.one_of(st.booleans(), json_any),
        "config": json_any,
    },
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.just("rb"), json_any),
        "steps": st.one_of(st.lists(step_docs, max_size=5), json_any),
        "legalBasisRequired": st.one_of(st.lists(st.sampled_from(["consent", "nope"])), json_any),
        "maxParallelSteps": st.one_of(st.integers(-1, 2000), json_any),
    },
)
documents = st.one_of(
    bodies,
    st.fixed_dictionaries(
        {"kind": st.one_of(st.just("Runbook"), json_any)},
        optional={
            "metadata": st.one_of(st.fixed_dictionaries({"name": st.just("rb")}), json_any),
            "spec": st.one_of(bodies, json_any),
            "apiVersion": json_any,
        },
    ),
    json_any,
)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_any_document_loads_or_raises_invalid_runbook(doc: Any) -> None:
    try:
        definition = definition_from_document(doc)
    except InvalidRunbook as exc:
        assert exc.problems
        assert all(isinstance(p, Problem) and p.reason for p in exc.problems)
        return
    problems = graph_problems(definition, KNOWN)
    if problems:
        with pytest.raises(InvalidRunbook):
            compile_plan(definition, KNOWN)
    else:
        plan = compile_plan(definition, KNOWN)
        assert list(plan.order) == [s.id for s in definition.steps]
        # a valid plan is a DAG: every dependency comes before its dependent in some order
        assert find_cycle(plan.dependencies, list(plan.order)) is None
