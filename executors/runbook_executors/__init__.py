"""Step executors: the SDK (`BaseStepExecutor`), the registry, and the built-in action types.

Executors run inside the step's process: a Job pod on a cluster, a subprocess locally. Each
receives a `StepExecutorContext` and returns a `StepExecutorResult`; verdicts are deterministic.
"""

from runbook_engine.contract import (
    Citation,
    Evidence,
    StepExecutorContext,
    StepExecutorResult,
)
from runbook_executors.base import BaseStepExecutor
from runbook_executors.registry import ENTRY_POINT_GROUP, ExecutorRegistry, default_registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseStepExecutor",
    "Citation",
    "Evidence",
    "ExecutorRegistry",
    "StepExecutorContext",
    "StepExecutorResult",
    "default_registry",
]
