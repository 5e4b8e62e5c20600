"""The local engine, in-process: what every transition costs before any cluster is involved.

1. 1,000 no-op steps through the local runner in-process, 100 with process isolation (one
   process per attempt forked from the fork server, as `runbookctl run` does by default), and
   20 with one interpreter per attempt (`python -m runbook_executors`, as before the fork
   server and still off Linux)
2. time per drive step (`runbook_engine.driver.drive`: schedule + audit append, what every shell
   does per transition) at 10 / 100 / 1,000 / 10,000 steps (should stay ~flat: total work linear
   in steps, not quadratic)
3. audit-ledger append and verify rates

Each measurement also checks that its run was sound (the execution completed, the ledger
verifies) and stops with an error if not: a figure from a broken run means nothing.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from runbook_engine.audit import AuditChain, AuditEvent, verify
from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_engine.driver import Actors, drive
from runbook_engine.enums import ExecutionStatus, LogEventType
from runbook_engine.model import ExecutionRequest, RunbookDefinition, RunbookRef
from runbook_engine.plan import compile_plan
from runbook_engine.scheduler import AttemptFinished, StartAttempt, new_execution
from runbook_executors.base import BaseStepExecutor
from runbook_executors.registry import ExecutorRegistry
from runbookctl.runner import LocalRunner

from .figures import Figure, Samples

ENGINE = "runbook-engine"

OK = StepExecutorResult(success=True)


def _check(sound: bool, problem: str) -> None:
    """Stop with `problem` when a measured run went wrong (its figure would mean nothing)."""
    if not sound:
        raise SystemExit(f"bench: {problem}")


class NoopExecutor(BaseStepExecutor):
    action_type: ClassVar[str] = "NOOP"

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        return OK


def layered(n: int, width: int = 10) -> RunbookDefinition:
    """n steps in layers of `width`; each step depends on two steps of the previous layer."""
    steps: list[dict[str, Any]] = []
    for i in range(n):
        layer, col = divmod(i, width)
        deps = []
        if layer:
            base = (layer - 1) * width
            deps = sorted({f"s{base + col}", f"s{base + (col + 1) % width}"})
        steps.append({"id": f"s{i}", "actionType": "NOOP", "dependsOn": deps})
    return RunbookDefinition.model_validate(
        {"id": f"bench{n}", "steps": steps, "maxParallelSteps": width}
    )


def chain(n: int) -> RunbookDefinition:
    """n steps, each depending on the one before."""
    steps = [
        {"id": f"s{i}", "actionType": "NOOP", "dependsOn": [f"s{i - 1}"] if i else []}
        for i in range(n)
    ]
    return RunbookDefinition.model_validate({"id": f"chain{n}", "steps": steps})


def transforms(n: int) -> RunbookDefinition:
    """`layered(n)` with TRANSFORM steps: an executor a child process can load by name."""
    base = layered(n).model_dump(by_alias=True, exclude_none=True)
    for step in base["steps"]:
        step.update(actionType="TRANSFORM", config={"expressions": {"one": "`1`"}})
    return RunbookDefinition.model_validate(base)


def bench_runner(
    n: int = 1000,
    shape: Callable[[int], RunbookDefinition] = layered,
    isolation: str = "inline",
    fork_server: bool = True,
) -> float:
    """Seconds for one run of `shape(n)`, the fork server's start included; `fork_server=False`
    starts one interpreter per attempt (what process isolation did before the fork server)."""
    definition = shape(n)
    plan = compile_plan(definition, {s.action_type for s in definition.steps})
    request = ExecutionRequest(runbook_ref=RunbookRef(name=plan.definition.id))
    registry = ExecutorRegistry([NoopExecutor()]) if isolation == "inline" else None
    runner = LocalRunner(plan, request, isolation=isolation, registry=registry)
    runner.use_fork_server = runner.use_fork_server and fork_server
    start = time.perf_counter()
    outcome = asyncio.run(runner.run())
    elapsed = time.perf_counter() - start
    _check(
        outcome.state.status is ExecutionStatus.COMPLETED,
        f"runner bench ended {outcome.state.status}",
    )
    return elapsed


def bench_drive(n: int) -> tuple[int, float]:
    """Drive the engine with instant completions fed one per call (the worst case for per-call
    overhead); returns (transitions, seconds)."""
    plan = compile_plan(layered(n), {"NOOP"})
    request = ExecutionRequest(runbook_ref=RunbookRef(name=plan.definition.id))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = new_execution(plan, "bench", now)
    chain = AuditChain("bench")
    actors = Actors("bench")
    queue: deque[AttemptFinished] = deque()
    transitions = 0
    gc.collect()
    start = time.perf_counter()
    while not state.status.terminal:
        observations = [queue.popleft()] if queue else []
        step = drive(plan, request, state, chain, observations, now, actors)
        state = step.state
        transitions += 1
        queue.extend(
            AttemptFinished(a.step_id, a.attempt, OK)
            for a in step.decision.actions
            if isinstance(a, StartAttempt)
        )
        now += timedelta(milliseconds=1)
    elapsed = time.perf_counter() - start
    _check(state.status is ExecutionStatus.COMPLETED, f"drive bench ended {state.status}")
    _check(verify(chain.entries).valid, "drive bench: the ledger does not verify")
    return transitions, elapsed


def bench_ledger(count: int = 100_000) -> tuple[float, float]:
    """(append, verify) rates in entries per second."""
    chain = AuditChain("bench-verify")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    start = time.perf_counter()
    for i in range(count):
        chain.append(
            AuditEvent(
                f"e{i}",
                LogEventType.STEP_SUCCEEDED,
                f"s{i % 100}",
                {"attempt": 1, "durationMs": i % 1000, "outputHash": "ab" * 32},
            ),
            actor_id="bench",
            timestamp=t0 + timedelta(milliseconds=i),
        )
    appended = time.perf_counter() - start
    start = time.perf_counter()
    result = verify(chain.entries)
    elapsed = time.perf_counter() - start
    _check(result.valid, f"verify bench: the ledger does not verify ({result.error})")
    return count / appended, count / elapsed


DRIVE_SIZES = (10, 100, 1000, 10_000)
PROCESS_STEPS = 100
EXEC_STEPS = 20
"""One interpreter per attempt costs ~0.4 s each: a shorter run keeps the comparison cheap."""


def _fig(
    scenario: str, metric: str, unit: str, better: str, value: float, target: float | None = None
) -> Figure:
    return Figure("engine", scenario, metric, ENGINE, unit, better, [value], target)  # type: ignore[arg-type]


def run_once() -> list[Figure]:
    """One repeat of every engine measurement."""
    inline = bench_runner(1000)
    process = bench_runner(PROCESS_STEPS, transforms, isolation="process")
    execs = bench_runner(EXEC_STEPS, transforms, isolation="process", fork_server=False)
    figures = [
        _fig("noop-1000-inline", "wall_s", "s", "lower", inline, 3.0),
        _fig("noop-1000-inline", "steps_per_s", "steps/s", "higher", 1000 / inline),
        _fig(f"noop-{PROCESS_STEPS}-process", "wall_s", "s", "lower", process),
        _fig(
            f"noop-{PROCESS_STEPS}-process",
            "steps_per_s",
            "steps/s",
            "higher",
            PROCESS_STEPS / process,
            50,
        ),
        _fig(
            f"noop-{EXEC_STEPS}-process-exec",
            "steps_per_s",
            "steps/s",
            "higher",
            EXEC_STEPS / execs,
        ),
    ]
    for n in DRIVE_SIZES:
        transitions, elapsed = bench_drive(n)
        figures.append(
            _fig(f"drive-{n}", "us_per_transition", "µs", "lower", elapsed / transitions * 1e6)
        )
    append, check = bench_ledger()
    figures += [
        _fig("ledger-100000", "append_per_s", "entries/s", "higher", append),
        _fig("ledger-100000", "verify_per_s", "entries/s", "higher", check, 100_000),
    ]
    return figures


def run(repeat: int, progress: Any) -> tuple[list[Figure], list[Samples]]:
    task = progress.add_task("engine", total=repeat)
    figures: list[Figure] = []
    for i in range(repeat):
        progress.update(task, description=f"engine: repeat {i + 1}/{repeat}")
        figures += run_once()
        progress.advance(task)
    return figures, []
