"""`python -m runbook_executors`: run one step attempt from a context file.

This is the command of every step's Job pod (and of the local runner's subprocess)::

    python -m runbook_executors run --context ctx.json --result out.json [--action-type X]
    python -m runbook_executors list

`run` reads a camelCase `StepExecutorContext`, runs the executor registered for its
`actionType`, and atomically writes the camelCase `StepExecutorResult` to `--result`.
Exit status: 0 the attempt succeeded, 1 it failed (the result says why), 2 the attempt could
not start (bad usage, unreadable or invalid context, unknown action type); in the last case a
failed result is still written when the result path is usable. Logs go to stderr only.

Kept light on purpose: executors and their dependencies are imported only when needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook_engine.contract import StepExecutorContext, StepExecutorResult

if TYPE_CHECKING:
    from runbook_executors.base import BaseStepExecutor
    from runbook_executors.registry import ExecutorRegistry

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

LOG_LEVEL_ENV = "RUNBOOK_LOG_LEVEL"

log = logging.getLogger("runbook_executors")


class StartError(Exception):
    """The attempt cannot start; the message is shown on stderr and put in the result."""


# -- files -------------------------------------------------------------------------------------
def load_context(path: str, action_type: str | None = None) -> StepExecutorContext:
    """Read and validate a context file (`-` is stdin); `action_type` fills or checks actionType."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StartError(f"cannot read context file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise StartError(f"context file {path} is not UTF-8: {exc}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StartError(f"context file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StartError(f"context file {path} must hold a JSON object, not {type(data).__name__}")
    if action_type is not None:
        declared = data.get("actionType", data.get("action_type"))
        if declared is None:
            data["actionType"] = action_type
        elif declared != action_type:
            raise StartError(
                f"--action-type {action_type} does not match the context's actionType {declared}"
            )
    from pydantic import ValidationError

    try:
        return StepExecutorContext.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise StartError(
            f"context file {path} is not a valid StepExecutorContext: {problems}"
        ) from None


def serialisable(result: StepExecutorResult) -> tuple[StepExecutorResult, str]:
    """The result and its wire JSON; one that cannot be serialised (an object, NaN in the
    output) is replaced by a failed result saying so, so the file is always valid JSON."""
    try:
        return result, json.dumps(result.wire(), allow_nan=False, ensure_ascii=False, indent=2)
    except (TypeError, ValueError) as exc:  # PydanticSerializationError is a ValueError
        fallback = StepExecutorResult(
            success=False,
            error=f"executor returned a result that is not JSON-serialisable: {exc}",
        )
        return fallback, json.dumps(fallback.wire(), indent=2)


def write_result(
    path: str, result: StepExecutorResult, *, durable: bool = True
) -> StepExecutorResult:
    """Write atomically (temp file in the same directory, fsync, rename): a reader never sees
    half a result, even if the pod is killed mid-write. Returns what was written.

    `durable=False` skips the fsync: for a reader on the same machine that reads the file
    right after this process exits (the local runner), the rename alone is atomic; the fsync
    only matters across a crash of the machine, which the local run does not survive anyway."""
    target = Path(path)
    written, text = serialisable(result)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.write("\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


# -- running -----------------------------------------------------------------------------------
_preloaded: tuple[ExecutorRegistry, str | None] | None = None
"""The registry built by `preload_registry` (in the local runner's fork server), if any."""


def preload_registry(action_types: Collection[str] | None = None) -> None:
    """Build the registry now, so every process forked from this one starts with it (and with
    its executor and plugin modules already imported), and import what the executors of
    `action_types` import lazily (`preload_modules`; one that fails to import is skipped).
    With `action_types` (all that the forked processes will run), built-ins none of them uses
    may be left out."""
    global _preloaded
    with contextlib.suppress(StartError):
        _preloaded = build_registry(action_types)
    if _preloaded is None:
        return
    registry = _preloaded[0]
    for action_type in action_types or ():
        if action_type in registry:
            for module in registry.get(action_type).preload_modules:
                with contextlib.suppress(Exception):
                    importlib.import_module(module)


def build_registry(needed: Collection[str] | None = None) -> tuple[ExecutorRegistry, str | None]:
    """Built-ins plus plugins, and the plugin loading error if any: a broken plugin is
    reported, not allowed to block the built-in action types. `needed`: see default_registry."""
    from runbook_executors.registry import default_registry

    if _preloaded is not None:
        return _preloaded
    try:
        return default_registry(needed=needed), None
    except Exception as exc:  # a plugin's import error must not hide the built-ins
        plugin_error = f"{type(exc).__name__}: {exc}"
    log.warning("loading executor plugins failed, using built-ins only: %s", plugin_error)
    try:
        return default_registry(plugins=False, needed=needed), plugin_error
    except Exception as exc:  # a broken image: say so instead of dying with a traceback
        raise StartError(
            f"loading the built-in executors failed: {type(exc).__name__}: {exc}"
        ) from None


def select_executor(action_type: str) -> BaseStepExecutor:
    from runbook_executors.registry import UnknownActionType

    registry, plugin_error = build_registry()
    try:
        return registry.get(action_type)
    except UnknownActionType as exc:
        hint = f"; plugin loading failed: {plugin_error}" if plugin_error else ""
        raise StartError(f"{exc}{hint}") from None


async def run_attempt(executor: BaseStepExecutor, ctx: StepExecutorContext) -> StepExecutorResult:
    """One attempt through `base.invoke`. `timeoutMs` is not enforced here: the scheduler owns
    the step timeout and its shell stops the attempt (docs/engine.md, "Timeouts")."""
    from runbook_executors.base import invoke

    return await invoke(executor, ctx)


def _guard_processes() -> None:
    """Leave nothing behind: stop with the local runner (even one killed with SIGKILL), adopt
    orphans of our descendants, and on SIGTERM stop every descendant, not only our group."""
    from runbook_executors import processes

    parent = os.environ.get(processes.PARENT_ENV, "")
    if parent.isdigit():
        processes.die_with_parent(int(parent))
    processes.become_subreaper()

    def on_term(signum: int, _frame: object) -> None:
        processes.stop_descendants()
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():  # signal() works only there
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGHUP, on_term)


def run(
    context_path: str, result_path: str, action_type: str | None = None, *, durable: bool = True
) -> int:
    """The `run` command; returns the exit status. `durable`: see `write_result`."""
    _guard_processes()
    try:
        ctx = load_context(context_path, action_type)
        executor = select_executor(ctx.action_type)
    except StartError as exc:
        _error(str(exc))
        _write_start_failure(result_path, str(exc))
        return EXIT_USAGE
    log.info(
        "running %s step %s (attempt %d) of execution %s with %s",
        ctx.action_type,
        ctx.step_id,
        ctx.attempt,
        ctx.execution_id,
        type(executor).__name__,
    )
    result = asyncio.run(run_attempt(executor, ctx))
    try:
        result = write_result(result_path, result, durable=durable)
    except OSError as exc:
        _error(f"cannot write result file {result_path}: {exc.strerror or exc}")
        return EXIT_USAGE
    if result.success:
        log.info("step %s succeeded", ctx.step_id)
        return EXIT_SUCCESS
    log.warning("step %s failed: %s", ctx.step_id, result.error)
    return EXIT_FAILED


def _error(message: str) -> None:
    """Start problems go straight to stderr: logging may be configured away, this may not."""
    print(f"runbook_executors: error: {message}", file=sys.stderr, flush=True)


def _write_start_failure(result_path: str, error: str) -> None:
    try:
        write_result(result_path, StepExecutorResult(success=False, error=error))
    except OSError as exc:
        _error(f"cannot write result file {result_path}: {exc.strerror or exc}")


def list_action_types() -> int:
    """The `list` command: registered action types, one per line, on stdout."""
    try:
        registry, _ = build_registry()
    except StartError as exc:
        _error(str(exc))
        return EXIT_USAGE
    for name in sorted(registry.action_types()):
        print(name)
    return EXIT_SUCCESS


# -- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runbook_executors",
        description="Run one runbook step attempt (the command of a step's Job pod).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd = commands.add_parser("run", help="run one attempt from a context file")
    run_cmd.add_argument(
        "--context", required=True, help="StepExecutorContext JSON file ('-' for stdin)"
    )
    run_cmd.add_argument("--result", required=True, help="where to write the result JSON")
    run_cmd.add_argument(
        "--action-type",
        help="executor to use; must match the context's actionType (fills it in if absent)",
    )
    commands.add_parser("list", help="print the registered action types")
    return parser


def configure_logging() -> None:
    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the command; returns the exit status (never raises SystemExit)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    configure_logging()
    if args.command == "list":
        return list_action_types()
    return run(args.context, args.result, args.action_type)
