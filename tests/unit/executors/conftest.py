"""Shared fixtures for executor tests: building contexts and running one attempt."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor, invoke

REPO = Path(__file__).resolve().parents[3]

MakeCtx = Callable[..., StepExecutorContext]
RunStep = Callable[[BaseStepExecutor, StepExecutorContext], StepExecutorResult]


def build_ctx(
    action_type: str = "TRANSFORM",
    *,
    config: dict[str, Any] | None = None,
    input: dict[str, Any] | None = None,
    previous_outputs: dict[str, dict[str, Any]] | None = None,
    **extra: Any,
) -> StepExecutorContext:
    """A valid context with stable ids; override any field by keyword."""
    fields: dict[str, Any] = {
        "execution_id": "exec-1",
        "runbook_id": "rb-1",
        "step_id": "step-1",
        "action_type": action_type,
        "attempt": 1,
        "input": input or {},
        "config": config or {},
        "previous_outputs": previous_outputs or {},
    }
    fields.update(extra)
    return StepExecutorContext(**fields)


@pytest.fixture
def make_ctx() -> MakeCtx:
    return build_ctx


@pytest.fixture
def run_step() -> RunStep:
    """Run one attempt exactly as the entrypoint does (through `base.invoke`)."""

    def run(executor: BaseStepExecutor, ctx: StepExecutorContext) -> StepExecutorResult:
        return asyncio.run(invoke(executor, ctx))

    return run


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; tests talk to 127.0.0.1 directly."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throw-away modules; they are unloaded afterwards."""
    directory = tmp_path / "mods"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    before = set(sys.modules)
    yield directory
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) or ""
        if file.startswith(str(directory)):
            del sys.modules[name]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m runbook_executors ...` in a fresh interpreter (what a Job pod runs)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "runbook_executors", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=timeout,
        check=False,
    )


RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli() -> RunCli:
    return run_cli
