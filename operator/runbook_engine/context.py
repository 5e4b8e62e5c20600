"""What a step sees: the execution input, its config, and its direct dependencies' outputs.

Only direct dependencies, by value: a step that needs an ancestor's output depends on that step
(a `dependsOn` edge says so). Copying every ancestor's output into every context made the cost
of a chain grow with the square of its length (10,000 steps: minutes) and let outputs snowball.
"""

from __future__ import annotations

from runbook_engine.contract import StepExecutorContext
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan
from runbook_engine.state import ExecutionState


def context_sources(plan: Plan, step_id: str) -> list[str]:
    """Upstream steps whose outputs a step sees: its direct dependencies, in definition order
    (one rule for every shell: the local runner passes them by value, the operator mounts
    their result ConfigMaps)."""
    return sorted(plan.dependencies[step_id], key=plan.position.__getitem__)


def build_context(
    plan: Plan,
    request: ExecutionRequest,
    state: ExecutionState,
    step_id: str,
    attempt: int,
) -> StepExecutorContext:
    """Context for one attempt. `previous_outputs` holds the direct dependencies that produced
    an output, in definition order (so `find_previous_output` finds the nearest)."""
    step = plan.steps[step_id]
    previous = {
        sid: dict(state.outputs[sid])
        for sid in context_sources(plan, step_id)
        if sid in state.outputs
    }
    return StepExecutorContext(
        execution_id=state.execution_id,
        runbook_id=plan.definition.id,
        step_id=step_id,
        action_type=step.action_type,
        attempt=attempt,
        input=dict(request.input),
        config=dict(step.config),
        previous_outputs=previous,
        legal_basis=str(request.legal_basis) if request.legal_basis else None,
        data_licenses=[str(x) for x in request.data_licenses],
        authority_ids=list(request.authority_ids),
        tenant_id=request.tenant_id,
        started_by=request.started_by,
        timeout_ms=step.timeout_ms,
    )
