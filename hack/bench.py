"""Engine benchmarks: prints figures (targets are in docs/engine.md; they are not enforced here).

1. wall time of 1,000 no-op steps through the local runner, in-process (target < 3 s)
2. time per drive step (`runbook_engine.driver.drive`: schedule + audit append, what every shell
   does per transition) at 10 / 100 / 1,000 / 10,000 steps (should stay ~flat: total work linear
   in steps, not quadratic)
3. audit-ledger verification throughput (target >= 50,000 entries/s)
4. wall time of a 10,000-step chain through the local runner, in-process: each step's context
   holds only its direct dependency's output, so this grows linearly (it used to be quadratic:
   1,000 steps 10 s, 10,000 unfinished after 400 s)

Each measurement also checks that its run was sound (the execution completed, the ledger
verifies) and stops with an error if not: a figure from a broken run means nothing.
"""

from __future__ import annotations

import asyncio
import gc
import resource
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


def bench_runner(n: int = 1000, shape: Callable[[int], RunbookDefinition] = layered) -> float:
    plan = compile_plan(shape(n), {"NOOP"})
    request = ExecutionRequest(runbook_ref=RunbookRef(name=plan.definition.id))
    runner = LocalRunner(
        plan, request, isolation="inline", registry=ExecutorRegistry([NoopExecutor()])
    )
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


def bench_verify(count: int = 100_000) -> float:
    chain = AuditChain("bench-verify")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
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
    start = time.perf_counter()
    result = verify(chain.entries)
    elapsed = time.perf_counter() - start
    _check(result.valid, f"verify bench: the ledger does not verify ({result.error})")
    return count / elapsed


def main() -> None:
    print("runbook-engine benchmarks (figures only; targets in docs/engine.md)")
    wall = bench_runner(1000)
    print(f"1. 1,000 no-op steps, local runner in-process: {wall:.2f} s  (target < 3 s)")
    print("2. drive step (schedule + audit), layered DAG (width 10), one completion per call:")
    print(f"   {'steps':>7} {'transitions':>12} {'total s':>9} {'µs/transition':>14}")
    for n in (10, 100, 1000, 10_000):
        transitions, elapsed = bench_drive(n)
        print(f"   {n:>7} {transitions:>12} {elapsed:>9.3f} {elapsed / transitions * 1e6:>14.1f}")
    rate = bench_verify()
    print(f"3. ledger verify: {rate:,.0f} entries/s  (target >= 50,000/s)")
    wall = bench_runner(10_000, chain)
    print(f"4. 10,000-step chain, local runner in-process: {wall:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"   peak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
