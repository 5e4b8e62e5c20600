"""TRANSFORM: reshape upstream data with JMESPath expressions or the reference's transform types.

Both read the step document `{"input": ctx.input, "outputs": {stepId: output}}`.

Config:
  expressions:   {outputKey: "JMESPath expression"}; each result becomes an output key
  transformType: passthrough | flatten | unflatten | extract | aggregate (default passthrough
                 when `expressions` is absent); the result goes to `outputKey`
  outputKey:     where the transformType's result goes (default "transformedData")
  source:        dotted path selecting the transform's input (default: the whole document,
                 but only `input` for passthrough, which must not copy upstream outputs);
                 the reference's `inputPath` (nearest upstream output key) is also accepted
  separator:     flatten/unflatten key separator (default ".")
  fields:        extract: dotted paths (or {path, as}) relative to the source
  groupBy, operations: aggregate, see `aggregate`
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from runbook_engine.contract import ActionType, StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic._common import (
    MISSING,
    ConfigError,
    describe_type,
    get_path,
    parse_path,
    step_document,
)

TRANSFORM_TYPES = ("passthrough", "flatten", "unflatten", "extract", "aggregate")
OPERATIONS = ("count", "sum", "min", "max", "avg")
DEFAULT_OUTPUT_KEY = "transformedData"


class TransformDataError(ValueError):
    """The data cannot be transformed as configured (e.g. two keys flatten to the same name)."""


# -- flatten / unflatten ---------------------------------------------------------------------
def flatten(value: Mapping[str, Any], separator: str = ".") -> dict[str, Any]:
    """Nested mappings to one level of `a.b.c` keys; lists and empty objects are leaves.

    Keeping `{}` as a leaf makes `unflatten(flatten(x)) == x` whenever no key contains the
    separator; a key that does and collides with a nested path is an error, never a silent loss.
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str | None, node: Mapping[str, Any]) -> None:
        for key, child in node.items():
            name = str(key) if prefix is None else f"{prefix}{separator}{key}"
            if isinstance(child, Mapping) and child:
                walk(name, child)
            elif name in flat:
                raise TransformDataError(f"flatten: key {name!r} is produced twice")
            else:
                flat[name] = child

    walk(None, value)
    return flat


def unflatten(flat: Mapping[str, Any], separator: str = ".") -> dict[str, Any]:
    """Inverse of `flatten`: `{"a.b": 1}` to `{"a": {"b": 1}}`; conflicting keys are an error."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        parts = str(key).split(separator)
        node = root
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = separator.join(parts[: depth + 1])
                raise TransformDataError(f"unflatten: {key!r} conflicts with leaf {prefix!r}")
            node = child
        leaf = parts[-1]
        if leaf in node:
            raise TransformDataError(f"unflatten: {key!r} conflicts with a nested key")
        node[leaf] = dict(value) if isinstance(value, dict) else value
    return root


def flatten_list(items: list[Any]) -> list[Any]:
    """Deep-flatten nested arrays (the reference's `flatten` on an array source)."""
    out: list[Any] = []
    stack: list[Any] = [iter(items)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


# -- extract ---------------------------------------------------------------------------------
def extract(source: Any, fields: Any) -> tuple[dict[str, Any], list[str]]:
    """Pick dotted paths out of `source`; returns (values by name, paths that were missing)."""
    if not isinstance(fields, list) or not fields:
        raise ConfigError("config.fields: expected a non-empty list of dotted paths")
    values: dict[str, Any] = {}
    missing: list[str] = []
    for i, spec in enumerate(fields):
        where = f"config.fields[{i}]"
        if isinstance(spec, str):
            path, name = spec, spec
        elif isinstance(spec, Mapping) and set(spec) <= {"path", "as"} and "path" in spec:
            path, name = spec["path"], spec.get("as", spec["path"])
        else:
            raise ConfigError(f"{where}: expected a dotted path or {{path, as}}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.as: expected a non-empty string")
        if name in values or name in missing:
            raise ConfigError(f"{where}: output name {name!r} is used twice")
        value = get_path(source, path, where=where)
        if value is MISSING:
            missing.append(name)
        else:
            values[name] = value
    return values, missing


# -- aggregate -------------------------------------------------------------------------------
def _parse_operations(operations: Any) -> list[tuple[str, str | None, str]]:
    """Normalise `["count", "sum:score", {op, field, as}]` to (op, field, name) triples."""
    if operations is None:
        operations = ["count"]
    if not isinstance(operations, list) or not operations:
        raise ConfigError("config.operations: expected a non-empty list")
    parsed: list[tuple[str, str | None, str]] = []
    for i, spec in enumerate(operations):
        where = f"config.operations[{i}]"
        op: Any
        field: Any
        name: Any
        if isinstance(spec, str):
            op, _, field_text = spec.partition(":")
            field, name = field_text or None, None
        elif isinstance(spec, Mapping) and set(spec) <= {"op", "field", "as"}:
            op, field, name = spec.get("op"), spec.get("field"), spec.get("as")
        else:
            raise ConfigError(f"{where}: expected 'op', 'op:field' or {{op, field, as}}")
        if op not in OPERATIONS:
            raise ConfigError(f"{where}: unknown operation {op!r} (one of {', '.join(OPERATIONS)})")
        if field is not None:
            parse_path(field, where=f"{where}.field")
        elif op != "count":
            raise ConfigError(f"{where}: {op} needs a field")
        name = name or (op if field is None else f"{op}_{field}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.as: expected a non-empty string")
        if any(name == other for _, _, other in parsed):
            raise ConfigError(f"{where}: result name {name!r} is used twice")
        parsed.append((op, field, name))
    return parsed


def _group_key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _numbers(items: list[Any], field: str, op: str) -> list[int | float]:
    numbers: list[int | float] = []
    for index, item in enumerate(items):
        value = get_path(item, field)
        if value is MISSING or value is None:
            continue  # like SQL NULL: absent values do not take part
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TransformDataError(
                f"aggregate: {op} over {field!r}: item {index} has {describe_type(value)} "
                f"{value!r}, not a number"
            )
        numbers.append(value)
    return numbers


def _apply(items: list[Any], ops: list[tuple[str, str | None, str]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for op, field, name in ops:
        if op == "count":
            if field is None:
                result[name] = len(items)
            else:
                result[name] = sum(
                    1 for item in items if get_path(item, field) not in (MISSING, None)
                )
            continue
        assert field is not None  # checked by _parse_operations
        numbers = _numbers(items, field, op)
        if op == "sum":
            result[name] = sum(numbers)
        elif not numbers:
            result[name] = None
        elif op == "min":
            result[name] = min(numbers)
        elif op == "max":
            result[name] = max(numbers)
        else:
            result[name] = sum(numbers) / len(numbers)
    return result


def aggregate(items: Any, group_by: str | None, operations: Any) -> tuple[dict[str, Any], int]:
    """count/sum/min/max/avg over `items`, optionally per `group_by` value.

    Returns (results, skipped): with `group_by`, results maps each group's key (the value
    itself if a string, else its JSON) to its results, in first-seen order; items without the
    group field are skipped and counted.
    """
    if not isinstance(items, list):
        raise TransformDataError(f"aggregate: source is {describe_type(items)}, expected array")
    ops = _parse_operations(operations)
    if group_by is None:
        return _apply(items, ops), 0
    parse_path(group_by, where="config.groupBy")
    groups: dict[str, list[Any]] = {}
    skipped = 0
    for item in items:
        key = get_path(item, group_by)
        if key is MISSING:
            skipped += 1
            continue
        groups.setdefault(_group_key(key), []).append(item)
    return {key: _apply(members, ops) for key, members in groups.items()}, skipped


def _size(value: Any) -> int:
    """Length of the compact JSON (the reference's inputSize/outputSize KPIs)."""
    return len(json.dumps(value, separators=(",", ":"), sort_keys=True, default=str))


class TransformStepExecutor(BaseStepExecutor):
    """Reshapes upstream data; see the module docstring for config."""

    action_type: ClassVar[str] = ActionType.TRANSFORM
    preload_modules: ClassVar[tuple[str, ...]] = ("jmespath",)

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        document = step_document(ctx)
        try:
            output = self._expressions(ctx, document)
            transform_type = self.get_config(ctx, "transformType")
            if transform_type is None and not output:
                transform_type = "passthrough"
            if transform_type is None:
                # expressions always read the whole document; these keys would be ignored
                ignored = [k for k in ("source", "inputPath", "outputKey") if k in ctx.config]
                if ignored:
                    raise ConfigError(
                        f"config.{ignored[0]}: only used with 'transformType' "
                        "(expressions read the whole document)"
                    )
            source: Any = document
            if transform_type is not None:
                source = self._source(ctx, document, transform_type)
                extra = self._transform(ctx, transform_type, source)
                clash = sorted(set(extra) & set(output))
                if clash:
                    raise ConfigError(
                        f"config.expressions: key(s) {', '.join(clash)} clash with the "
                        f"{transform_type} result"
                    )
                output.update(extra)
        except (ConfigError, TransformDataError) as exc:
            return self.failure(str(exc), retryable=False)  # same input, same failure
        return self.success(output, kpis={"inputSize": _size(source), "outputSize": _size(output)})

    def _expressions(self, ctx: StepExecutorContext, document: Any) -> dict[str, Any]:
        import jmespath
        from jmespath.exceptions import JMESPathError

        expressions = self.get_config(ctx, "expressions")
        if expressions is None:
            return {}
        if not isinstance(expressions, Mapping) or not expressions:
            raise ConfigError("config.expressions: expected an object {outputKey: expression}")
        compiled = {}
        for key, expr in expressions.items():
            if not isinstance(expr, str) or not expr.strip():
                raise ConfigError(f"config.expressions.{key}: expected a JMESPath string")
            try:
                compiled[key] = jmespath.compile(expr)
            except JMESPathError as exc:
                raise ConfigError(
                    f"config.expressions.{key}: invalid JMESPath {expr!r}: {exc}"
                ) from None
        results: dict[str, Any] = {}
        for key, parsed in compiled.items():
            try:
                results[key] = parsed.search(document)
            except JMESPathError as exc:
                raise ConfigError(f"config.expressions.{key}: evaluation failed: {exc}") from None
        return results

    def _source(self, ctx: StepExecutorContext, document: Any, kind: Any) -> Any:
        source_path = self.get_config(ctx, "source")
        input_path = self.get_config(ctx, "inputPath")
        if source_path is not None and input_path is not None:
            raise ConfigError("config: give either 'source' or 'inputPath', not both")
        if input_path is not None:
            if not isinstance(input_path, str) or not input_path:
                raise ConfigError("config.inputPath: expected an upstream output key")
            value = self.find_previous_output(ctx, input_path, MISSING)
            if value is MISSING:
                raise ConfigError(f"config.inputPath: no upstream output has key {input_path!r}")
            return value
        if source_path is None:
            # A passthrough of the whole document would embed every upstream output in this
            # step's output, and a chain of them doubles in size at every step.
            return document["input"] if kind == "passthrough" else document
        value = get_path(document, source_path, where="config.source")
        if value is MISSING:
            raise ConfigError(f"config.source: {source_path!r} selects nothing in the document")
        return value

    def _transform(self, ctx: StepExecutorContext, kind: Any, source: Any) -> dict[str, Any]:
        out_key = self.get_config(ctx, "outputKey", DEFAULT_OUTPUT_KEY)
        if not isinstance(out_key, str) or not out_key:
            raise ConfigError("config.outputKey: expected a non-empty string")
        separator = self.get_config(ctx, "separator", ".")
        if not isinstance(separator, str) or not separator:
            raise ConfigError("config.separator: expected a non-empty string")
        output: dict[str, Any] = {"transformType": kind}
        if kind == "passthrough":
            data: Any = source
        elif kind in ("flatten", "unflatten"):
            if isinstance(source, list) and kind == "flatten":
                data = flatten_list(source)
            elif isinstance(source, Mapping):
                data = (
                    flatten(source, separator)
                    if kind == "flatten"
                    else unflatten(source, separator)
                )
            else:
                raise TransformDataError(
                    f"{kind}: source is {describe_type(source)}, expected object"
                    + (" or array" if kind == "flatten" else "")
                )
        elif kind == "extract":
            fields = self.get_config(ctx, "fields")
            if fields is None:
                fields = self.get_config(ctx, "extractPaths")  # the reference's spelling
            data, missing = extract(source, fields)
            output["missingFields"] = missing
        elif kind == "aggregate":
            group_by = self.get_config(ctx, "groupBy", self.get_config(ctx, "aggregateField"))
            if group_by is not None and not isinstance(group_by, str):
                raise ConfigError("config.groupBy: expected a dotted path")
            data, skipped = aggregate(source, group_by, self.get_config(ctx, "operations"))
            if group_by is not None:
                output["skippedItems"] = skipped
        else:
            raise ConfigError(
                f"config.transformType: unknown {kind!r} (one of {', '.join(TRANSFORM_TYPES)})"
            )
        if out_key in output:
            raise ConfigError(f"config.outputKey: {out_key!r} is reserved")
        output[out_key] = data
        return output
