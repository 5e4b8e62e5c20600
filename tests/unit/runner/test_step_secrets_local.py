"""Secret references of a step's container under `runbookctl run`: no kubelet resolves them
here, so the variable of the same name in runbookctl's environment stands in, a missing one
fails the attempt naming the entry, and the value never reaches the result or the ledger."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from runbook_engine.enums import ExecutionStatus, StepStatus
from runbook_engine.model import ExecutionRequest, RunbookRef
from runbookctl.files import load_plan
from runbookctl.runner import Isolation, LocalRunner, cluster_only_sources
from tests.unit.conftest import WriteRunbook

pytestmark = pytest.mark.timeout(120)

STEPS = '''
import os

def leak(ctx):
    """What a careless step does: return the value it was given."""
    value = os.environ[ctx.config["var"]]
    return {"value": value, "length": len(value)}

def crash(ctx):
    print("token is", os.environ[ctx.config["var"]], flush=True)
    os._exit(3)
'''
VAR = "RB_TEST_SOC_TOKEN"


def secret_env(**ref: Any) -> dict[str, Any]:
    return {
        "env": [
            {"name": VAR, "valueFrom": {"secretKeyRef": {"name": "soc", "key": "token", **ref}}},
            {"name": "MODE", "value": "plain"},
        ]
    }


def run(path: Path, isolation: Isolation = Isolation.process) -> LocalRunner:
    plan = load_plan(path)
    request = ExecutionRequest(runbook_ref=RunbookRef(name=plan.definition.id))
    runner = LocalRunner(plan, request, base_dir=path.parent, isolation=isolation)
    asyncio.run(runner.run())
    return runner


@pytest.fixture
def step_module(workdir: Path) -> Path:
    (workdir / "secret_steps.py").write_text(STEPS)
    return workdir


def test_a_missing_variable_fails_the_attempt_naming_the_entry_without_retrying(
    write_runbook: WriteRunbook, step_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VAR, raising=False)
    path = write_runbook(
        [
            {
                "id": "tell",
                "retryPolicy": {"maxAttempts": 3, "backoffSeconds": 0},
                "config": {"function": "secret_steps:leak", "var": VAR},
                "container": secret_env(),
            }
        ]
    )
    state = run(path).state
    step = state.steps["tell"]
    assert step.status is StepStatus.FAILED and step.attempt == 1
    assert step.message is not None
    assert (
        f"container.env[0] ({VAR}): valueFrom.secretKeyRef soc/token is resolved by the "
        f"kubelet on a cluster; to run this step locally, export {VAR}"
    ) in step.message


def test_an_optional_reference_that_is_missing_is_no_error(
    write_runbook: WriteRunbook, step_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VAR, raising=False)
    path = write_runbook(
        [
            {
                "id": "calm",
                "config": {"function": "runner_steps:counted"},
                "container": secret_env(optional=True),
            }
        ]
    )
    assert run(path).state.status is ExecutionStatus.COMPLETED


@pytest.mark.parametrize("isolation", [Isolation.process, Isolation.inline])
def test_the_value_comes_from_the_environment_and_is_scrubbed_from_result_and_ledger(
    write_runbook: WriteRunbook,
    step_module: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolation: Isolation,
) -> None:
    token = secrets.token_hex(16)
    monkeypatch.setenv(VAR, token)
    path = write_runbook(
        [
            {
                "id": "careless",
                "config": {"function": "secret_steps:leak", "var": VAR},
                "container": secret_env(),
            }
        ]
    )
    runner = run(path, isolation)
    assert runner.state.status is ExecutionStatus.COMPLETED
    assert runner.state.outputs["careless"] == {"value": "[redacted]", "length": len(token)}
    assert token not in json.dumps(runner.state.to_wire(), default=str)
    assert token not in json.dumps(runner.chain.entries, default=str)


def test_a_crash_that_prints_the_value_leaves_it_out_of_the_message(
    write_runbook: WriteRunbook, step_module: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_hex(16)
    monkeypatch.setenv(VAR, token)
    path = write_runbook(
        [
            {
                "id": "blurt",
                "config": {"function": "secret_steps:crash", "var": VAR},
                "container": secret_env(),
            }
        ]
    )
    runner = run(path)
    message = runner.state.steps["blurt"].message or ""
    assert "exited with code 3" in message and "token is [redacted]" in message
    assert token not in json.dumps(runner.chain.entries, default=str)


def test_envfrom_sources_are_named_as_cluster_only(write_runbook: WriteRunbook) -> None:
    path = write_runbook(
        [
            {"id": "a", "container": {"envFrom": [{"secretRef": {"name": "soc-token"}}]}},
            {"id": "b"},
            {
                "id": "c",
                "container": {
                    "envFrom": [
                        {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "more"}},
                    ]
                },
            },
        ]
    )
    assert cluster_only_sources(load_plan(path)) == [
        "step a: container.envFrom[0] (secretRef 'soc-token') is read on a cluster only; "
        "locally the step sees runbookctl's environment",
        "step c: container.envFrom[0] (configMapRef 'settings') is read on a cluster only; "
        "locally the step sees runbookctl's environment",
        "step c: container.envFrom[1] (secretRef 'more') is read on a cluster only; "
        "locally the step sees runbookctl's environment",
    ]
