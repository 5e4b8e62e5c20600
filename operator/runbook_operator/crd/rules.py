"""What the apiserver checks at apply time beyond the types: list semantics and CEL rules.

The full validation (cycles, everything the engine checks) runs in the operator and ends in
the Runbook's `Valid` condition (`runbook_status`); these rules only catch, at `kubectl apply`,
the mistakes that can be found cheaply. The apiserver prices every rule before it accepts the
CRD (per rule 10M units, per CRD 100M, per evaluation 1M) from `maxItems`/`maxLength`, so the
CRD bounds `steps` and `dependsOn` to `MAX_STEPS` (a cluster limit: the engine has none, but a
larger execution's status would not fit the 1.5 MiB object limit) and ids to 63 characters
(what the id pattern allows anyway). The id lookup goes through a map built once with
`transformMapEntry`, so checking dependencies is O(steps x dependsOn) and a 1,000-step runbook
is accepted. Unique step ids cost nothing: `steps` is a list-map keyed by id.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from runbook_engine.model import RetryPolicy

Path = tuple[str, ...]
"""Property names from the spec down; "[]" steps into a list's items."""

MAX_STEPS = 1000
"""Steps per Runbook on a cluster, and dependencies per step."""
STEP_ID_MAX_LENGTH = 63
"""The longest id STEP_ID_PATTERN allows (the apiserver prices strings by maxLength only)."""

MUTABLE_EXECUTION_FIELDS = ("paused", "cancel")
"""The only RunbookExecution spec fields a user may change after creation (control levels)."""

_STEP_IDS = "self.transformMapEntry(i, s, {s.id: true})"
_UNKNOWN = "has(s.dependsOn) && s.dependsOn.exists(d, !(d in ids))"

KNOWN_DEPENDENCIES = {
    "rule": f"[{_STEP_IDS}].all(ids, self.all(s, !has(s.dependsOn) || s.dependsOn.all(d, d in ids)))",
    # The first offending step by index; `format` because the cost estimator cannot bound
    # `string(int)` and prices a concatenation with it far over the budget.
    "messageExpression": (
        f"[{_STEP_IDS}].map(ids, [self.transformList(i, s, {_UNKNOWN}, i)[0]].map(b, "
        "'spec.steps[%d].dependsOn: unknown step %s (dependsOn must name a step of this "
        "runbook)'.format([b, self[b].dependsOn.filter(d, !(d in ids))[0]]))[0])[0]"
    ),
    # Shown after the evaluation error when ids repeat (the map cannot hold a key twice); the
    # list-map's own "Duplicate value" error names the repeated step.
    "message": "every spec.steps[].dependsOn entry must name a step of this runbook, "
    "and step ids must be unique",
    "reason": "FieldValueInvalid",
}
NO_SELF_DEPENDENCY = {
    "rule": "!has(self.dependsOn) || !(self.id in self.dependsOn)",
    "messageExpression": "'step ' + self.id + ' depends on itself'",
    "message": "a step cannot depend on itself",
    "fieldPath": ".dependsOn",
    "reason": "FieldValueInvalid",
}
_BASE_DEFAULT = float(RetryPolicy.model_fields["backoff_seconds"].default)
BACKOFF_CAP = {
    "rule": (
        "!has(self.maxBackoffSeconds) || self.maxBackoffSeconds >= "
        f"(has(self.backoffSeconds) ? self.backoffSeconds : {_BASE_DEFAULT!r})"
    ),
    "message": "maxBackoffSeconds must be >= backoffSeconds (default "
    f"{_BASE_DEFAULT:g}): a lower cap would shorten every wait",
    "fieldPath": ".maxBackoffSeconds",
    "reason": "FieldValueInvalid",
}

RUNBOOK_SPEC_RULES: tuple[tuple[Path, Mapping[str, Any]], ...] = (
    (
        ("steps",),
        {
            "maxItems": MAX_STEPS,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["id"],
            "x-kubernetes-validations": [KNOWN_DEPENDENCIES],
        },
    ),
    (("steps", "[]"), {"x-kubernetes-validations": [NO_SELF_DEPENDENCY]}),
    (("steps", "[]", "id"), {"maxLength": STEP_ID_MAX_LENGTH}),
    (("steps", "[]", "dependsOn"), {"maxItems": MAX_STEPS, "x-kubernetes-list-type": "set"}),
    (("steps", "[]", "dependsOn", "[]"), {"maxLength": STEP_ID_MAX_LENGTH}),
    (("steps", "[]", "retryPolicy"), {"x-kubernetes-validations": [BACKOFF_CAP]}),
)


def _node(schema: dict[str, Any], path: Path) -> dict[str, Any]:
    for part in path:
        schema = schema["items"] if part == "[]" else schema["properties"][part]
    return schema


def with_rules(
    schema: Mapping[str, Any], rules: Sequence[tuple[Path, Mapping[str, Any]]]
) -> dict[str, Any]:
    """A copy of `schema` with each extension merged in at its path (validations appended)."""
    out = copy.deepcopy(dict(schema))
    for path, extra in rules:
        node = _node(out, path)
        for key, value in extra.items():
            if key == "x-kubernetes-validations":
                node[key] = [*node.get(key, []), *copy.deepcopy(value)]
            else:
                node[key] = copy.deepcopy(value)
    return out


def immutable_field_rule(name: str) -> dict[str, str]:
    """`spec.<name>` may not be added, removed or changed once the object exists."""
    mutable = " and ".join(f"spec.{f}" for f in MUTABLE_EXECUTION_FIELDS)
    return {
        "rule": (
            f"has(self.{name}) == has(oldSelf.{name}) && "
            f"(!has(self.{name}) || self.{name} == oldSelf.{name})"
        ),
        "message": f"spec.{name} is immutable after creation (only {mutable} may change)",
        "fieldPath": f".{name}",
        "reason": "FieldValueForbidden",
    }


CANCEL_IS_FINAL = {
    "rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
    "message": "spec.cancel cannot go back to false: a cancelled execution stays cancelled",
    "fieldPath": ".cancel",
    "reason": "FieldValueForbidden",
}


def execution_spec_rules(spec_schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every spec field but the control levels is immutable; cancel only goes false → true.

    Generated from the schema's properties, so a field added to the model is immutable unless
    it is listed in MUTABLE_EXECUTION_FIELDS.
    """
    names = [n for n in spec_schema["properties"] if n not in MUTABLE_EXECUTION_FIELDS]
    return [*(immutable_field_rule(n) for n in names), CANCEL_IS_FINAL]
