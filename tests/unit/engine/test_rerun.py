"""Re-run selection (runbook_engine.rerun): examples, then properties over random DAGs.

The property tests compare `select` with an oracle written differently (a forward pass over the
definition order instead of graph closures), run the re-run through the simulated shell, and
check that exactly the selected steps start, that reused outputs are byte-identical (canonical
JSON) to the parent's, and that the first ledger entry links the parent.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from runbook_engine.audit import verify
from runbook_engine.canonical import canonical_json, canonical_sha256
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan
from runbook_engine.rerun import (
    NOT_SELECTED,
    ParentRecord,
    RerunLink,
    RerunRefused,
    Selection,
    output_problems,
    parent_not_finished,
    recorded_output_hashes,
    rerun_execution,
    select,
)
from runbook_engine.state import StepState

from .sim import T0, Sim, at, make_plan, request_for, step

S, F, K, C = StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED


def diamond() -> Plan:
    """a → b, a → c, (b, c) → d, and e on its own."""
    return make_plan(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"), step("e"))


# -- examples ----------------------------------------------------------------------------------
def test_default_reruns_what_did_not_succeed_and_its_descendants() -> None:
    got = select(diamond(), {"a": S, "b": F, "c": S, "d": K, "e": S})
    assert got == Selection(run=("b", "d"), reused=("a", "c", "e"), not_selected=())


def test_default_reruns_a_succeeded_step_downstream_of_one_that_did_not() -> None:
    """c failed with skipOnFailure (SKIPPED), so d ran on and SUCCEEDED: d's inputs change
    when c runs again, so d runs again too."""
    got = select(diamond(), {"a": S, "b": S, "c": K, "d": S, "e": S})
    assert got == Selection(run=("c", "d"), reused=("a", "b", "e"), not_selected=())


def test_from_reruns_downstream_even_of_succeeded_steps() -> None:
    got = select(diamond(), {"a": S, "b": S, "c": S, "d": S, "e": F}, rerun_from=["c"])
    assert got == Selection(run=("c", "d"), reused=("a", "b"), not_selected=("e",))


def test_only_runs_exactly_its_steps() -> None:
    got = select(diamond(), {"a": S, "b": F, "c": S, "d": K, "e": S}, only=["b"])
    assert got == Selection(run=("b",), reused=("a", "c", "e"), not_selected=("d",))


def test_only_refuses_a_step_whose_input_does_not_exist() -> None:
    with pytest.raises(RerunRefused) as caught:
        select(diamond(), {"a": S, "b": F, "c": S, "d": K, "e": S}, only=["d"])
    assert caught.value.reason == "InputMissing"
    assert "step 'd' needs the output of 'b'" in str(caught.value)
    assert caught.value.problems[0].field == "spec.only"


def test_from_refuses_when_an_upstream_step_failed() -> None:
    with pytest.raises(RerunRefused, match="needs the output of 'a'"):
        select(diamond(), {"a": F, "b": K, "c": K, "d": K, "e": S}, rerun_from=["b"])


def test_nothing_to_rerun_and_unknown_steps_are_refused() -> None:
    everything = {s: S for s in "abcde"}
    with pytest.raises(RerunRefused) as caught:
        select(diamond(), everything)
    assert caught.value.reason == "NothingToRerun"
    with pytest.raises(RerunRefused, match=r"spec.from: unknown step\(s\) 'zz'"):
        select(diamond(), everything, rerun_from=["zz"])


@pytest.mark.parametrize("phase", [None, "PENDING", "RUNNING", "PAUSED"])
def test_a_parent_that_did_not_finish_is_refused(phase: str | None) -> None:
    refused = parent_not_finished(phase)
    assert refused is not None and refused.reason == "ParentNotFinished"
    assert "COMPLETED, FAILED or CANCELLED" in str(refused)


@pytest.mark.parametrize("phase", ["COMPLETED", "FAILED", "CANCELLED"])
def test_a_finished_parent_may_be_rerun(phase: str) -> None:
    assert parent_not_finished(phase) is None


def test_request_options_need_rerun_of_and_exclude_each_other() -> None:
    base = {"runbookRef": {"name": "rb"}}
    with pytest.raises(ValidationError, match="from, latest: only for a re-run"):
        ExecutionRequest.model_validate({**base, "from": ["a"], "latest": True})
    with pytest.raises(ValidationError, match="give one of them"):
        ExecutionRequest.model_validate(
            {**base, "rerunOf": {"name": "p"}, "from": ["a"], "only": ["b"]}
        )
    ok = ExecutionRequest.model_validate({**base, "rerunOf": {"name": "p"}, "from": ["a"]})
    assert ok.rerun_from == ["a"]
    assert ok.model_dump(by_alias=True)["from"] == ["a"]


def test_a_plain_request_dumps_without_rerun_keys() -> None:
    dumped = ExecutionRequest.model_validate({"runbookRef": {"name": "rb"}}).model_dump(
        mode="json", by_alias=True
    )
    assert not {"rerunOf", "from", "only", "latest"} & set(dumped)


def test_output_problems_catch_a_changed_output() -> None:
    recorded = {"a": canonical_sha256({"v": 1}), "b": canonical_sha256({"v": 2})}
    assert output_problems(["a", "b"], {"a": {"v": 1}, "b": {"v": 2}}, recorded) == []
    problems = output_problems(["a", "b", "c"], {"a": {"v": 1}, "b": {"v": 3}}, recorded)
    assert [p.field for p in problems] == ["steps.b", "steps.c"]
    assert "changed after the step ran" in problems[0].reason
    assert "records no output" in problems[1].reason


def test_recorded_hashes_come_from_succeeded_and_reused_entries() -> None:
    entries = [
        {"eventType": "STEP_SUCCEEDED", "stepId": "a", "details": {"outputHash": "1"}},
        {"eventType": "STEP_REUSED", "stepId": "b", "details": {"outputHash": "2"}},
        {"eventType": "STEP_FAILED", "stepId": "c", "details": {"outputHash": "3"}},
    ]
    assert recorded_output_hashes(entries) == {"a": "1", "b": "2"}


# -- properties --------------------------------------------------------------------------------
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARENT_STATUSES = [S, S, S, F, K, C]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Plan, dict[str, StepStatus], str, list[str]]:
    n = draw(st.integers(1, 14))
    ids = [f"s{i:02d}" for i in range(n)]
    docs = []
    for i, sid in enumerate(ids):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        docs.append(step(sid, *[ids[d] for d in deps]))
    plan = make_plan(*docs)
    parent = {sid: draw(st.sampled_from(PARENT_STATUSES)) for sid in ids}
    mode = draw(st.sampled_from(["default", "from", "only"]))
    chosen = [] if mode == "default" else draw(st.lists(st.sampled_from(ids), max_size=3))
    if mode != "default" and not chosen:
        mode = "default"
    return plan, parent, mode, chosen


def oracle(
    plan: Plan, parent: dict[str, StepStatus], mode: str, chosen: list[str]
) -> Selection | str:
    """The rules, as a forward pass in definition order (dependencies come first)."""
    selected: set[str] = set()
    for sid in plan.order:
        deps = plan.dependencies[sid]
        if mode == "only":
            hit = sid in chosen
        elif mode == "from":
            hit = sid in chosen or any(d in selected for d in deps)
        else:
            hit = parent[sid] is not S or any(d in selected for d in deps)
        if hit:
            selected.add(sid)
    if not selected:
        return "NothingToRerun"
    for sid in selected:
        for dep in plan.dependencies[sid]:
            if dep not in selected and parent[dep] is not S:
                return "InputMissing"
    return Selection(
        run=tuple(s for s in plan.order if s in selected),
        reused=tuple(s for s in plan.order if s not in selected and parent[s] is S),
        not_selected=tuple(s for s in plan.order if s not in selected and parent[s] is not S),
    )


def _select(plan: Plan, parent: dict[str, StepStatus], mode: str, chosen: list[str]) -> Any:
    kwargs = {"only": chosen} if mode == "only" else {"rerun_from": chosen}
    try:
        return select(plan, parent, **kwargs)
    except RerunRefused as refused:
        return refused.reason


def _output(sid: str) -> dict[str, Any]:
    """A parent output whose canonical bytes differ from its insertion-order JSON."""
    return {"z": [1.5, "é", {"b": 1, "a": None}], "id": sid, "n": 2**40}


@given(cases())
@SETTINGS
def test_selection_is_exactly_what_the_rules_say(
    case: tuple[Plan, dict[str, StepStatus], str, list[str]],
) -> None:
    plan, parent, mode, chosen = case
    assert _select(plan, parent, mode, chosen) == oracle(plan, parent, mode, chosen)


@given(cases())
@SETTINGS
def test_rerun_runs_exactly_the_selection_and_reuses_outputs_byte_for_byte(
    case: tuple[Plan, dict[str, StepStatus], str, list[str]],
) -> None:
    plan, parent, mode, chosen = case
    selection = _select(plan, parent, mode, chosen)
    if isinstance(selection, str):
        return
    record = ParentRecord(
        "parent-1",
        {
            sid: StepState(sid, status, attempt=1, finished_at=T0)
            if status is not S
            else StepState(sid, S, attempt=2, started_at=T0, finished_at=T0)
            for sid, status in parent.items()
        },
        {sid: _output(sid) for sid, status in parent.items() if status is S},
    )
    link = RerunLink("parent-1", "ab" * 32, 7, None, "parent", "pinned", selection)
    start = at(100)
    initial = rerun_execution(plan, "rerun-1", start, record, link)
    res = Sim(
        plan,
        lambda sid, n: (1.0, True, {"ran": sid}, {}),
        request=request_for(plan),
        execution_id="rerun-1",
        start=start,
        initial=initial,
    ).run()
    started = sorted(a.step_id for _, a in res.starts())
    assert started == sorted(selection.run)
    final = res.final
    assert final.status is ExecutionStatus.COMPLETED
    for sid in selection.reused:
        assert canonical_json(final.outputs[sid]) == canonical_json(record.outputs[sid])
        assert final.steps[sid].output_hash == canonical_sha256(record.outputs[sid])
        assert final.steps[sid].reused_from == "parent-1"
        assert final.steps[sid].status is S
    for sid in selection.run:
        assert final.outputs[sid] == {"ran": sid}
        assert final.steps[sid].reused_from is None
    for sid in selection.not_selected:
        assert final.steps[sid].status is K and final.steps[sid].blocked_by == NOT_SELECTED
    entries = res.chain.entries
    assert entries[0]["eventType"] == "EXECUTION_STARTED"
    assert entries[0]["details"]["rerunOf"]["executionId"] == "parent-1"
    assert entries[0]["details"]["rerunOf"]["run"] == list(selection.run)
    reused_entries = [e for e in entries if e["eventType"] == str(LogEventType.STEP_REUSED)]
    assert [e["stepId"] for e in reused_entries] == list(selection.reused)
    assert recorded_output_hashes(entries) == {
        sid: canonical_sha256(final.outputs[sid]) for sid in (*selection.run, *selection.reused)
    }
    assert verify(entries).valid
    # The wire form keeps the marker (the operator reloads the state from its status).
    wire = final.to_wire()
    marked = [s["stepId"] for s in wire["steps"] if s.get("reusedFrom") == "parent-1"]
    assert marked == list(selection.reused)


def test_a_rejected_rerun_keeps_reused_steps_and_links_the_parent() -> None:
    plan = make_plan(step("a"), step("b", "a"), legalBasisRequired=["consent"])
    record = ParentRecord(
        "p", {"a": StepState("a", S, attempt=1), "b": StepState("b", F, attempt=1)}, {"a": {}}
    )
    selection = select(plan, record.statuses)
    link = RerunLink("p", "0" * 64, 3, None, "parent", "pinned", selection)
    initial = rerun_execution(plan, "r", T0, record, link)
    res = Sim(
        plan,
        lambda sid, n: (1.0, True, {}, {}),
        request=request_for(plan),
        execution_id="r",
        initial=initial,
    ).run()
    assert res.final.status is ExecutionStatus.FAILED
    assert res.final.steps["a"].status is S and res.final.steps["b"].status is K
    first = res.chain.entries[0]
    assert first["eventType"] == "EXECUTION_REJECTED"
    assert first["details"]["rerunOf"]["executionId"] == "p"
    assert res.starts() == []
