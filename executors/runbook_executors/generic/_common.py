"""Helpers shared by the generic executors: the step document, dotted paths, config errors."""

from __future__ import annotations

import re
from typing import Any, Final

from runbook_engine.contract import StepExecutorContext
from runbook_executors.base import ConfigError as ConfigError  # one class for every executor


class _Missing:
    """Sentinel type: a path that selects nothing (distinct from a JSON null)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def step_document(ctx: StepExecutorContext) -> dict[str, Any]:
    """What VALIDATE and TRANSFORM read: `{"input": ..., "outputs": {stepId: output}}`."""
    return {"input": ctx.input, "outputs": ctx.previous_outputs}


_SEGMENT = re.compile(r"^(?P<name>[^\[\]]*)(?P<indexes>(?:\[-?\d+\])*)$")
_INDEX = re.compile(r"\[(-?\d+)\]")


def parse_path(path: object, *, where: str = "path") -> list[str | int]:
    """Split `a.b[0].c` (or `a.b.0.c`) into keys and list indexes.

    A purely numeric segment stays a string here: `get_path` tries it as a mapping key first and
    then as a list index, so `items.0` works on lists and `codes.404` on mappings.
    """
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}: expected a non-empty dotted path")
    parts: list[str | int] = []
    for raw in path.split("."):
        match = _SEGMENT.match(raw)
        if match is None or (not match.group("name") and not match.group("indexes")):
            raise ConfigError(f"{where}: malformed path {path!r} (segment {raw!r})")
        if match.group("name"):
            parts.append(match.group("name"))
        parts.extend(int(i) for i in _INDEX.findall(match.group("indexes")))
    return parts


def get_path(document: Any, path: str, *, where: str = "path") -> Any:
    """The value at a dotted path, or `MISSING` if any segment does not exist."""
    current = document
    for part in parse_path(path, where=where):
        if isinstance(current, dict):
            if isinstance(part, str) and part in current:
                current = current[part]
                continue
            return MISSING
        if isinstance(current, list):
            index = part if isinstance(part, int) else _as_index(part)
            if index is None or not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
            continue
        return MISSING
    return current


def _as_index(segment: str) -> int | None:
    try:
        return int(segment)
    except ValueError:
        return None


def select(document: Any, expression: str, *, where: str) -> Any:
    """Evaluate a JMESPath expression, or (if it does not parse) a dotted path.

    Dotted paths cover step ids JMESPath cannot spell unquoted (`outputs.ingest-1.items.0`);
    anything JMESPath accepts is evaluated as JMESPath (`outputs.ingest.items[?score > `5`]`).
    A missing selection is `None` either way.
    """
    import jmespath
    from jmespath.exceptions import JMESPathError

    if not isinstance(expression, str) or not expression:
        raise ConfigError(f"{where}: expected a non-empty JMESPath expression or dotted path")
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as parse_error:
        try:
            value = get_path(document, expression, where=where)
        except ConfigError:
            raise ConfigError(
                f"{where}: {expression!r} is neither valid JMESPath ({parse_error}) "
                "nor a dotted path"
            ) from None
        return None if value is MISSING else value
    try:
        return compiled.search(document)
    except JMESPathError as exc:
        raise ConfigError(f"{where}: evaluating {expression!r} failed: {exc}") from None


def describe_type(value: Any) -> str:
    """JSON-ish type name for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
