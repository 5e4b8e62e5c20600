"""VALIDATE: JSON Schema (draft 2020-12) and the reference's simple rules, reporting every violation.

Both read the step document `{"input": ctx.input, "outputs": {stepId: output}}`.

Config:
  schema:  a JSON Schema (draft 2020-12, `format` checked) for the document, or for the value
           selected by `target`
  target:  JMESPath expression (or dotted path, for step ids such as `ingest-1`) selecting
           what `schema` validates; a selection that matches nothing is validated as null
  rules:   [{field, required, minLength, hasProperty}], `field` a dotted path into the document

Output: {valid, violations: [{source, path, keyword, message}]}; KPIs violationCount,
rulesChecked. Any violation fails the attempt with a summary of the count and the first few.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from runbook_engine.contract import ActionType, StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor, canonical_sha256
from runbook_executors.generic._common import (
    MISSING,
    ConfigError,
    describe_type,
    get_path,
    parse_path,
    select,
    step_document,
)

SUMMARY_LIMIT = 3
"""How many violations the failure message quotes (the output lists them all)."""

MESSAGE_LIMIT = 300
"""jsonschema messages quote the instance; a huge instance must not bloat the result."""

RULE_KEYS = frozenset({"field", "required", "minLength", "hasProperty"})

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def _is_rfc3339(instance: object) -> bool:
    """`date-time` checker used when jsonschema's optional rfc3339 dependency is absent."""
    if not isinstance(instance, str):
        return True  # formats only constrain strings
    if not _RFC3339.match(instance):
        return False
    normalised = instance.upper().replace("Z", "+00:00").replace(" ", "T", 1)
    try:
        datetime.fromisoformat(normalised)
    except ValueError:
        return False
    return True


def _digest(value: Any) -> str:
    """SHA-256 of canonical JSON; RFC 8785 refuses integers beyond 2^53, plain sorted JSON not."""
    try:
        return canonical_sha256(value)
    except Exception:  # rfc8785's IntegerDomainError and friends
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def violation(source: str, path: str, keyword: str, message: str) -> dict[str, str]:
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return {"source": source, "path": path, "keyword": keyword, "message": message}


def _join(prefix: str, parts: Any) -> str:
    rel = ".".join(str(p) for p in parts)
    if prefix and rel:
        return f"{prefix}.{rel}"
    return prefix or rel or "$"


class ValidateStepExecutor(BaseStepExecutor):
    """Validates upstream data; see the module docstring for config."""

    action_type: ClassVar[str] = ActionType.VALIDATE
    preload_modules: ClassVar[tuple[str, ...]] = ("jsonschema", "referencing")

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        document = step_document(ctx)
        schema = self.get_config(ctx, "schema")
        rules = self.get_config(ctx, "rules")
        try:
            if schema is None and rules is None:
                raise ConfigError("config: VALIDATE needs 'schema' and/or 'rules'")
            if schema is None and self.get_config(ctx, "target") is not None:
                # rules address the document themselves; a lone target would be ignored
                raise ConfigError("config.target: only used with 'schema'")
            checked_rules = self._check_rules(rules) if rules is not None else []
            violations: list[dict[str, str]] = []
            if schema is not None:
                violations.extend(self._schema_violations(ctx, schema, document))
            for rule in checked_rules:
                violations.extend(self._rule_violations(rule, document))
        except ConfigError as exc:
            return self.failure(str(exc), retryable=False)  # same input, same failure

        valid = not violations
        output = {"valid": valid, "violations": violations}
        kpis: dict[str, int | float | bool | str] = {
            "violationCount": len(violations),
            "rulesChecked": len(checked_rules),
        }
        evidence = self.create_evidence(
            "validation",
            {
                # executionId/stepId keep ids distinct per step, yet stable across re-runs.
                "executionId": ctx.execution_id,
                "stepId": ctx.step_id,
                "valid": valid,
                "violationCount": len(violations),
                "schemaSha256": _digest(schema) if schema is not None else None,
                "rulesSha256": _digest(rules) if rules is not None else None,
            },
            step_id=ctx.step_id,
        )
        if valid:
            return self.success(output, kpis=kpis, evidence=[evidence])
        quoted = "; ".join(f"{v['path']}: {v['message']}" for v in violations[:SUMMARY_LIMIT])
        more = len(violations) - SUMMARY_LIMIT
        suffix = f" (and {more} more)" if more > 0 else ""
        noun = "violation" if len(violations) == 1 else "violations"
        result = self.failure(
            f"validation failed with {len(violations)} {noun}: {quoted}{suffix}",
            output=output,
            kpis=kpis,
        )
        result.evidence.append(evidence)
        return result

    # -- JSON Schema ---------------------------------------------------------------------------
    def _schema_violations(
        self, ctx: StepExecutorContext, schema: Any, document: dict[str, Any]
    ) -> list[dict[str, str]]:
        from jsonschema import Draft202012Validator, FormatChecker
        from jsonschema.exceptions import SchemaError
        from referencing.exceptions import Unresolvable

        if not isinstance(schema, dict | bool):
            raise ConfigError(f"config.schema: expected an object, got {describe_type(schema)}")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = _join("config.schema", exc.absolute_path)
            raise ConfigError(f"{where}: invalid JSON Schema: {exc.message}") from None

        target = self.get_config(ctx, "target")
        if target is None:
            instance: Any = document
            prefix = ""
        else:
            instance = select(document, target, where="config.target")
            prefix = target

        checker = FormatChecker()
        checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
        if "date-time" not in checker.checkers:
            checker.checks("date-time")(_is_rfc3339)
        validator = Draft202012Validator(schema, format_checker=checker)
        try:
            found = [
                violation(
                    "schema", _join(prefix, err.absolute_path), str(err.validator), err.message
                )
                for err in validator.iter_errors(instance)
            ]
        except Unresolvable as exc:
            # Remote references are never fetched; a bad local one is a config error too.
            raise ConfigError(f"config.schema: unresolvable $ref: {exc}") from None
        # Deterministic order: the verdict and its evidence must not depend on dict iteration.
        return sorted(found, key=lambda v: (v["path"], v["keyword"], v["message"]))

    # -- reference rules -----------------------------------------------------------------------
    @staticmethod
    def _check_rules(rules: Any) -> list[dict[str, Any]]:
        if not isinstance(rules, list):
            raise ConfigError(f"config.rules: expected a list, got {describe_type(rules)}")
        checked: list[dict[str, Any]] = []
        for i, rule in enumerate(rules):
            where = f"config.rules[{i}]"
            if not isinstance(rule, Mapping):
                raise ConfigError(f"{where}: expected an object, got {describe_type(rule)}")
            unknown = sorted(set(rule) - RULE_KEYS)
            if unknown:
                raise ConfigError(
                    f"{where}: unknown key(s) {', '.join(unknown)} "
                    f"(allowed: {', '.join(sorted(RULE_KEYS))})"
                )
            parse_path(rule.get("field"), where=f"{where}.field")
            if not isinstance(rule.get("required", False), bool):
                raise ConfigError(f"{where}.required: expected true or false")
            min_length = rule.get("minLength")
            if min_length is not None and (
                isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 0
            ):
                raise ConfigError(f"{where}.minLength: expected a non-negative integer")
            prop = rule.get("hasProperty")
            if prop is not None and (not isinstance(prop, str) or not prop):
                raise ConfigError(f"{where}.hasProperty: expected a property name")
            checked.append(dict(rule))
        return checked

    @staticmethod
    def _rule_violations(rule: dict[str, Any], document: Any) -> list[dict[str, str]]:
        field: str = rule["field"]
        value = get_path(document, field)
        found: list[dict[str, str]] = []

        def add(keyword: str, message: str) -> None:
            found.append(violation("rule", field, keyword, message))

        if value is MISSING or value is None:
            if rule.get("required", False):
                add("required", "is required but " + ("missing" if value is MISSING else "null"))
            return found  # the other checks only constrain present values
        min_length = rule.get("minLength")
        if min_length is not None:
            if isinstance(value, str | list | dict):
                if len(value) < min_length:
                    add("minLength", f"length {len(value)} is less than minimum {min_length}")
            else:
                add("minLength", f"has no length ({describe_type(value)})")
        prop = rule.get("hasProperty")
        if prop is not None:
            if not isinstance(value, dict):
                add("hasProperty", f"is {describe_type(value)}, not an object with {prop!r}")
            elif prop not in value:
                add("hasProperty", f"has no property {prop!r}")
        return found
