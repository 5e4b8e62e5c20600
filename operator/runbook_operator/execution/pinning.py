"""Pinning an execution's definition at start, and refusing one that cannot start (pure).

Editing or deleting the Runbook later never changes a running execution: the definition and
the request are copied into a ConfigMap owned by the execution, and `status.definitionHash`
records what was pinned. An execution that cannot start (no such Runbook, an invalid one, a
spec the model refuses) ends FAILED at once with a condition naming the field and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from immutables import Map
from pydantic import ValidationError

from runbook_engine.audit import AuditEvent
from runbook_engine.canonical import canonical_json, canonical_sha256
from runbook_engine.enums import ExecutionStatus, LogEventType
from runbook_engine.limits import value_too_big
from runbook_engine.loader import definition_from_document
from runbook_engine.model import ExecutionRequest, RunbookDefinition
from runbook_engine.plan import Plan, compile_plan
from runbook_engine.problems import InvalidRunbook, Problem, problems_from_pydantic
from runbook_engine.state import ExecutionState
from runbook_operator import names
from runbook_operator.names import ExecutionRef
from runbook_operator.steps.contract import DEFINITION_KEY, REQUEST_KEY
from runbook_operator.steps.image_policy import ImagePolicy, step_image_problems

HASH_ANNOTATION = f"{names.LABEL_PREFIX}/definition-hash"
DEFINITION_MAX_BYTES = 900_000


@dataclass(frozen=True, slots=True)
class Pinned:
    """The definition and request pinned at start (from the definition ConfigMap)."""

    plan: Plan
    request: ExecutionRequest
    definition_hash: str
    configmap: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an execution cannot start: a condition reason and the problems."""

    reason: str
    problems: tuple[Problem, ...]

    @property
    def message(self) -> str:
        return "; ".join(str(p) for p in self.problems)


def parse_request(spec: Mapping[str, Any]) -> ExecutionRequest | Refusal:
    """The spec as a request, or why it is refused. `spec.input` is measured first (without
    recursion), so a too-deep or too-large one is refused as InputTooDeep/InputTooLarge with its
    depth or size and the limit, before anything walks it."""
    too_big = value_too_big(spec.get("input"), "spec.input")
    if too_big is not None:
        return Refusal(f"Input{too_big.kind}", (too_big.problem,))
    try:
        return ExecutionRequest.model_validate(dict(spec))
    except ValidationError as exc:
        return Refusal("InvalidSpec", tuple(problems_from_pydantic(exc, "spec")))


def unauthenticated() -> Refusal:
    """No creator stamped at admission: who started it is unknown, so it does not start."""
    reason = (
        "no authenticated creator: the annotation runbook-operator.dev/created-by is written by "
        "the chart's admission policies, which this cluster lacks or skipped (docs/security.md)"
    )
    return Refusal("Unauthenticated", (Problem("metadata.annotations", reason),))


def pin(
    runbook: Mapping[str, Any] | None,
    request: ExecutionRequest,
    ref: ExecutionRef,
    image_policy: ImagePolicy | None = None,
) -> dict[str, Any] | Refusal:
    """The definition ConfigMap for `runbook`, or why the execution cannot start."""
    name = request.runbook_ref.name
    if runbook is None:
        reason = f"Runbook {name!r} not found in namespace {ref.namespace}"
        return Refusal("RunbookNotFound", (Problem("spec.runbookRef.name", reason),))
    try:
        definition = definition_from_document(runbook)
        compile_plan(definition)
    except InvalidRunbook as exc:
        problems = tuple(Problem(f"Runbook {name}: {p.field}", p.reason) for p in exc.problems)
        return Refusal("InvalidRunbook", problems)
    refused = step_image_problems(runbook.get("spec") or {}, image_policy) if image_policy else []
    if refused:
        problems = tuple(Problem(f"Runbook {name}: {p.field}", p.reason) for p in refused)
        return Refusal("ImageNotAllowed", problems)
    body = definition.model_dump(mode="json", by_alias=True)
    data = {
        DEFINITION_KEY: canonical_json(body).decode(),
        REQUEST_KEY: canonical_json(request.model_dump(mode="json", by_alias=True)).decode(),
    }
    size = sum(len(v) for v in data.values())
    if size > DEFINITION_MAX_BYTES:
        reason = f"definition and input are {size} bytes; a ConfigMap holds {DEFINITION_MAX_BYTES}"
        return Refusal("TooLarge", (Problem("spec", reason),))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.definition_configmap(ref.name, ref.uid),
            "labels": names.labels(ref.name, ref.uid, "definition"),
            "annotations": {HASH_ANNOTATION: canonical_sha256(body)},
            "ownerReferences": [ref.owner(controller=False)],
        },
        "immutable": True,
        "data": data,
    }


def pinned_from_configmap(cm: Mapping[str, Any]) -> Pinned:
    """Read a definition ConfigMap back (raises ValueError/InvalidRunbook if it was damaged)."""
    data = cm.get("data") or {}
    definition = RunbookDefinition.model_validate_json(data[DEFINITION_KEY])
    request = ExecutionRequest.model_validate_json(data[REQUEST_KEY])
    digest = canonical_sha256(definition.model_dump(mode="json", by_alias=True))
    recorded = (cm.get("metadata", {}).get("annotations") or {}).get(HASH_ANNOTATION)
    if recorded != digest:
        raise ValueError(f"definition ConfigMap was altered (hash {digest[:16]}…)")
    return Pinned(compile_plan(definition), request, digest, str(cm["metadata"]["name"]))


def refusal_events(refusal: Refusal, request: ExecutionRequest | None) -> tuple[AuditEvent, ...]:
    """The audit events of an execution refused before any step (as the engine's own gate)."""
    problems = [{"field": p.field, "reason": p.reason} for p in refusal.problems]
    details: dict[str, Any] = {"problems": problems, "reason": refusal.reason}
    if request is not None:
        details["legalBasis"] = str(request.legal_basis) if request.legal_basis else None
        details["dataLicenses"] = [str(x) for x in request.data_licenses]
        if request.rerun_of is not None:  # a refused re-run still names its parent
            details["rerunOf"] = {"name": request.rerun_of.name}
    return (
        AuditEvent("rejected", LogEventType.EXECUTION_REJECTED, None, details),
        AuditEvent(
            "failed",
            LogEventType.EXECUTION_FAILED,
            None,
            {"reason": "rejected", "message": refusal.message},
        ),
    )


def refused_state(ref: ExecutionRef, runbook_id: str, refusal: Refusal, now: Any) -> ExecutionState:
    return ExecutionState(
        execution_id=ref.execution_id,
        runbook_id=runbook_id,
        status=ExecutionStatus.FAILED,
        steps=Map(),
        created_at=now,
        finished_at=now,
        message=f"rejected ({refusal.reason}): {refusal.message}",
    )
