"""The engine's limits, once for both shells: output size, messages, context cost, ledger lines."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_engine.context import build_context, context_sources
from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_engine.enums import ExecutionStatus, StepStatus
from runbook_engine.limits import (
    DEFAULT_MAX_OUTPUT_BYTES,
    MAX_MESSAGE_CHARS,
    clip_message,
    effective_output_limit,
    output_size_problem,
)
from runbook_engine.model import ExecutionRequest, RunbookDefinition, RunbookRef
from runbook_engine.plan import compile_plan
from runbook_engine.problems import InvalidRunbook
from runbook_engine.scheduler import AttemptFinished, StartAttempt, new_execution, schedule
from runbook_executors.base import BaseStepExecutor
from runbook_executors.registry import ExecutorRegistry
from runbookctl.ledger import JsonlLedger, read_lines
from runbookctl.runner import LocalRunner

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def chain(n: int, **definition: Any) -> RunbookDefinition:
    steps = [{"id": "s0", "actionType": "ECHO"}]
    steps += [
        {"id": f"s{i}", "actionType": "ECHO", "dependsOn": [f"s{i - 1}"]} for i in range(1, n)
    ]
    return RunbookDefinition.model_validate({"id": "chain", "steps": steps, **definition})


def request() -> ExecutionRequest:
    return ExecutionRequest(runbook_ref=RunbookRef(name="chain"))


# -- output limit ----------------------------------------------------------------------------
def test_scheduler_backstop_fails_an_attempt_whose_output_is_too_large() -> None:
    plan = compile_plan(chain(1, maxOutputBytes=2048))
    state = schedule(plan, request(), new_execution(plan, "e", NOW), [], NOW).state
    big = StepExecutorResult(success=True, output={"x": "a" * 5000})
    state = schedule(plan, request(), state, [AttemptFinished("s0", 1, big)], NOW).state
    assert state.steps["s0"].status is StepStatus.FAILED
    assert "output is 5008 bytes, over the limit of 2048 bytes" in (state.steps["s0"].message or "")
    assert "s0" not in state.outputs


def test_the_runbook_limit_is_bounded_and_named() -> None:
    with pytest.raises(ValueError, match="maxOutputBytes"):
        compile_plan(RunbookDefinition.model_validate({"id": "x", "maxOutputBytes": 10**12}))


def test_effective_limit() -> None:
    assert effective_output_limit(None) == DEFAULT_MAX_OUTPUT_BYTES == 1024 * 1024
    assert effective_output_limit(4096) == 4096
    assert effective_output_limit(None, 1000) == 1000
    assert effective_output_limit(8 * 1024 * 1024, 2 * 1024 * 1024) == 2 * 1024 * 1024
    assert output_size_problem({"a": 1}, 7) is None
    assert output_size_problem({"a": 1}, 6) == (
        "output is 7 bytes, over the limit of 6 bytes (raise the runbook's spec.maxOutputBytes "
        "(at most 64 MiB); runbookctl caps it with --max-output-bytes, the operator with "
        "RUNBOOK_MAX_OUTPUT_BYTES)"
    )


class Big(BaseStepExecutor):
    action_type: ClassVar[str] = "ECHO"

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        return self.success({"blob": "b" * int(ctx.input.get("n", 10))})


def test_inline_runner_enforces_the_shell_cap() -> None:
    plan = compile_plan(chain(1), {"ECHO"})
    req = ExecutionRequest(runbook_ref=RunbookRef(name="chain"), input={"n": 5000})
    runner = LocalRunner(
        plan, req, isolation="inline", registry=ExecutorRegistry([Big()]), max_output_bytes=4096
    )
    state = asyncio.run(runner.run()).state
    assert state.status is ExecutionStatus.FAILED
    assert "over the limit of 4096 bytes" in (state.steps["s0"].message or "")


# -- messages --------------------------------------------------------------------------------
@given(st.text(max_size=3 * MAX_MESSAGE_CHARS))
def test_clip_message_bounds_length_and_keeps_short_messages(text: str) -> None:
    clipped = clip_message(text)
    assert len(clipped) <= MAX_MESSAGE_CHARS + 80
    if len(text) <= MAX_MESSAGE_CHARS:
        assert clipped == text
    else:
        assert clipped.startswith(text[:100]) and clipped.endswith(text[-100:])


def test_scheduler_clips_a_huge_error() -> None:
    plan = compile_plan(chain(1))
    state = schedule(plan, request(), new_execution(plan, "e", NOW), [], NOW).state
    failed = StepExecutorResult(success=False, error="e" * 10_000_000, retryable=False)
    state = schedule(plan, request(), state, [AttemptFinished("s0", 1, failed)], NOW).state
    assert len(state.steps["s0"].message or "") < 2 * MAX_MESSAGE_CHARS


# -- context cost ----------------------------------------------------------------------------
def test_a_step_sees_only_its_direct_dependencies() -> None:
    plan = compile_plan(chain(50))
    assert context_sources(plan, "s49") == ["s48"]
    diamond = compile_plan(
        RunbookDefinition.model_validate(
            {
                "id": "d",
                "steps": [
                    {"id": "a", "actionType": "T"},
                    {"id": "c", "actionType": "T", "dependsOn": ["a"]},
                    {"id": "b", "actionType": "T", "dependsOn": ["a"]},
                    {"id": "z", "actionType": "T", "dependsOn": ["b", "c"]},
                ],
            }
        )
    )
    assert context_sources(diamond, "z") == ["c", "b"]  # definition order


def test_context_size_is_flat_along_a_long_chain() -> None:
    """Every ancestor's output used to be copied into every context (quadratic)."""
    n = 2000
    plan = compile_plan(chain(n))
    state = schedule(plan, request(), new_execution(plan, "e", NOW), [], NOW).state
    sizes = []
    for i in range(n):
        sid = f"s{i}"
        ctx = build_context(plan, request(), state, sid, 1)
        sizes.append(len(ctx.previous_outputs))
        result = StepExecutorResult(success=True, output={"i": i})
        decision = schedule(plan, request(), state, [AttemptFinished(sid, 1, result)], NOW)
        state = decision.state
        assert all(isinstance(a, StartAttempt) for a in decision.actions)
    assert max(sizes) == 1
    assert state.status is ExecutionStatus.COMPLETED


# -- ledger lines ----------------------------------------------------------------------------
def test_ledger_append_after_a_partial_line_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'{"a": 1}\n{"partial": ')
    ledger = JsonlLedger(path)
    ledger({"b": 2})
    ledger.close()
    lines = list(read_lines(path))
    assert [line.number for line in lines] == [1, 2, 3]
    assert lines[0].entry == {"a": 1} and lines[2].entry == {"b": 2}
    assert lines[1].damage is not None and "not valid JSON" in lines[1].damage


def test_ledger_reader_reports_bad_bytes_and_huge_lines(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    huge = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}\n'
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n' + huge + b'{"c": 3}\n')
    lines = list(read_lines(path))
    assert [(line.number, line.damage is None) for line in lines] == [
        (1, True),
        (2, False),
        (3, False),
        (4, True),
    ]
    assert "not UTF-8" in (lines[1].damage or "")
    assert "longer than" in (lines[2].damage or "")
    assert json.dumps(lines[3].entry) == '{"c": 3}'


def test_invalid_runbook_limits_name_the_field() -> None:
    with pytest.raises(InvalidRunbook):
        from runbook_engine.loader import definition_from_document

        definition_from_document({"id": "x", "maxOutputBytes": 10})
