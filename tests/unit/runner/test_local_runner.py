"""The local runner with real subprocesses: timeouts kill, cancel stops, pause keeps work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runbook_engine.enums import ExecutionStatus, StepStatus
from runbook_engine.model import ExecutionRequest, RunbookRef
from runbookctl.files import load_plan
from runbookctl.runner import ControlError, LocalRunner
from tests.unit.conftest import WriteRunbook
from tests.unit.helpers import pid_alive, wait_for

pytestmark = pytest.mark.timeout(120)


def make_runner(path: Path, **request: object) -> LocalRunner:
    plan = load_plan(path)
    req = ExecutionRequest(runbook_ref=RunbookRef(name=plan.definition.id), **request)  # type: ignore[arg-type]
    return LocalRunner(plan, req, base_dir=path.parent)


def events(runner: LocalRunner) -> list[str]:
    return [e["eventType"] for e in runner.chain.entries]


def read_pids(workdir: Path, stem: str) -> tuple[int, int]:
    own, child = (workdir / f"{stem}.pid").read_text().split()
    return int(own), int(child)


def test_timeout_kills_the_step_and_its_children(
    write_runbook: WriteRunbook, workdir: Path
) -> None:
    path = write_runbook(
        [{"id": "slow", "timeoutMs": 1500, "config": {"function": "runner_steps:sleeper"}}]
    )
    runner = make_runner(path)
    outcome = asyncio.run(runner.run())
    step = outcome.state.steps["slow"]
    assert outcome.state.status is ExecutionStatus.FAILED
    assert step.status is StepStatus.FAILED
    assert "timed out after 1500 ms" in (step.message or "")
    own, child = read_pids(workdir, "slow.1")
    assert wait_for(lambda: not pid_alive(own) and not pid_alive(child), 10)
    assert not (workdir / "slow.finished").exists()


def test_retry_after_failure_then_success(write_runbook: WriteRunbook) -> None:
    path = write_runbook(
        [
            {
                "id": "flaky",
                "retryPolicy": {"maxAttempts": 3, "backoffSeconds": 0.2},
                "config": {"function": "runner_steps:flaky", "failures": 1},
            }
        ]
    )
    runner = make_runner(path)
    state = asyncio.run(runner.run()).state
    assert state.status is ExecutionStatus.COMPLETED
    assert state.steps["flaky"].attempt == 2
    assert state.outputs["flaky"] == {"attempt": 2}
    assert "STEP_ATTEMPT_FAILED" in events(runner)


def test_crash_without_result_is_a_failed_attempt(write_runbook: WriteRunbook) -> None:
    path = write_runbook([{"id": "boom", "config": {"function": "runner_steps:crash"}}])
    state = asyncio.run(make_runner(path).run()).state
    assert state.steps["boom"].status is StepStatus.FAILED
    assert "exited with code 3" in (state.steps["boom"].message or "")


def test_cancel_stops_running_work(write_runbook: WriteRunbook, workdir: Path) -> None:
    path = write_runbook(
        [
            {"id": "slow", "config": {"function": "runner_steps:sleeper"}},
            {"id": "after", "dependsOn": ["slow"], "config": {"function": "runner_steps:counted"}},
        ]
    )
    runner = make_runner(path)

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        while not (workdir / "slow.1.pid").exists():
            await asyncio.sleep(0.05)
        runner.cancel(actor="tester")
        await task

    asyncio.run(scenario())
    state = runner.state
    assert state.status is ExecutionStatus.CANCELLED
    assert state.steps["slow"].status is StepStatus.CANCELLED
    assert state.steps["after"].status is StepStatus.CANCELLED
    own, child = read_pids(workdir, "slow.1")
    assert wait_for(lambda: not pid_alive(own) and not pid_alive(child), 10)
    assert not (workdir / "after.runs").exists()
    cancelled = [e for e in runner.chain.entries if e["eventType"] == "EXECUTION_CANCELLED"]
    assert cancelled and cancelled[0]["actorId"] == "tester"
    with pytest.raises(ControlError, match="already CANCELLED"):
        runner.pause()


def test_pause_keeps_running_result_and_resume_never_reruns(
    write_runbook: WriteRunbook, workdir: Path
) -> None:
    path = write_runbook(
        [
            {"id": "first", "config": {"function": "runner_steps:counted", "seconds": 1.0}},
            {
                "id": "second",
                "dependsOn": ["first"],
                "config": {"function": "runner_steps:counted"},
            },
        ]
    )
    runner = make_runner(path)

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        while runner.state.steps["first"].status is not StepStatus.RUNNING:
            await asyncio.sleep(0.02)
        runner.pause()
        while runner.state.steps["first"].status is StepStatus.RUNNING:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # paused: `second` must not start
        assert runner.state.status is ExecutionStatus.PAUSED
        assert runner.state.steps["first"].status is StepStatus.SUCCEEDED
        assert runner.state.steps["second"].status is StepStatus.PENDING
        assert not (workdir / "second.runs").exists()
        runner.resume()
        await task

    asyncio.run(scenario())
    assert runner.state.status is ExecutionStatus.COMPLETED
    assert (workdir / "first.runs").read_text().splitlines() == ["1"]
    assert (workdir / "second.runs").read_text().splitlines() == ["1"]
    kinds = events(runner)
    assert kinds.index("EXECUTION_PAUSED") < kinds.index("EXECUTION_RESUMED")
    with pytest.raises(ControlError, match="cannot resume"):
        runner.resume()


def test_rejected_request_runs_nothing(write_runbook: WriteRunbook, workdir: Path) -> None:
    path = write_runbook(
        [{"id": "only", "config": {"function": "runner_steps:counted"}}],
        legalBasisRequired=["public_task"],
        dataLicensesRequired=["internal_use_only"],
    )
    runner = make_runner(path, legal_basis="consent")
    state = asyncio.run(runner.run()).state
    assert state.status is ExecutionStatus.FAILED
    assert "legalBasis" in (state.message or "") and "internal_use_only" in (state.message or "")
    assert not (workdir / "only.runs").exists()
    assert events(runner)[0] == "EXECUTION_REJECTED"
    assert "STEP_STARTED" not in events(runner)
