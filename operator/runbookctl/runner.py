"""The local runner: the imperative shell that drives the pure scheduler on one machine.

Each attempt runs as a subprocess through the same entrypoint the Job pods use
(`python -m runbook_executors run --context C --result R`), in its own process group, so a
timeout or a cancel really stops the work. `isolation="inline"` runs executors in this process
(fast, for trusted executors and benchmarks; a timeout then cancels only async work).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from runbook_engine.audit import AuditChain
from runbook_engine.context import build_context
from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_engine.control import ControlError, apply_control
from runbook_engine.driver import Actors, drive
from runbook_engine.enums import ControlAction
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan
from runbook_engine.scheduler import (
    AttemptFinished,
    AttemptLost,
    Decision,
    Observation,
    StartAttempt,
    StopAttempt,
    new_execution,
)
from runbook_engine.state import ExecutionState
from runbook_engine.timeutil import utcnow

Isolation = Literal["process", "inline"]
KILL_GRACE_SECONDS = 2.0


__all__ = ["ControlError", "Isolation", "JsonlLedger", "LocalRunner", "RunOutcome"]


class EntrySink(Protocol):
    """Where appended audit entries go (a JSON Lines ledger file, a test list...)."""

    def __call__(self, entry: dict[str, Any]) -> None: ...


class JsonlLedger:
    """Appends entries to a JSON Lines file, one per line, flushed as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")

    def __call__(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass
class RunOutcome:
    state: ExecutionState
    chain: AuditChain
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Attempt:
    step_id: str
    attempt: int
    task: asyncio.Task[Observation]


class LocalRunner:
    """Runs one execution to a terminal phase. Control methods may be called while it runs."""

    def __init__(
        self,
        plan: Plan,
        request: ExecutionRequest,
        *,
        execution_id: str | None = None,
        isolation: Isolation = "process",
        registry: Any = None,
        base_dir: Path | None = None,
        work_dir: Path | None = None,
        sinks: list[EntrySink] | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        actor: str = "runbookctl",
    ) -> None:
        self.plan = plan
        self.request = request
        self.execution_id = (
            execution_id or f"{plan.definition.id.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        )
        self.isolation = isolation
        self.registry = registry
        self.base_dir = base_dir
        self.work_dir = work_dir
        self.sinks = sinks or []
        self.on_decision = on_decision
        self.clock = clock
        self.actor = actor
        self.chain = AuditChain(self.execution_id)
        self.state: ExecutionState = new_execution(plan, self.execution_id, clock())
        self._wake = asyncio.Event()
        self._control_actor: str | None = None
        self._warnings: list[str] = []

    # -- control (level changes to the request, as `kubectl patch` does on a cluster) ---------
    def pause(self, actor: str = "user") -> None:
        self._control(ControlAction.PAUSE, actor)

    def resume(self, actor: str = "user") -> None:
        self._control(ControlAction.RESUME, actor)

    def cancel(self, actor: str = "user") -> None:
        self._control(ControlAction.CANCEL, actor)

    def _control(self, action: ControlAction, actor: str) -> None:
        self.request = apply_control(self.request, action, self.state.status, self.execution_id)
        self._control_actor = actor
        self._wake.set()

    # -- main loop -----------------------------------------------------------------------------
    async def run(self) -> RunOutcome:
        attempts: dict[tuple[str, int], _Attempt] = {}
        observations: list[Observation] = []
        with contextlib.ExitStack() as stack:
            work = self.work_dir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="runbook-"))
            )
            while True:
                self._wake.clear()
                step = drive(
                    self.plan,
                    self.request,
                    self.state,
                    self.chain,
                    observations,
                    self.clock(),
                    self._actors(),
                )
                decision = step.decision
                observations = []
                self.state = decision.state
                for entry in step.entries:
                    for sink in self.sinks:
                        sink(entry)
                self._warnings.extend(decision.warnings)
                for action in decision.actions:
                    if isinstance(action, StartAttempt):
                        ctx = build_context(
                            self.plan, self.request, self.state, action.step_id, action.attempt
                        )
                        task = asyncio.create_task(self._run_attempt(ctx, work))
                        attempts[(action.step_id, action.attempt)] = _Attempt(
                            action.step_id, action.attempt, task
                        )
                    elif isinstance(action, StopAttempt):
                        running = attempts.pop((action.step_id, action.attempt), None)
                        if running is not None:
                            running.task.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await running.task
                if self.on_decision:
                    self.on_decision(decision)
                if self.state.status.terminal:
                    for leftover in attempts.values():
                        leftover.task.cancel()
                    await asyncio.gather(
                        *(a.task for a in attempts.values()), return_exceptions=True
                    )
                    break
                observations = await self._wait(attempts, decision.next_wakeup)
        return RunOutcome(self.state, self.chain, self._warnings)

    async def _wait(
        self, attempts: dict[tuple[str, int], _Attempt], next_wakeup: datetime | None
    ) -> list[Observation]:
        """Block until an attempt ends, a control call arrives, or the next deadline passes."""
        timeout = None
        if next_wakeup is not None:
            timeout = max(0.0, (next_wakeup - self.clock()).total_seconds()) + 0.001
        waker = asyncio.create_task(self._wake.wait())
        pending = {a.task for a in attempts.values()} | {waker}
        await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not waker.done():
            waker.cancel()
        observations: list[Observation] = []
        for key, item in list(attempts.items()):
            if item.task.done():
                del attempts[key]
                if not item.task.cancelled():
                    observations.append(item.task.result())
        return observations

    def _actors(self) -> Actors:
        return Actors(self.actor, self.request.started_by, self._control_actor)

    # -- attempts ------------------------------------------------------------------------------
    async def _run_attempt(self, ctx: StepExecutorContext, work: Path) -> Observation:
        if self.isolation == "inline":
            return await self._run_inline(ctx)
        return await self._run_subprocess(ctx, work)

    async def _run_inline(self, ctx: StepExecutorContext) -> Observation:
        from runbook_executors.base import invoke
        from runbook_executors.registry import default_registry

        registry = self.registry or default_registry()
        try:
            executor = registry.get(ctx.action_type)
        except LookupError as exc:
            return AttemptFinished(
                ctx.step_id, ctx.attempt, StepExecutorResult(success=False, error=str(exc))
            )
        result = await invoke(executor, ctx)
        return AttemptFinished(ctx.step_id, ctx.attempt, result)

    async def _run_subprocess(self, ctx: StepExecutorContext, work: Path) -> Observation:
        stem = f"{ctx.step_id}.{ctx.attempt}"
        ctx_path = work / f"{stem}.context.json"
        result_path = work / f"{stem}.result.json"
        log_path = work / f"{stem}.log"
        ctx_path.write_text(json.dumps(ctx.wire()), encoding="utf-8")
        env = dict(os.environ)
        if self.base_dir is not None:
            # Relative data paths and CUSTOM modules resolve next to the runbook file.
            env["RUNBOOK_BASE_DIR"] = str(self.base_dir)
            paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join([*paths, str(self.base_dir)])
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runbook_executors",
                "run",
                "--context",
                str(ctx_path),
                "--result",
                str(result_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            try:
                code = await proc.wait()
            except asyncio.CancelledError:
                await _terminate(proc)
                raise
        if result_path.exists():
            try:
                result = StepExecutorResult.model_validate_json(
                    result_path.read_text(encoding="utf-8")
                )
            except ValueError as exc:
                return AttemptLost(ctx.step_id, ctx.attempt, f"unreadable result file: {exc}")
            return AttemptFinished(ctx.step_id, ctx.attempt, result)
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-500:].strip()
        return AttemptLost(
            ctx.step_id, ctx.attempt, f"exited with code {code} without a result: {tail}"
        )


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the whole process group, then SIGKILL after a grace period."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
            return
        except TimeoutError:
            continue
