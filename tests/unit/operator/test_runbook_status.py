"""A Runbook's status from the full validation: Valid condition, problems, count and hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_engine.canonical import canonical_sha256
from runbook_engine.loader import definition_from_document
from runbook_operator.crd.resources import RunbookStatus
from runbook_operator.crd.runbook_status import MAX_MESSAGE, MAX_REASON, runbook_status

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def step(sid: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "actionType": "CUSTOM", "dependsOn": list(deps), **extra}


def valid_cond(status: dict[str, Any]) -> dict[str, Any]:
    (cond,) = [c for c in status["conditions"] if c["type"] == "Valid"]
    return cond


def test_valid_runbook() -> None:
    spec = {"id": "demo", "steps": [step("a"), step("b", "a")]}
    status = runbook_status(spec, 3, NOW)
    RunbookStatus.model_validate(status)
    cond = valid_cond(status)
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", "Valid", 3)
    assert cond["lastTransitionTime"] == "2026-03-01T12:00:00.000Z"
    assert status["observedGeneration"] == 3
    assert status["stepCount"] == 2
    assert status["problems"] == []
    # The same hash an execution pins (definition as the loader normalises it).
    pinned = definition_from_document({"kind": "Runbook", "spec": spec})
    assert status["definitionHash"] == canonical_sha256(
        pinned.model_dump(mode="json", by_alias=True)
    )


def test_cycle_is_invalid_naming_the_path() -> None:
    spec = {"id": "c", "steps": [step("a", "c"), step("b", "a"), step("c", "b")]}
    status = runbook_status(spec, 1, NOW)
    RunbookStatus.model_validate(status)
    cond = valid_cond(status)
    assert (cond["status"], cond["reason"]) == ("False", "InvalidGraph")
    assert status["problems"] == [
        {"field": "spec.steps", "reason": "dependency cycle: a -> c -> b -> a"}
    ]
    assert "dependency cycle" in cond["message"]
    # The definition parses: count and hash are known even though it cannot run.
    assert status["stepCount"] == 3 and len(status["definitionHash"]) == 64


def test_graph_problems_get_manifest_paths() -> None:
    spec = {"id": "g", "steps": [step("a"), step("b", "zz", "b")]}
    problems = runbook_status(spec, 1, NOW)["problems"]
    assert {"field": "spec.steps[1].dependsOn[0]", "reason": "unknown step 'zz'"} in problems
    assert {"field": "spec.steps[1].dependsOn[1]", "reason": "step 'b' depends on itself"} in (
        problems
    )


def test_structural_problem_clears_the_hash() -> None:
    spec = {"id": "s", "steps": [step("a", timeoutMs=0)]}
    status = runbook_status(spec, 2, NOW)
    RunbookStatus.model_validate(status)
    cond = valid_cond(status)
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert status["problems"][0]["field"] == "spec.steps[0].timeoutMs"
    # None (not absent): a JSON merge patch removes the hash of an earlier, valid generation.
    assert status["definitionHash"] is None
    assert status["stepCount"] == 1


def test_name_stands_in_for_a_missing_id() -> None:
    spec = {"steps": [step("a")]}
    assert valid_cond(runbook_status(spec, 1, NOW, name="from-meta"))["status"] == "True"
    missing = runbook_status(spec, 1, NOW)
    assert valid_cond(missing)["status"] == "False"
    assert missing["problems"][0]["field"] == "spec.id"


def test_empty_runbook_is_invalid() -> None:
    status = runbook_status({"id": "e"}, 1, NOW)
    assert status["problems"] == [
        {"field": "spec.steps", "reason": "a runbook needs at least one step"}
    ]
    assert status["stepCount"] == 0


def test_unknown_action_types_when_the_caller_knows_them() -> None:
    spec = {"id": "k", "steps": [step("a")]}
    status = runbook_status(spec, 1, NOW, known_action_types={"ENRICH"})
    assert status["problems"][0]["field"] == "spec.steps[0].actionType"


def test_transition_time_kept_while_status_unchanged() -> None:
    good = {"id": "t", "steps": [step("a")]}
    bad = {"id": "t", "steps": [step("a", "a")]}
    first = runbook_status(good, 1, NOW)
    later = NOW + timedelta(hours=1)
    same = runbook_status(good, 2, later, previous=first)
    assert valid_cond(same)["lastTransitionTime"] == valid_cond(first)["lastTransitionTime"]
    assert valid_cond(same)["observedGeneration"] == 2
    flipped = runbook_status(bad, 3, later, previous=same)
    assert valid_cond(flipped)["lastTransitionTime"] == "2026-03-01T13:00:00.000Z"


def test_huge_cycle_fits_the_condition_limits() -> None:
    ids = [f"step-{i:04d}-" + "x" * 50 for i in range(1000)]
    steps = [step(sid, ids[i - 1]) for i, sid in enumerate(ids)]  # ids[-1] closes the ring
    status = runbook_status({"id": "ring", "steps": steps}, 1, NOW)
    RunbookStatus.model_validate(status)
    assert len(valid_cond(status)["message"]) <= MAX_MESSAGE
    assert all(len(p["reason"]) <= MAX_REASON for p in status["problems"])
    assert status["problems"][0]["reason"].startswith("dependency cycle: ")


def test_many_problems_are_capped() -> None:
    steps = [step(f"s{i}", f"missing{i}") for i in range(300)]
    status = runbook_status({"id": "many", "steps": steps}, 1, NOW)
    assert len(status["problems"]) == 100
    assert valid_cond(status)["message"].startswith("300 problem(s): ")
    assert valid_cond(status)["message"].endswith("; and 297 more")


def _acyclic(edges: dict[int, set[int]], n: int) -> bool:
    """Kahn's algorithm: an independent oracle for the engine's cycle check."""
    indegree = {i: len(edges[i]) for i in range(n)}
    ready = [i for i in range(n) if indegree[i] == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for other in range(n):
            if node in edges[other]:
                indegree[other] -= 1
                if indegree[other] == 0:
                    ready.append(other)
    return seen == n


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=8).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(
                    lambda e: e[0] != e[1]
                ),
                max_size=12,
            ),
        )
    )
)
def test_valid_exactly_when_acyclic(case: tuple[int, list[tuple[int, int]]]) -> None:
    n, pairs = case
    edges: dict[int, set[int]] = {i: set() for i in range(n)}
    for child, parent in pairs:
        edges[child].add(parent)
    spec = {
        "id": "p",
        "steps": [step(f"s{i}", *(f"s{p}" for p in sorted(edges[i]))) for i in range(n)],
    }
    status = runbook_status(spec, 1, NOW)
    assert (valid_cond(status)["status"] == "True") == _acyclic(edges, n)
    if valid_cond(status)["status"] == "False":
        assert [p["field"] for p in status["problems"]] == ["spec.steps"]


@given(st.permutations(["id", "steps", "version", "purpose"]))
def test_hash_ignores_key_order(order: list[str]) -> None:
    base = {"id": "h", "steps": [step("a")], "version": "1.2.3", "purpose": "x"}
    reordered = {k: base[k] for k in order}
    assert (
        runbook_status(base, 1, NOW)["definitionHash"]
        == runbook_status(reordered, 1, NOW)["definitionHash"]
    )
