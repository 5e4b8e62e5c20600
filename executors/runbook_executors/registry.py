"""Registry of action types, with third-party discovery through Python entry points."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from importlib.metadata import entry_points

from runbook_executors.base import BaseStepExecutor

ENTRY_POINT_GROUP = "runbook_operator.executors"
"""Entry point group for plugins: ``NAME = "package.module:ExecutorClass"``."""


class UnknownActionType(LookupError):
    """No executor is registered for the requested action type."""


class ExecutorRegistry:
    """Maps action type names to executor instances."""

    def __init__(self, executors: Iterable[BaseStepExecutor] = ()) -> None:
        self._by_type: dict[str, BaseStepExecutor] = {}
        for executor in executors:
            self.register(executor)

    def register(self, executor: BaseStepExecutor) -> None:
        """Add or replace the executor for its `action_type`."""
        action_type = getattr(executor, "action_type", None)
        if not isinstance(action_type, str) or not action_type:
            raise ValueError(f"{type(executor).__name__} has no action_type")
        self._by_type[action_type] = executor

    def get(self, action_type: str) -> BaseStepExecutor:
        try:
            return self._by_type[action_type]
        except KeyError:
            known = ", ".join(sorted(self._by_type))
            raise UnknownActionType(
                f"no executor for actionType {action_type!r} (known: {known})"
            ) from None

    def action_types(self) -> frozenset[str]:
        return frozenset(self._by_type)

    def __contains__(self, action_type: object) -> bool:
        return action_type in self._by_type


def load_plugins(registry: ExecutorRegistry, group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Register every executor class advertised under `group`; return the names loaded."""
    loaded: list[str] = []
    for ep in entry_points(group=group):
        cls = ep.load()
        executor = cls() if isinstance(cls, type) else cls
        if not isinstance(executor, BaseStepExecutor):
            raise TypeError(f"entry point {ep.name} ({ep.value}) is not a BaseStepExecutor")
        registry.register(executor)
        loaded.append(ep.name)
    return loaded


def default_registry(
    *, plugins: bool = True, needed: Collection[str] | None = None
) -> ExecutorRegistry:
    """Built-in executors plus (optionally) every installed plugin; with `needed`, built-ins
    no action type of it uses may be left out (see builtin_executors)."""
    from runbook_executors.builtin import builtin_executors

    registry = ExecutorRegistry(builtin_executors(needed))
    if plugins:
        load_plugins(registry)
    return registry
