"""`runbookctl rerun` locally: a previous run's result file and ledger → the re-run's start.

The result file is what `runbookctl run -o json` printed (final state, outputs, request, audit
head); the ledger is the JSON Lines file that run wrote. Before anything runs, the parent's
chain is verified (and must reach the head the result file names), the outputs to reuse must
hash to what that chain recorded, the runbook must be the one the parent ran (its definition
hash) unless `--latest`, and the input, when not given anew, must hash to the parent's.
Pure: documents and ledger lines in, a `Prepared` or `RerunRefused` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from runbook_engine.audit import verify
from runbook_engine.canonical import canonical_sha256
from runbook_engine.enums import LogEventType
from runbook_engine.model import ExecutionRequest, RerunOf
from runbook_engine.plan import Plan
from runbook_engine.problems import Problem, problems_from_pydantic
from runbook_engine.rerun import (
    ParentRecord,
    RerunLink,
    RerunRefused,
    output_problems,
    parent_not_finished,
    recorded_output_hashes,
    rerun_execution,
    select,
)
from runbook_engine.state import ExecutionState


@dataclass(frozen=True, slots=True)
class Prepared:
    """A re-run ready for the local runner."""

    request: ExecutionRequest
    state: ExecutionState
    link: RerunLink


def _refused(reason: str, where: str, why: str) -> RerunRefused:
    return RerunRefused(reason, [Problem(where, why)])


def parent_state(result: Any) -> ExecutionState:
    """The parent's final state from its result file (RerunRefused if it is not one)."""
    if not isinstance(result, Mapping):
        raise _refused("InvalidResult", "result", "not a JSON object (`runbookctl run -o json`)")
    try:
        return ExecutionState.from_wire(result)
    except (KeyError, TypeError, ValueError) as exc:
        raise _refused("InvalidResult", "result", f"not a run's result document: {exc}") from None


def parent_chain(
    entries: Sequence[Mapping[str, Any]], execution_id: str, result: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    """The parent's verified chain, which must reach the head and length the result records."""
    chain = [e for e in entries if e.get("executionId") == execution_id]
    if not chain:
        raise _refused("LedgerMissing", "ledger", f"no entries of execution {execution_id!r}")
    head, count = result.get("auditHead"), result.get("auditEntries")
    checked = verify(
        chain,
        execution_id=execution_id,
        expected_head=head if isinstance(head, str) else None,
        expected_count=count if isinstance(count, int) else None,
    )
    if not checked.valid:
        raise _refused("LedgerTampered", "ledger", f"the parent's chain does not verify: {checked}")
    return chain


def _started(chain: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    for entry in chain:
        if entry.get("eventType") == str(LogEventType.EXECUTION_STARTED):
            return entry.get("details") or {}
    raise _refused("ParentNeverStarted", "ledger", "the parent never started (it was rejected)")


def prepare(
    plan: Plan,
    result: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    *,
    execution_id: str,
    now: datetime,
    new_input: dict[str, Any] | None,
    rerun_from: Sequence[str] = (),
    only: Sequence[str] = (),
    latest: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> Prepared:
    """Everything checked, the re-run's request and PENDING state (or RerunRefused)."""
    parent = parent_state(result)
    refused = parent_not_finished(str(parent.status))
    if refused is not None:
        raise refused
    chain = parent_chain(entries, parent.execution_id, result)
    started = _started(chain)
    definition_hash = canonical_sha256(plan.definition.model_dump(mode="json", by_alias=True))
    if not latest and started.get("definitionHash") != definition_hash:
        raise _refused(
            "DefinitionChanged",
            "runbook",
            f"the runbook hashes to {definition_hash[:16]}…, the parent ran "
            f"{str(started.get('definitionHash'))[:16]}…: pass --latest to re-run with the "
            "runbook as it is now",
        )
    asked = result.get("request")
    if not isinstance(asked, Mapping):
        raise _refused(
            "InvalidResult",
            "result.request",
            "the result file does not hold the parent's request (written by an older runbookctl)",
        )
    if new_input is None:
        parent_input = asked.get("input") or {}
        if canonical_sha256(parent_input) != started.get("inputHash"):
            raise _refused(
                "InputChanged",
                "result.request.input",
                "the parent's input in the result file does not hash to the inputHash its "
                "ledger recorded",
            )
    fields = {
        k: v
        for k, v in asked.items()
        if k not in {"rerunOf", "from", "only", "latest", "paused", "cancel", "input"}
    }
    fields.update(overrides or {})
    try:
        request = ExecutionRequest.model_validate(
            {
                **fields,
                "input": (asked.get("input") or {}) if new_input is None else new_input,
                "rerunOf": RerunOf(name=parent.execution_id).wire(),
                "from": list(rerun_from),
                "only": list(only),
                "latest": latest,
            }
        )
    except ValidationError as exc:
        problems = problems_from_pydantic(exc, "request")
        raise RerunRefused("InvalidRequest", problems) from None
    record = ParentRecord.of(parent)
    selection = select(plan, record.statuses, rerun_from=rerun_from, only=only)
    problems = output_problems(selection.reused, record.outputs, recorded_output_hashes(chain))
    if problems:
        raise RerunRefused("OutputTampered", problems)
    link = RerunLink(
        parent_execution_id=parent.execution_id,
        parent_head=str(chain[-1]["hash"]),
        parent_count=len(chain),
        parent_checkpoint=None,
        input_source="parent" if new_input is None else "given",
        definition="latest" if latest else "pinned",
        selection=selection,
        rerun_from=tuple(rerun_from),
        only=tuple(only),
        parent_name=parent.execution_id,
    )
    state = rerun_execution(plan, execution_id, now, record, link)
    return Prepared(request, state, link)
