"""Shared fixtures: runbooks written to a temp dir next to a CUSTOM step module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

STEP_MODULE = '''
"""CUSTOM functions used by the runner tests (imported in the step subprocess)."""
import os, pathlib, subprocess, sys, time

def _out(ctx):
    return pathlib.Path(ctx.config["dir"])

def sleeper(ctx):
    """Record our pid and a grandchild's pid, then sleep far past any timeout."""
    out = _out(ctx)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (out / f"{ctx.step_id}.{ctx.attempt}.pid").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(float(ctx.config.get("seconds", 60)))
    (out / f"{ctx.step_id}.finished").write_text("finished")
    return {"slept": True}

def flaky(ctx):
    """Fail on the first `failures` attempts, then succeed."""
    if ctx.attempt <= int(ctx.config.get("failures", 1)):
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}

def counted(ctx):
    """Append one line per run, optionally sleeping first, so re-runs are visible."""
    out = _out(ctx)
    time.sleep(float(ctx.config.get("seconds", 0)))
    with open(out / f"{ctx.step_id}.runs", "a") as fh:
        fh.write(f"{ctx.attempt}\\n")
    return {"step": ctx.step_id}

def crash(ctx):
    os._exit(3)
'''


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "runner_steps.py").write_text(STEP_MODULE)
    return tmp_path


WriteRunbook = Callable[..., Path]


@pytest.fixture
def write_runbook(workdir: Path) -> WriteRunbook:
    def write(steps: list[dict[str, Any]], **spec: Any) -> Path:
        for step in steps:
            step.setdefault("actionType", "CUSTOM")
            step.setdefault("config", {}).setdefault("dir", str(workdir))
        doc = {
            "apiVersion": "runbook-operator.dev/v1alpha1",
            "kind": "Runbook",
            "metadata": {"name": "runner-test"},
            "spec": {"id": "runner_test", "steps": steps, **spec},
        }
        path = workdir / "runbook.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    return write
