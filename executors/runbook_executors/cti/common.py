"""Helpers shared by the CTI executors: reading upstream outputs and validating config."""

from __future__ import annotations

from typing import Any

from runbook_engine.contract import StepExecutorContext
from runbook_executors.base import BaseStepExecutor
from runbook_executors.base import ConfigError as ConfigError  # one class for every executor


def upstream_list(executor: BaseStepExecutor, ctx: StepExecutorContext, key: str) -> list[Any]:
    """The nearest upstream output's `key` as a list (empty if absent or not a list)."""
    value = executor.find_previous_output(ctx, key)
    return list(value) if isinstance(value, list) else []


def upstream_dict(executor: BaseStepExecutor, ctx: StepExecutorContext, key: str) -> dict[str, Any]:
    value = executor.find_previous_output(ctx, key)
    return dict(value) if isinstance(value, dict) else {}


def int_setting(
    executor: BaseStepExecutor,
    ctx: StepExecutorContext,
    key: str,
    default: int,
    *,
    minimum: int,
    maximum: int,
) -> int:
    value = executor.get_config(ctx, key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config.{key} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(f"config.{key} must be between {minimum} and {maximum}, got {value}")
    return value


def float_setting(
    executor: BaseStepExecutor,
    ctx: StepExecutorContext,
    key: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float = 1.0,
) -> float:
    value = executor.get_config(ctx, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"config.{key} must be a number, got {value!r}")
    if not minimum <= float(value) <= maximum:
        raise ConfigError(f"config.{key} must be between {minimum} and {maximum}, got {value}")
    return float(value)


def bool_setting(
    executor: BaseStepExecutor, ctx: StepExecutorContext, key: str, default: bool
) -> bool:
    value = executor.get_config(ctx, key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"config.{key} must be true or false, got {value!r}")
    return value


def str_list(value: Any, what: str) -> list[str]:
    """A list of strings from a list (or a single string); anything else is a ConfigError."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{what} must be a list of strings")


def indicator_key(indicator: dict[str, Any]) -> str:
    """`type:value`, the identity of a normalised indicator across steps."""
    return f"{indicator.get('type')}:{indicator.get('value')}"
