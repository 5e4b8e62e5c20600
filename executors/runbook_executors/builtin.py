"""The built-in action types shipped with the project."""

from __future__ import annotations

from runbook_executors.base import BaseStepExecutor


def builtin_executors() -> list[BaseStepExecutor]:
    """Fresh instances of every built-in executor (generic ones, then the CTI set)."""
    from runbook_executors.cti import cti_executors
    from runbook_executors.generic import generic_executors

    return [*generic_executors(), *cti_executors()]
