"""Chains and a minimal in-memory ConfigMap store for the pure ledger tests.

`Store` applies the planner's writes the way the apiserver does for what the planner relies on:
create fails on an existing name, replace needs the current resourceVersion and is refused on
an immutable ConfigMap, data over 1 MiB is refused. It lets property tests drive `plan_append`
to the end without a cluster; tests/e2e/test_ledger.py runs the same against the real one.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook_engine.audit import AuditChain, AuditEvent
from runbook_engine.enums import LogEventType
from runbook_operator.ledger.segments import (
    Segment,
    Write,
    data_size,
    ordered,
    plan_append,
    plan_checkpoint,
)
from runbook_operator.names import ExecutionRef

LID = ExecutionRef("ns", "demo", "0123456789abcdef-uid")
T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
APISERVER_LIMIT = 1024 * 1024


def chain_of(
    n: int, pad: int = 0, lid: ExecutionRef = LID, actor: str = "system:test"
) -> AuditChain:
    """`n` entries; entry i carries `pad * (i % 3)` bytes of detail to vary the sizes."""
    chain = AuditChain(lid.execution_id)
    for i in range(n):
        event = AuditEvent(
            key=f"step/s{i}/1/started",
            event_type=LogEventType.STEP_STARTED,
            step_id=f"s{i}",
            details={"attempt": 1, "note": "x" * (pad * (i % 3)), "ü": "Rapport 𝔸"},
        )
        chain.append(event, actor_id=actor, timestamp=T0 + timedelta(seconds=i))
    return chain


class Refused(Exception):
    """What the apiserver would answer with 409 or 422."""


class Store:
    """ConfigMaps by name, with uid, resourceVersion and `immutable` honoured."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self._rv = itertools.count(1)

    def apply(self, write: Write) -> dict[str, Any]:
        body = copy.deepcopy(write.body)
        name = body["metadata"]["name"]
        if data_size(body.get("data", {})) > APISERVER_LIMIT:
            raise Refused("data over 1 MiB")
        if write.replace:
            current = self.objects.get(name)
            if current is None:
                raise Refused(f"{name}: not found")
            # The apiserver compares resourceVersions before it validates the update.
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise Refused(f"{name}: resourceVersion conflict")
            if current.get("immutable"):
                raise Refused(f"{name}: immutable")
            body["metadata"]["uid"] = current["metadata"]["uid"]
            body["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"]
        else:
            if name in self.objects:
                raise Refused(f"{name}: already exists")
            body["metadata"]["uid"] = f"uid-{name}"
            body["metadata"]["creationTimestamp"] = "2026-01-15T10:00:00Z"
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[name] = body
        return copy.deepcopy(body)

    def segments(self) -> list[Segment]:
        return ordered(list(self.objects.values()))

    def configmaps(self) -> list[dict[str, Any]]:
        return copy.deepcopy(list(self.objects.values()))


def append_lines(store: Store, lines: list[str], max_bytes: int, lid: ExecutionRef = LID) -> int:
    """Run plan_append to completion; returns the number of writes."""
    writes = 0
    while lines:
        write = plan_append(lid, store.segments(), lines, max_bytes)
        assert write is not None
        store.apply(write)
        writes += 1
        lines = lines[write.stored :]
        assert write.final == (not lines)
    return writes


def store_checkpoint(
    store: Store, checkpoint: dict[str, Any], max_bytes: int, lid: ExecutionRef = LID
) -> None:
    while True:
        write = plan_checkpoint(lid, store.segments(), checkpoint, max_bytes)
        store.apply(write)
        if write.final:
            return
