"""The local runner: the imperative shell that drives the pure scheduler on one machine.

Each attempt runs in its own process through the same entrypoint the Job pods use
(`runbook_executors.entrypoint`, as `python -P -m runbook_executors run --context C --result R`),
in its own session, so a timeout or a cancel really stops the work; the runner is a child
subreaper and every process of an attempt carries a token, so processes that start their own
session are stopped too. On Linux that process is forked from a fork server started once per
run with the executors already imported (runbookctl.forking: an order of magnitude cheaper
than a new interpreter per attempt); elsewhere it is a new interpreter.
`isolation="inline"` runs executors in this process (fast, for trusted executors and
benchmarks; a timeout then cancels only async work).

What an attempt may cost is bounded: its output (runbook_engine.limits, checked before the
result file is read), the log tail kept (the rest of its output is read and dropped).

A step's `container` is the cluster's (image, command, env, resources): locally an attempt
inherits runbookctl's environment. No kubelet resolves a Secret or ConfigMap reference here, so
a `container.env` entry with `valueFrom` is satisfied by the variable of the same name in that
environment (export it); when it is missing (and not `optional`) the attempt fails naming the
entry. The values of entries from Secret keys are scrubbed from the attempt's result, as the
step pod does on a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from runbook_engine.audit import AuditChain
from runbook_engine.context import build_context
from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_engine.control import ControlError, apply_control
from runbook_engine.driver import Actors, drive
from runbook_engine.enums import ControlAction
from runbook_engine.identity import Identity, local_identity
from runbook_engine.limits import (
    clip_message,
    effective_output_limit,
    output_size_problem,
    result_file_limit,
    result_file_too_large,
)
from runbook_engine.model import ExecutionRequest, RunbookStep
from runbook_engine.plan import Plan
from runbook_engine.scheduler import (
    Action,
    AttemptFinished,
    AttemptLost,
    AwaitApproval,
    Decision,
    Observation,
    StartAttempt,
    new_execution,
)
from runbook_engine.state import ExecutionState
from runbook_engine.timeutil import utcnow
from runbook_executors import processes
from runbook_executors.secrets import env_secrets, redact, scrub_result
from runbookctl.forking import ForkServer, ForkServerGone, kill_attempt
from runbookctl.ledger import JsonlLedger
from runbookctl.sweeper import LeftoverSweeper

if TYPE_CHECKING:
    from runbook_executors.registry import ExecutorRegistry
    from runbookctl.local_approval import LocalApprover

FORK_SERVER_SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "send_fds")
KILL_GRACE_SECONDS = 2.0
LOG_TAIL_BYTES = 4096
"""Of an attempt's stdout/stderr only the last bytes are kept (for the 'exited without a
result' message); the rest is read and dropped, so a step printing gigabytes costs no memory."""
LOG_TAIL_CHARS = 500


class Isolation(StrEnum):
    """How attempts run: `process` (own process, killable; default) or `inline` (this process)."""

    process = "process"
    inline = "inline"


__all__ = [
    "ControlError",
    "Isolation",
    "JsonlLedger",
    "LocalRunner",
    "RunOutcome",
    "cluster_only_sources",
    "unresolved_reference",
]


def unresolved_reference(step: RunbookStep, environ: Mapping[str, str]) -> str | None:
    """Why `step` cannot run here: a `valueFrom` entry whose variable is not set locally."""
    if step.container is None:
        return None
    for index, entry in enumerate(step.container.env_vars()):
        source = entry.value_from
        if source is None or entry.name in environ:
            continue
        kind, ref = (
            ("secretKeyRef", source.secret_key_ref)
            if source.secret_key_ref is not None
            else ("configMapKeyRef", source.config_map_key_ref)
        )
        if ref is None or ref.optional:
            continue
        return (
            f"container.env[{index}] ({entry.name}): valueFrom.{kind} {ref.name}/{ref.key} is "
            f"resolved by the kubelet on a cluster; to run this step locally, export "
            f"{entry.name}"
        )
    return None


def cluster_only_sources(plan: Plan) -> list[str]:
    """One note per `container.envFrom` source: locally its keys are not read (the step sees
    runbookctl's environment), which a user should know before a step fails for it."""
    notes = []
    for step_id in plan.order:
        container = plan.steps[step_id].container
        for index, source in enumerate(container.env_from if container else ()):
            notes.append(
                f"step {step_id}: container.envFrom[{index}] ({source.field}) is read on a "
                "cluster only; locally the step sees runbookctl's environment"
            )
    return notes


class EntrySink(Protocol):
    """Where appended audit entries go (a JSON Lines ledger file, a test list...)."""

    def __call__(self, entry: dict[str, Any]) -> None: ...


@dataclass
class RunOutcome:
    state: ExecutionState
    chain: AuditChain
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Attempt:
    step_id: str
    attempt: int
    task: asyncio.Task[Observation] | asyncio.Task[list[Observation]]


class LocalRunner:
    """Runs one execution to a terminal phase. Control methods may be called while it runs."""

    def __init__(
        self,
        plan: Plan,
        request: ExecutionRequest,
        *,
        execution_id: str | None = None,
        isolation: Isolation | str = Isolation.process,
        registry: ExecutorRegistry | None = None,
        base_dir: Path | None = None,
        work_dir: Path | None = None,
        sinks: list[EntrySink] | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        actor: str = "runbookctl",
        max_output_bytes: int | None = None,
        identity: Identity | None = None,
        initial_state: ExecutionState | None = None,
        approver: LocalApprover | None = None,
    ) -> None:
        self.plan = plan
        self.request = request
        self.execution_id = (
            execution_id
            or (initial_state.execution_id if initial_state is not None else None)
            or f"{plan.definition.id.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        )
        self.isolation = Isolation(isolation)
        self.registry = registry
        self.base_dir = base_dir
        self.work_dir = work_dir
        self.sinks = sinks or []
        self.on_decision = on_decision
        self.clock = clock
        self.actor = actor
        self.identity = identity or local_identity()
        """Who runs this: the OS user, recorded as the authenticated starter. A control keeps the
        actor its caller names (a signal, a test): the process owner sent it either way."""
        self.approver = approver
        """Where APPROVAL steps' decisions come from (none: such a step fails, saying so)."""
        self.output_limit = effective_output_limit(
            plan.definition.max_output_bytes, max_output_bytes
        )
        """Largest output an attempt may return: the runbook's limit under this shell's cap."""
        self.chain = AuditChain(self.execution_id)
        self.state: ExecutionState = initial_state or new_execution(
            plan, self.execution_id, clock()
        )
        """A re-run starts from its prepared state (runbook_engine.rerun.rerun_execution)."""
        self._wake = asyncio.Event()
        self._control_actor: str | None = None
        self._warnings: list[str] = []
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}/"
        """Prefix of the ATTEMPT_ENV token of every attempt of this run (see processes)."""
        self.use_fork_server = FORK_SERVER_SUPPORTED
        """Fork attempts from a warm server (Linux) rather than start an interpreter each."""
        self.fork_server: ForkServer | None = None
        self._sweeper = LeftoverSweeper()
        self._fork_server_lock = asyncio.Lock()

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
            work = self._prepare(stack)
            try:
                await self._start_fork_server()
                while True:
                    self._wake.clear()
                    decision = self._drive(observations)
                    await self._carry_out(decision.actions, attempts, work)
                    if self.on_decision:
                        self.on_decision(decision)
                    if self.state.status.terminal:
                        await _stop_all(attempts)
                        break
                    observations = await self._wait(attempts, decision.next_wakeup)
            finally:
                await self._close_fork_server()
                self._stop_leftovers(self._token)
        return RunOutcome(self.state, self.chain, self._warnings)

    def _prepare(self, stack: contextlib.ExitStack[bool | None]) -> Path:
        """The work directory; for inline attempts, RUNBOOK_BASE_DIR while the run lasts."""
        if self.isolation is Isolation.process:
            processes.become_subreaper()
        elif self.base_dir is not None:
            stack.enter_context(_environ(RUNBOOK_BASE_DIR=str(self.base_dir)))
        if self.work_dir is not None:
            return self.work_dir
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runbook-")))

    def _drive(self, observations: list[Observation]) -> Decision:
        """One drive step: new state, ledger entries to the sinks, warnings kept."""
        step = drive(
            self.plan,
            self.request,
            self.state,
            self.chain,
            observations,
            self.clock(),
            self._actors(),
        )
        self.state = step.state
        for entry in step.entries:
            for sink in self.sinks:
                sink(entry)
        self._warnings.extend(step.decision.warnings)
        return step.decision

    async def _carry_out(
        self,
        actions: Iterable[Action],
        attempts: dict[tuple[str, int], _Attempt],
        work: Path,
    ) -> None:
        for action in actions:
            key = (action.step_id, action.attempt)
            if isinstance(action, AwaitApproval):
                waiting = asyncio.create_task(self._await_approval(action))
                attempts[key] = _Attempt(action.step_id, action.attempt, waiting)
            elif isinstance(action, StartAttempt):
                ctx = build_context(
                    self.plan, self.request, self.state, action.step_id, action.attempt
                )
                task = asyncio.create_task(self._run_attempt(ctx, work))
                attempts[key] = _Attempt(action.step_id, action.attempt, task)
            elif (running := attempts.pop(key, None)) is not None:
                running.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running.task

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
                    result = item.task.result()
                    observations.extend(result if isinstance(result, list) else [result])
        return observations

    def _actors(self) -> Actors:
        return Actors(
            self.actor,
            self.request.started_by,
            self._control_actor,
            requester=self.identity,
        )

    # -- approvals -----------------------------------------------------------------------------
    async def _await_approval(self, action: AwaitApproval) -> list[Observation]:
        """The decisions of a waiting APPROVAL step. A prompt blocks on the terminal, so it
        runs on a daemon thread: the run's other attempts go on, and a deadline or a cancel
        ends the wait without waiting for the user."""
        if self.approver is None:
            error = f"step {action.step_id} is an APPROVAL step and this shell takes no decisions"
            failed = StepExecutorResult(success=False, error=error, retryable=False)
            return [AttemptFinished(action.step_id, action.attempt, failed)]
        approver, state, now = self.approver, self.state, self.clock()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Observation]] = loop.create_future()

        def work() -> None:
            try:
                found = approver.collect(
                    self.plan, state, action.step_id, action.attempt, now, None
                )
            except BaseException as exc:  # handed to the loop, raised there
                loop.call_soon_threadsafe(_settle, done, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, done, found, None)

        threading.Thread(target=work, name=f"approve-{action.step_id}", daemon=True).start()
        return await done

    # -- attempts ------------------------------------------------------------------------------
    async def _run_attempt(self, ctx: StepExecutorContext, work: Path) -> Observation:
        problem = unresolved_reference(self.plan.steps[ctx.step_id], os.environ)
        if problem is not None:
            failed = StepExecutorResult(success=False, error=problem, retryable=False)
            return AttemptFinished(ctx.step_id, ctx.attempt, failed)
        if self.isolation is Isolation.inline:
            return await self._run_inline(ctx)
        return await self._run_subprocess(ctx, work)

    def _checked(self, ctx: StepExecutorContext, result: StepExecutorResult) -> Observation:
        """Secret-injected values scrubbed; a successful result whose output is over the limit
        is a failed attempt."""
        result = scrub_result(result, self._injected(ctx))
        if result.success:
            try:
                problem = output_size_problem(result.output, self.output_limit)
            except (TypeError, ValueError):
                problem = None  # not canonical JSON: the scheduler says so
            if problem is not None:
                result = StepExecutorResult(success=False, error=problem)
        return AttemptFinished(ctx.step_id, ctx.attempt, result)

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
        return self._checked(ctx, await invoke(executor, ctx))

    def _injected(self, ctx: StepExecutorContext) -> set[str]:
        """Values the step has from Secret keys (here: from runbookctl's environment)."""
        container = self.plan.steps[ctx.step_id].container
        return env_secrets(container.secret_env_names(), os.environ) if container else set()

    def _attempt_env(self, ctx: StepExecutorContext) -> dict[str, str]:
        """The step's environment: ours, plus the runbook folder and the attempt's token.

        PYTHONPATH is left alone: CUSTOM finds modules of the runbook folder through
        RUNBOOK_BASE_DIR after the installed packages, so no file there shadows a library."""
        env = dict(os.environ)
        if self.base_dir is not None:
            env["RUNBOOK_BASE_DIR"] = str(self.base_dir)
        env[processes.ATTEMPT_ENV] = self._attempt_token(ctx)
        env[processes.PARENT_ENV] = str(os.getpid())
        return env

    def _attempt_token(self, ctx: StepExecutorContext) -> str:
        return f"{self._token}{ctx.step_id}/{ctx.attempt}/"

    async def _run_subprocess(self, ctx: StepExecutorContext, work: Path) -> Observation:
        stem = f"{ctx.step_id}.{ctx.attempt}"
        ctx_path = work / f"{stem}.context.json"
        result_path = work / f"{stem}.result.json"
        ctx_path.write_text(json.dumps(ctx.wire()), encoding="utf-8")
        if self.use_fork_server:
            return await self._run_forked(ctx, ctx_path, result_path)
        # -P: the working directory is not put on sys.path (no module there replaces ours).
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-P", "-m", "runbook_executors", "run"),
            *("--context", str(ctx_path), "--result", str(result_path)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._attempt_env(ctx),
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            tail = await _tail(proc.stdout, LOG_TAIL_BYTES)
            code = await proc.wait()
        except asyncio.CancelledError:
            await _terminate(proc)
            raise
        finally:
            self._stop_leftovers(self._attempt_token(ctx))
        return self._read_result(ctx, result_path, code, tail)

    async def _server(self) -> ForkServer:
        """The run's fork server, started on first use and again if it died."""
        async with self._fork_server_lock:
            if self.fork_server is None or not self.fork_server.alive:
                if self.fork_server is not None:
                    await self.fork_server.close()
                action_types = {step.action_type for step in self.plan.steps.values()}
                self.fork_server = await ForkServer.start(os.environ, action_types)
            return self.fork_server

    async def _start_fork_server(self) -> None:
        """Start the server before the first attempt (its start is not charged to a step's
        timeout); if it cannot start, attempts each start an interpreter, as elsewhere."""
        if self.isolation is not Isolation.process or not self.use_fork_server:
            return
        try:
            await self._server()
        except ForkServerGone as exc:
            self.use_fork_server = False
            self._warnings.append(f"{exc}: each step starts its own Python instead (slower)")

    async def _close_fork_server(self) -> None:
        if self.fork_server is not None:
            await self.fork_server.close()
            self.fork_server = None

    async def _run_forked(
        self, ctx: StepExecutorContext, ctx_path: Path, result_path: Path
    ) -> Observation:
        """The attempt as a process forked by the fork server; same outcome as a subprocess."""
        read_end, write_end = os.pipe()
        pid: int | None = None
        try:
            server = await self._server()
        except ForkServerGone as exc:
            os.close(read_end)
            os.close(write_end)
            return AttemptLost(ctx.step_id, ctx.attempt, f"the step's process was lost: {exc}")
        try:
            with open(read_end, "rb", buffering=0) as output:
                try:
                    pid = await server.spawn(
                        context=str(ctx_path),
                        result=str(result_path),
                        env=self._attempt_env(ctx),
                        token=self._attempt_token(ctx),
                        output=write_end,
                    )
                finally:
                    os.close(write_end)
                tail = await _tail_file(output, LOG_TAIL_BYTES)
                code, clean = await server.exit_code(pid)
        except ForkServerGone as exc:
            self._stop_leftovers(self._attempt_token(ctx))
            return AttemptLost(ctx.step_id, ctx.attempt, f"the step's process was lost: {exc}")
        except asyncio.CancelledError:
            if pid is not None:
                await _terminate_forked(server, pid)
            self._stop_leftovers(self._attempt_token(ctx))
            raise
        finally:
            if pid is not None:
                server.forget(pid)
        if not clean:
            await self._sweeper.after(self._attempt_token(ctx))
        return self._read_result(ctx, result_path, code, tail)

    def _read_result(
        self, ctx: StepExecutorContext, result_path: Path, code: int, tail: bytes
    ) -> Observation:
        """The attempt's observation from its result file, whose size is checked first."""
        try:
            size = result_path.stat().st_size
        except OSError:
            text = tail.decode("utf-8", errors="replace")[-LOG_TAIL_CHARS:].strip()
            text = redact(text, self._injected(ctx))
            return AttemptLost(
                ctx.step_id, ctx.attempt, f"exited with code {code} without a result: {text}"
            )
        if size > result_file_limit(self.output_limit):
            error = result_file_too_large(size, self.output_limit)
            return AttemptFinished(
                ctx.step_id, ctx.attempt, StepExecutorResult(success=False, error=error)
            )
        try:
            result = StepExecutorResult.model_validate_json(result_path.read_bytes())
        except ValueError as exc:
            reason = clip_message(f"unreadable result file: {exc}")
            return AttemptLost(ctx.step_id, ctx.attempt, reason)
        return self._checked(ctx, result)

    @staticmethod
    def _stop_leftovers(token_prefix: str) -> None:
        """Kill processes an attempt left behind (e.g. one that started its own session)."""
        processes.kill_and_reap(processes.leftovers(token_prefix))


def _settle(
    future: asyncio.Future[list[Observation]],
    value: list[Observation] | None,
    error: BaseException | None,
) -> None:
    if future.done():  # the wait ended (deadline, cancel) before the user answered
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value or [])


async def _tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Read `stream` to its end, keeping only the last `keep` bytes."""
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


async def _tail_file(output: BinaryIO, keep: int) -> bytes:
    """`_tail` for a pipe's read end (an attempt forked by the fork server)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=keep)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), output
    )
    try:
        return await _tail(reader, keep)
    finally:
        transport.close()


async def _terminate_forked(server: ForkServer, pid: int) -> None:
    """`_terminate` for a forked attempt: its group is signalled, its exit awaited from the
    server (its parent)."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        if server.exited(pid):
            return
        kill_attempt(pid, sig)
        with contextlib.suppress(TimeoutError, ForkServerGone):
            await asyncio.wait_for(server.exit_code(pid), timeout=grace)
            return


async def _stop_all(attempts: dict[tuple[str, int], _Attempt]) -> None:
    for leftover in attempts.values():
        leftover.task.cancel()
    await asyncio.gather(*(a.task for a in attempts.values()), return_exceptions=True)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


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
