"""The built-in action types shipped with the project."""

from __future__ import annotations

from collections.abc import Collection

from runbook_engine.contract import ActionType
from runbook_executors.base import BaseStepExecutor

GENERIC_ACTION_TYPES = frozenset(
    {ActionType.VALIDATE, ActionType.TRANSFORM, ActionType.NOTIFY, ActionType.CUSTOM}
)


def builtin_executors(needed: Collection[str] | None = None) -> list[BaseStepExecutor]:
    """Fresh instances of every built-in executor (generic ones, then the CTI set).

    With `needed` (the action types a run uses), the CTI set (~0.3 s of imports and 12 MiB,
    which every fork of the process would carry) is left out when none of them needs it."""
    from runbook_executors.generic import generic_executors

    if needed is not None and set(needed) <= GENERIC_ACTION_TYPES:
        return generic_executors()
    from runbook_executors.cti import cti_executors

    return [*generic_executors(), *cti_executors()]
