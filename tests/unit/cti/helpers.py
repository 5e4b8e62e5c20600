"""Helpers for the CTI executor tests: contexts, single steps and the full chain."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor, invoke
from runbook_executors.cti import cti_executors

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "rapid-attribution"
BUNDLE_PATH = EXAMPLE_DIR / "stix-bundle.json"
ACTOR_NAME = "PAPER LANTERN"


def executor(action_type: str) -> BaseStepExecutor:
    return {e.action_type: e for e in cti_executors()}[action_type]


def example_input() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLE_DIR / "input.json").read_text())
    return data


def example_bundle() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BUNDLE_PATH.read_text())
    return data


def make_ctx(
    action_type: str,
    *,
    input: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    previous: dict[str, dict[str, Any]] | None = None,
    step_id: str | None = None,
) -> StepExecutorContext:
    return StepExecutorContext(
        execution_id="exec-test",
        runbook_id="rapid_attribution_cti",
        step_id=step_id or action_type.lower(),
        action_type=action_type,
        attempt=1,
        input=copy.deepcopy(input or {}),
        config=copy.deepcopy(config or {}),
        previous_outputs=copy.deepcopy(previous or {}),
        legal_basis="legitimate_interests",
        data_licenses=["internal_use_only"],
    )


def run(
    action_type: str,
    *,
    input: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    previous: dict[str, dict[str, Any]] | None = None,
) -> StepExecutorResult:
    ctx = make_ctx(action_type, input=input, config=config, previous=previous)
    return asyncio.run(invoke(executor(action_type), ctx))


CHAIN: list[tuple[str, str]] = [
    ("ingest_indicators", "INGEST"),
    ("enrich_intel", "ENRICH_INTEL"),
    ("resolve_infrastructure", "LOOKUP_GRAPH"),
    ("match_campaigns", "PATTERN_MINER"),
    ("generate_report", "GENERATE_REPORT"),
]


def run_chain(
    input: dict[str, Any],
    *,
    configs: dict[str, dict[str, Any]] | None = None,
    enrich: bool = True,
) -> dict[str, StepExecutorResult]:
    """Run the runbook's steps in order via `invoke`, chaining previous_outputs like the engine.

    Each step sees every earlier step's output, as the engine's context does (all transitive
    upstream steps, in dependency order).
    """
    configs = configs or {}
    defaults: dict[str, dict[str, Any]] = {
        "resolve_infrastructure": {"bundlePath": str(BUNDLE_PATH), "maxDepth": 3},
        "match_campaigns": {"minConfidence": 0.2},
    }
    results: dict[str, StepExecutorResult] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for step_id, action_type in CHAIN:
        if action_type == "ENRICH_INTEL" and not enrich:
            continue
        config = {**defaults.get(step_id, {}), **configs.get(step_id, {})}
        ctx = make_ctx(action_type, input=input, config=config, previous=outputs, step_id=step_id)
        result = asyncio.run(invoke(executor(action_type), ctx))
        assert result.success, f"{step_id} failed: {result.error}"
        results[step_id] = result
        outputs[step_id] = result.output
    return results
