"""Generic executors: VALIDATE, TRANSFORM, NOTIFY, CUSTOM."""

from __future__ import annotations

from runbook_executors.base import BaseStepExecutor


def generic_executors() -> list[BaseStepExecutor]:
    return []
