"""The operator's re-run preparation (runbook_operator.execution.rerun), without a cluster:
the parent as its object, ledger entries and results; the re-run's start or its refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runbook_engine.canonical import canonical_sha256
from runbook_engine.contract import StepExecutorResult
from runbook_engine.model import ExecutionRequest, RunbookDefinition
from runbook_engine.plan import compile_plan
from runbook_operator.execution import rerun
from runbook_operator.execution.pinning import Pinned, Refusal
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import results

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
REF = ExecutionRef("ns", "case-1-rerun-x", "uid-rerun-0001")
PARENT_UID = "uid-parent-0001"


def plan_pinned() -> Pinned:
    definition = RunbookDefinition.model_validate(
        {
            "id": "gated",
            "steps": [
                {"id": "a", "actionType": "TRANSFORM"},
                {"id": "b", "actionType": "TRANSFORM", "dependsOn": ["a"]},
                {"id": "c", "actionType": "TRANSFORM", "dependsOn": ["b"]},
            ],
        }
    )
    request = ExecutionRequest.model_validate({"runbookRef": {"name": "gated"}})
    return Pinned(compile_plan(definition), request, "h" * 64, "def")


def parent_body(phase: str = "FAILED") -> dict[str, Any]:
    return {
        "metadata": {"name": "case-1", "namespace": "ns", "uid": PARENT_UID},
        "spec": {"runbookRef": {"name": "gated"}},
        "status": {
            "phase": phase,
            "steps": [
                {"stepId": "a", "status": "SUCCEEDED", "attempt": 2, "outputHash": "x"},
                {"stepId": "b", "status": "FAILED", "attempt": 1},
                {"stepId": "c", "status": "SKIPPED", "attempt": 0, "blockedBy": "b"},
            ],
            "kpis": {"k": 1},
            "kpiSources": {"k": 0},
            "audit": {"count": 9, "head": "f" * 64, "checkpoint": {"count": 9, "head": "f" * 64}},
        },
    }


def ledger(output: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"eventType": "EXECUTION_STARTED", "stepId": None, "details": {}, "hash": "1" * 64},
        {
            "eventType": "STEP_SUCCEEDED",
            "stepId": "a",
            "details": {"outputHash": canonical_sha256(output)},
            "hash": "2" * 64,
        },
    ]


def asked(**spec: Any) -> ExecutionRequest:
    return ExecutionRequest.model_validate(
        {"runbookRef": {"name": "gated"}, "rerunOf": {"name": "case-1"}, **spec}
    )


def test_prepare_reuses_a_checked_output_and_copies_its_result_configmap() -> None:
    output = {"n": 7, "z": [1, 2]}
    facts = rerun.ParentFacts(
        parent_body(), ledger(output), {"a": StepExecutorResult(success=True, output=output)}
    )
    start = rerun.prepare(plan_pinned(), asked(), REF, {"input": {"ok": True}}, facts, NOW)
    assert not isinstance(start, Refusal), start
    a = start.state.steps["a"]
    assert a.reused_from == ExecutionRef("ns", "case-1", PARENT_UID).execution_id
    assert a.attempt == 2 and a.output_hash == canonical_sha256(output)
    assert start.state.kpis == {"k": 1}
    link = start.state.rerun
    assert link is not None
    assert link["inputSource"] == "given" and link["uid"] == PARENT_UID
    assert link["ledgerHead"] == "2" * 64 and link["ledgerCount"] == 2
    assert link["checkpoint"] == {"count": 9, "head": "f" * 64}
    [cm] = start.configmaps
    assert cm["metadata"]["name"] == rerun.result_configmap_of(REF, "a", 2)
    assert cm["metadata"]["ownerReferences"][0]["uid"] == REF.uid
    assert results.read_configmap(cm).output == output


def test_prepare_refuses_an_output_that_does_not_hash_to_the_ledger() -> None:
    facts = rerun.ParentFacts(
        parent_body(),
        ledger({"n": 7}),
        {"a": StepExecutorResult(success=True, output={"n": 8})},
    )
    refused = rerun.prepare(plan_pinned(), asked(), REF, {}, facts, NOW)
    assert isinstance(refused, Refusal) and refused.reason == "OutputTampered"
    assert "steps.a" in refused.message


def test_prepare_refuses_an_unreadable_result() -> None:
    facts = rerun.ParentFacts(parent_body(), ledger({}), {"a": "not owned by the parent"})
    refused = rerun.prepare(plan_pinned(), asked(), REF, {}, facts, NOW)
    assert isinstance(refused, Refusal) and refused.reason == "OutputTampered"
    assert "not owned by the parent" in refused.message


def test_only_a_step_without_its_input_is_refused() -> None:
    facts = rerun.ParentFacts(parent_body(), ledger({}), {})
    refused = rerun.prepare(plan_pinned(), asked(only=["c"]), REF, {}, facts, NOW)
    assert isinstance(refused, Refusal) and refused.reason == "InputMissing"
    assert "step 'c' needs the output of 'b'" in refused.message


def test_parent_problems() -> None:
    missing = rerun.parent_problem(asked(), None, "ns")
    assert missing is not None and missing.reason == "ParentNotFound"
    running = rerun.parent_problem(asked(), parent_body("RUNNING"), "ns")
    assert running is not None and running.reason == "ParentNotFinished"
    assert "case-1 is RUNNING" in running.message
    other = asked().model_copy(
        update={"runbook_ref": asked().runbook_ref.model_copy(update={"name": "x"})}
    )
    mismatch = rerun.parent_problem(other, parent_body(), "ns")
    assert mismatch is not None and mismatch.reason == "RunbookMismatch"
    assert rerun.parent_problem(asked(), parent_body(), "ns") is None


def test_the_pinned_request_keeps_no_rerun_options_and_takes_the_parents_input() -> None:
    parent = plan_pinned()
    parent = Pinned(
        parent.plan,
        parent.request.model_copy(update={"input": {"n": 1}}),
        parent.definition_hash,
        parent.configmap,
    )
    pinned = rerun.effective_request(asked(**{"from": ["b"]}), {}, parent)
    dumped = pinned.model_dump(mode="json", by_alias=True)
    assert dumped["input"] == {"n": 1}
    assert not {"rerunOf", "from", "only", "latest"} & set(dumped)
    given = rerun.effective_request(asked(input={"n": 2}), {"input": {"n": 2}}, parent)
    assert given.input == {"n": 2}
