"""One RunbookExecution as the operator reads it: a typed view, built once from the API object.

Handlers, the controller and the reconcile all read the execution through this view instead of
digging into raw dicts, so a field the operator relies on has one spelling and one default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runbook_engine.enums import ExecutionStatus
from runbook_operator.execution.stamps import Stamps
from runbook_operator.names import ExecutionRef

TERMINAL_PHASES = frozenset(str(s) for s in ExecutionStatus if s.terminal)
"""Phases after which nothing runs any more (the engine's own rule, as the status spells it)."""


@dataclass(frozen=True, slots=True)
class ExecutionView:
    """What the operator uses of one RunbookExecution object."""

    ref: ExecutionRef
    body: Mapping[str, Any]
    """The object as read (for what is passed on unchanged: apiVersion, managedFields)."""
    generation: int | None
    resource_version: str
    deleting: bool
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    stamps: Stamps
    """Who created it and who set its controls, as admission authenticated them."""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ExecutionView:
        meta = body.get("metadata") or {}
        ref = ExecutionRef(str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))
        generation = meta.get("generation")
        spec = body.get("spec") or {}
        annotations = meta.get("annotations") or {}
        stamps = Stamps.of(annotations, bool(spec.get("paused")), bool(spec.get("cancel")))
        return cls(
            ref=ref,
            body=body,
            generation=int(generation) if generation is not None else None,
            resource_version=str(meta.get("resourceVersion") or ""),
            deleting=bool(meta.get("deletionTimestamp")),
            spec=spec,
            status=body.get("status") or {},
            stamps=stamps,
        )

    @property
    def paused(self) -> bool:
        return bool(self.spec.get("paused", False))

    @property
    def cancel(self) -> bool:
        return bool(self.spec.get("cancel", False))

    @property
    def phase(self) -> str | None:
        phase = self.status.get("phase")
        return str(phase) if phase else None

    @property
    def finished(self) -> bool:
        """A terminal phase in the status: written last, so all else was done."""
        return self.phase in TERMINAL_PHASES

    @property
    def control_requested(self) -> bool:
        return self.paused or self.cancel

    @property
    def spec_unobserved(self) -> bool:
        """A spec the status has not caught up with (pause, cancel, a new execution), or a
        deletion. The operator's own status writes do not count."""
        return self.status.get("observedGeneration") != self.generation or self.deleting

    @property
    def runbook_name(self) -> str:
        ref = self.spec.get("runbookRef")
        return str(ref.get("name", "")) if isinstance(ref, Mapping) else ""

    @property
    def pinned_before(self) -> bool:
        """The status records a pinned definition (so a missing one was lost, not never made)."""
        return bool(self.status.get("definitionRef"))
