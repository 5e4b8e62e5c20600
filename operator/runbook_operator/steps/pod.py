"""The step pod's entrypoint (`python -m runbook_operator.steps.pod`): context in, result out.

The operator mounts the pinned definition and request (`/var/run/runbook/definition`) and the
result ConfigMaps of the upstream steps the engine says a step sees (`/var/run/runbook/upstream`).
This builds the same StepExecutorContext the local runner would, runs the executor through the
same entrypoint (`runbook_executors.entrypoint.run`), scrubs the values of the step's variables
injected from Secret keys, enforces the output limit, stores the result in the step's result
ConfigMap and leaves a pointer to it in the termination message.
Exit 0: the step succeeded; 1: it failed (the result says why); 2: no result could be stored.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from immutables import Map

from runbook_engine.context import build_context
from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_engine.enums import ExecutionStatus
from runbook_engine.limits import DEFAULT_MAX_OUTPUT_BYTES, output_size_problem
from runbook_engine.model import ExecutionRequest, RunbookDefinition, RunbookStep
from runbook_engine.plan import compile_plan
from runbook_engine.state import ExecutionState
from runbook_executors.secrets import env_secrets, scrub_result
from runbook_operator import names
from runbook_operator.steps import contract as c
from runbook_operator.steps import results

MOUNT = Path(c.MOUNT)
TERMINATION_LOG = Path(c.TERMINATION_LOG)


def upstream_outputs(folder: Path, output_limit: int) -> dict[str, dict[str, Any]]:
    """`<step>.json.gz` files (upstream result ConfigMaps) → {step: output}, each read with
    the same bound as the operator reads results (a ConfigMap holds at most 1 MiB)."""
    out: dict[str, dict[str, Any]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob(f"*{c.UPSTREAM_SUFFIX}")):
        with path.open("rb") as file:
            packed = file.read(results.APISERVER_CONFIGMAP_BYTES + 1)
        if len(packed) > results.APISERVER_CONFIGMAP_BYTES:
            raise results.ResultError(f"upstream result {path.name} is larger than a ConfigMap")
        raw = results.inflate(packed, results.read_limit(output_limit), f"upstream {path.name}")
        out[path.name.removesuffix(c.UPSTREAM_SUFFIX)] = results.parse_result(raw).output
    return out


def output_limit(env: Mapping[str, str]) -> int:
    return int(env.get(c.ENV_MAX_OUTPUT_BYTES, str(DEFAULT_MAX_OUTPUT_BYTES)))


def pod_context(env: Mapping[str, str], mount: Path) -> StepExecutorContext:
    """The context the local runner would build, from the mounted files and the pod's env."""
    return pod_step(env, mount)[0]


def pod_step(env: Mapping[str, str], mount: Path) -> tuple[StepExecutorContext, RunbookStep]:
    """The step's context and its definition (which names its Secret-injected variables)."""
    definition = RunbookDefinition.model_validate_json(
        (mount / "definition" / c.DEFINITION_KEY).read_bytes()
    )
    request = ExecutionRequest.model_validate_json(
        (mount / "definition" / c.REQUEST_KEY).read_bytes()
    )
    plan = compile_plan(definition)
    state = ExecutionState(
        execution_id=env[c.ENV_EXECUTION_ID],
        runbook_id=definition.id,
        status=ExecutionStatus.RUNNING,
        steps=Map(),
        created_at=datetime.now(UTC),
        outputs=Map(upstream_outputs(mount / "upstream", output_limit(env))),
    )
    step_id = env[c.ENV_STEP_ID]
    ctx = build_context(plan, request, state, step_id, int(env[c.ENV_ATTEMPT]))
    return ctx, plan.steps[step_id]


def scrub_injected(
    result: StepExecutorResult, step: RunbookStep | None, env: Mapping[str, str]
) -> StepExecutorResult:
    """The result without the values of the step's variables injected from Secret keys
    (`container.env[].valueFrom.secretKeyRef`), whatever the executor did with them."""
    if step is None or step.container is None:
        return result
    return scrub_result(result, env_secrets(step.container.secret_env_names(), env))


def over_limit(result: StepExecutorResult, limit: int) -> StepExecutorResult:
    """The result, or a failed one when its output is larger than `limit` bytes (the same rule
    and message as the local runner: runbook_engine.limits)."""
    if not result.success:
        return result
    problem = output_size_problem(result.output, limit)
    return result if problem is None else StepExecutorResult(success=False, error=problem)


def run_step(ctx: StepExecutorContext, work: Path) -> StepExecutorResult:
    from runbook_executors import entrypoint

    ctx_path, result_path = work / "context.json", work / "result.json"
    ctx_path.write_text(json.dumps(ctx.wire()), encoding="utf-8")
    entrypoint.run(str(ctx_path), str(result_path))
    try:
        return StepExecutorResult.model_validate_json(result_path.read_bytes())
    except (OSError, ValueError) as exc:
        return StepExecutorResult(success=False, error=f"executor wrote no readable result: {exc}")


def store(env: Mapping[str, str], result: StepExecutorResult) -> results.Pointer:
    """Create the result ConfigMap (or find the identical one of a replayed pod)."""
    from runbook_operator.kube import CONFIGMAPS, AlreadyExists, Kube

    raw, sha = results.encode(result)
    name = env[c.ENV_RESULT_CONFIGMAP]
    labels = names.labels(
        env[c.ENV_EXECUTION],
        env[c.ENV_EXECUTION_UID],
        "result",
        step_id=env[c.ENV_STEP_ID],
        attempt=int(env[c.ENV_ATTEMPT]),
    )
    owner = names.owner_reference(env[c.ENV_EXECUTION], env[c.ENV_EXECUTION_UID], controller=False)
    body = results.configmap(name, raw, sha, labels, owner)
    kube = Kube.connect()
    pointer = results.Pointer(name, sha, len(raw))
    try:
        kube.create(CONFIGMAPS, env[c.ENV_NAMESPACE], body)
    except AlreadyExists:  # nobody else should write this name: the same result, or a failure
        existing = kube.get(CONFIGMAPS, env[c.ENV_NAMESPACE], name)
        results.read_configmap(existing, pointer, output_limit=output_limit(env))
    return pointer


def main() -> int:
    env = os.environ
    step: RunbookStep | None = None
    try:
        ctx, step = pod_step(env, MOUNT)
    except (OSError, ValueError, KeyError) as exc:
        result = StepExecutorResult(success=False, error=f"cannot build the step context: {exc}")
    else:
        with tempfile.TemporaryDirectory(prefix="runbook-") as work:
            result = run_step(ctx, Path(work))
    result = scrub_injected(result, step, env)
    result = over_limit(result, output_limit(env))
    try:
        pointer = store(env, result)
    except Exception as exc:  # the operator sees exit 2 and this message as a lost attempt
        print(f"runbook_operator.steps.pod: cannot store the result: {exc}", file=sys.stderr)
        TERMINATION_LOG.write_text(f"cannot store the result: {exc}"[:3000], encoding="utf-8")
        return 2
    TERMINATION_LOG.write_text(json.dumps(pointer.wire()), encoding="utf-8")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
