"""A Runbook's status from the full engine validation (pure; the kopf handler writes it).

The CRD's CEL rules catch cheap mistakes at apply time; cycles and everything else the engine
checks only show here, and so do step images the operator's image policy refuses (a setting,
not the CRD): a `Valid` condition, the problems (field and reason) and, for a definition that
parses, its step count and hash — the same SHA-256 over the canonical JSON an execution pins,
so `kubectl get rb -o yaml` and `status.definitionHash` of an execution compare.

Beside `Valid`, the conditions GitOps tools read (crd/conditions.py): a valid Runbook is
Ready, an invalid one Stalled (kstatus Failed, Argo CD Degraded) until its spec is fixed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from runbook_engine.canonical import canonical_sha256
from runbook_engine.loader import definition_from_document
from runbook_engine.model import RunbookDefinition
from runbook_engine.plan import compile_plan
from runbook_engine.problems import InvalidRunbook, Problem
from runbook_operator.crd.conditions import Verdict, condition, gitops_conditions
from runbook_operator.steps.image_policy import ImagePolicy, step_image_problems

VALID = "Valid"
IMAGE_NOT_ALLOWED = "ImageNotAllowed"
MAX_PROBLEMS = 100
"""Problems kept in status (a 1,000-step runbook can have thousands; the first ones suffice)."""
MESSAGE_PROBLEMS = 3
MAX_MESSAGE = 32768
"""metav1.Condition's message limit."""
MAX_REASON = 1024
"""Per problem: a cycle through 1,000 steps would otherwise put 64 KiB into status."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def definition_hash(definition: RunbookDefinition) -> str:
    """SHA-256 of the definition's canonical JSON (what an execution pins at start)."""
    return canonical_sha256(definition.model_dump(mode="json", by_alias=True))


def _summary(problems: list[Problem]) -> str:
    shown = "; ".join(str(p) for p in problems[:MESSAGE_PROBLEMS])
    more = len(problems) - MESSAGE_PROBLEMS
    return f"{len(problems)} problem(s): {shown}" + (f"; and {more} more" if more > 0 else "")


def _validate(
    spec: Mapping[str, Any], name: str | None, known_action_types: Collection[str] | None
) -> tuple[RunbookDefinition | None, str, list[Problem]]:
    """(definition if it parses, reason, problems with `spec.` field paths)."""
    document = {"kind": "Runbook", "metadata": {"name": name} if name else {}, "spec": spec}
    try:
        definition = definition_from_document(document)
    except InvalidRunbook as exc:
        return None, "InvalidSpec", list(exc.problems)
    try:
        compile_plan(definition, known_action_types)
    except InvalidRunbook as exc:
        problems = [
            Problem(f"spec.{p.field}" if p.field else "spec", p.reason) for p in exc.problems
        ]
        return definition, "InvalidGraph", problems
    return definition, VALID, []


def runbook_status(
    spec: Mapping[str, Any],
    generation: int,
    now: datetime,
    *,
    name: str | None = None,
    previous: Mapping[str, Any] | None = None,
    known_action_types: Collection[str] | None = None,
    image_policy: ImagePolicy | None = None,
) -> dict[str, Any]:
    """The whole `status` of a Runbook whose spec is `spec` at `generation`.

    `name` (metadata.name) stands in for a missing `spec.id`, as the loader does; `previous`
    is the current status, to keep the condition's lastTransitionTime; `image_policy` is the
    operator's (steps whose image it refuses make the Runbook invalid). Every key is present:
    `None` and `[]` clear what an older status held under a JSON merge patch.
    """
    definition, reason, problems = _validate(spec, name, known_action_types)
    refused = step_image_problems(spec, image_policy) if image_policy else []
    if refused and not problems:
        reason = IMAGE_NOT_ALLOWED
    problems = [*problems, *refused]
    steps = spec.get("steps")
    valid = not problems
    status = "True" if valid else "False"
    step_count = len(definition.steps) if definition else None
    message = f"{step_count} step(s), graph checked" if valid else _summary(problems)
    message = _clip(message, MAX_MESSAGE)
    previous_conditions = (previous or {}).get("conditions") or []
    verdict = Verdict.SETTLED if valid else Verdict.STALLED
    return {
        "observedGeneration": generation,
        "conditions": [
            condition(
                VALID,
                status,
                reason,
                message,
                generation,
                now,
                previous_conditions,
                limit=MAX_MESSAGE,
            ),
            *gitops_conditions(verdict, reason, message, generation, now, previous_conditions),
        ],
        "stepCount": step_count if step_count is not None else _count(steps),
        "definitionHash": definition_hash(definition) if definition else None,
        "problems": [
            {"field": p.field, "reason": _clip(p.reason, MAX_REASON)}
            for p in problems[:MAX_PROBLEMS]
        ],
    }


def _count(steps: Any) -> int | None:
    return len(steps) if isinstance(steps, list) else None


def runbook_status_of(
    body: Mapping[str, Any], now: datetime, image_policy: ImagePolicy | None = None
) -> dict[str, Any]:
    """The status of the Runbook object `body` (its name stands in for a missing spec.id, as
    locally; its current status keeps lastTransitionTime, so an event rewrites nothing)."""
    meta = body.get("metadata") or {}
    return runbook_status(
        dict(body.get("spec") or {}),
        int(meta.get("generation") or 0),
        now,
        name=meta.get("name"),
        previous=body.get("status"),
        image_policy=image_policy,
    )
