"""Generic executors: VALIDATE, TRANSFORM, NOTIFY, CUSTOM.

Each lives in its own module and imports its heavier dependencies (jsonschema, jmespath) only
when a step runs, so `python -m runbook_executors` starts fast in a Job pod.
"""

from __future__ import annotations

from runbook_executors.base import BaseStepExecutor


def generic_executors() -> list[BaseStepExecutor]:
    """Fresh instances of the four generic executors."""
    from runbook_executors.generic.custom import CustomStepExecutor
    from runbook_executors.generic.notify import NotifyStepExecutor
    from runbook_executors.generic.transform import TransformStepExecutor
    from runbook_executors.generic.validate import ValidateStepExecutor

    return [
        ValidateStepExecutor(),
        TransformStepExecutor(),
        NotifyStepExecutor(),
        CustomStepExecutor(),
    ]
