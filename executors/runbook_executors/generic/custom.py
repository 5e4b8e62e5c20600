"""CUSTOM: run a user function, named by import path or registered by name.

Config (one of):
  function:     "package.module:callable" (attribute may be dotted: "pkg.mod:Class.method")
  functionName: a name registered with `CustomStepExecutor.register_function` or the
                module-level `register_function` (optionally after importing `config.module`,
                whose import is expected to register it)

The function receives the `StepExecutorContext` (sync or async) and returns a dict (the step's
output) or a `StepExecutorResult`. An exception is a failed attempt carrying its message.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from runbook_engine.contract import ActionType, StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic._common import ConfigError

CustomFunctionResult = dict[str, Any] | StepExecutorResult
CustomFunction = Callable[
    [StepExecutorContext], CustomFunctionResult | Awaitable[CustomFunctionResult]
]

BASE_DIR_ENV = "RUNBOOK_BASE_DIR"
"""The runbook's folder: `function: "module:callable"` may name a module there."""

_FUNCTIONS: dict[str, CustomFunction] = {}
"""Process-wide registry: a plugin registers at import time, so a Job pod or a runner's
subprocess (which builds fresh executor instances) still finds the function."""


def register_function(name: str, fn: CustomFunction) -> CustomFunction:
    """Register `fn` under `name` for every CUSTOM executor in this process; returns `fn`."""
    _check_registration(name, fn)
    _FUNCTIONS[name] = fn
    return fn


def custom_function(name: str) -> Callable[[CustomFunction], CustomFunction]:
    """Decorator form of `register_function`."""

    def decorate(fn: CustomFunction) -> CustomFunction:
        return register_function(name, fn)

    return decorate


def unregister_function(name: str) -> None:
    """Remove a process-wide registration (no error if absent)."""
    _FUNCTIONS.pop(name, None)


def registered_functions() -> frozenset[str]:
    """Names registered process-wide."""
    return frozenset(_FUNCTIONS)


def _check_registration(name: str, fn: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("a custom function needs a non-empty name")
    if not callable(fn):
        raise TypeError(f"custom function {name!r} is not callable ({type(fn).__name__})")


def load_callable(spec: str, *, where: str = "config.function") -> CustomFunction:
    """Import `package.module:attr[.attr...]` and return the callable, with errors naming why."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(f"{where}: expected 'package.module:callable', got {spec!r}")
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise ConfigError(f"{where}: expected 'package.module:callable', got {spec!r}")
    module = _import(module_name, where=where)
    obj: Any = module
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ConfigError(
                f"{where}: {type(obj).__name__} {getattr(obj, '__name__', module_name)!r} "
                f"has no attribute {attr!r}"
            ) from None
    if not callable(obj):
        raise ConfigError(f"{where}: {spec!r} is a {type(obj).__name__}, not callable")
    fn: CustomFunction = obj
    return fn


def runbook_folder_on_path() -> None:
    """Make modules of the runbook's folder (RUNBOOK_BASE_DIR) importable, searched AFTER the
    installed packages: a `jsonschema.py` next to a runbook must not replace the library.
    (The step process runs with `python -P`, so the working directory is not searched.)"""
    base = os.environ.get(BASE_DIR_ENV)
    if base and base not in sys.path:
        sys.path.append(base)


def _import(module_name: str, *, where: str) -> Any:
    runbook_folder_on_path()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Distinguish "the module named in config does not exist" from "it exists but one of
        # its own imports is missing": both are ModuleNotFoundError.
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(f"{where}: module {module_name!r} not found") from None
        raise ConfigError(f"{where}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # any import-time error is a config problem
        raise ConfigError(
            f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def unordered_value(value: Any, where: str) -> str | None:
    """Where `value` holds a non-string key or a set (serialised in arbitrary order, so the
    output hash would change from run to run), or None."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, set | frozenset):
            return f"a set at {path} (not JSON, and unordered: return a sorted list)"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"a dict with a non-string key {key!r} at {path}"
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


class CustomStepExecutor(BaseStepExecutor):
    """Runs user code; see the module docstring for config."""

    action_type: ClassVar[str] = ActionType.CUSTOM

    def __init__(self) -> None:
        self._functions: dict[str, CustomFunction] = {}

    def register_function(self, name: str, fn: CustomFunction) -> None:
        """Register on this instance only (takes precedence over the process-wide registry)."""
        _check_registration(name, fn)
        self._functions[name] = fn

    def unregister_function(self, name: str) -> None:
        self._functions.pop(name, None)

    def resolve(self, ctx: StepExecutorContext) -> tuple[str, CustomFunction]:
        """The function a step's config names, as (label, callable); ConfigError if none."""
        spec = self.get_config(ctx, "function")
        name = self.get_config(ctx, "functionName")
        if spec is not None and name is not None:
            raise ConfigError("config: give either 'function' or 'functionName', not both")
        if spec is not None:
            return spec, load_callable(spec)
        if name is None:
            raise ConfigError(
                "config: CUSTOM needs 'function' ('package.module:callable') or 'functionName'"
            )
        if not isinstance(name, str) or not name:
            raise ConfigError("config.functionName: expected a non-empty string")
        module = self.get_config(ctx, "module")
        if module is not None:
            if not isinstance(module, str) or not module:
                raise ConfigError("config.module: expected a module name")
            _import(module, where="config.module")
        fn = self._functions.get(name) or _FUNCTIONS.get(name)
        if fn is None:
            known = sorted(set(self._functions) | set(_FUNCTIONS))
            raise ConfigError(
                f"config.functionName: no custom function registered as {name!r} "
                f"(registered: {', '.join(known) or 'none'})"
            )
        return name, fn

    async def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        try:
            label, fn = self.resolve(ctx)
        except ConfigError as exc:  # the same config fails the same way every attempt
            return self.failure(str(exc), retryable=False)
        try:
            result = fn(ctx)
            if inspect.isawaitable(result):
                result = await result
        except SystemExit as exc:  # sys.exit() in user code must not end the pod without a result
            return self.failure(f"{label}: called sys.exit({exc.code!r})")
        except Exception as exc:  # the user's error is the attempt's error
            return self.failure(f"{label}: {type(exc).__name__}: {exc}")
        if isinstance(result, StepExecutorResult):
            return result
        if isinstance(result, dict):
            problem = unordered_value(result, "output")
            if problem is not None:
                return self.failure(f"{label}: returned {problem}")
            return self.success(result)
        return self.failure(
            f"{label}: returned {type(result).__name__}, expected a dict or StepExecutorResult"
        )
