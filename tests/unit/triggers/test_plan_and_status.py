"""Limits, the execution manifest and the trigger's status (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook_engine.model import ExecutionRequest
from runbook_operator.execution.stamps import (
    TRIGGER_CREATED_BY,
    TRIGGER_EVENT,
    TRIGGER_LABEL,
    TRIGGERED_BY,
    Stamps,
)
from runbook_operator.triggers import plan
from runbook_operator.triggers.model import parse_spec
from runbook_operator.triggers.status import (
    CountsDelta,
    history_to_delete,
    trigger_status,
    with_counts,
)

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
AM = {"tokenSecretRef": {"name": "t"}}


def started(name: str, ago: float, phase: str | None = None) -> plan.Started:
    return plan.Started(name, NOW - timedelta(seconds=ago), phase)


def test_max_concurrent_counts_only_running_executions() -> None:
    spec = parse_spec({"runbookRef": {"name": "rb"}, "alertmanager": AM, "maxConcurrent": 2})
    assert plan.skip_reason(spec, [started("a", 5), started("b", 5, "COMPLETED")], NOW) is None
    assert (
        plan.skip_reason(spec, [started("a", 5), started("b", 5, "RUNNING")], NOW)
        == "maxConcurrent"
    )


def test_rate_limit_counts_the_last_minute_only() -> None:
    spec = parse_spec(
        {"runbookRef": {"name": "rb"}, "alertmanager": AM, "rateLimit": {"perMinute": 2}}
    )
    old = [started("a", 61, "COMPLETED"), started("b", 120, "COMPLETED")]
    assert plan.skip_reason(spec, old, NOW) is None
    recent = [started("a", 59, "COMPLETED"), started("b", 1, "COMPLETED")]
    assert plan.skip_reason(spec, recent, NOW) == "rateLimit"
    assert plan.skip_reason(spec, recent[:1], NOW) is None


def test_suspend_skips_everything() -> None:
    spec = parse_spec({"runbookRef": {"name": "rb"}, "alertmanager": AM, "suspend": True})
    assert plan.skip_reason(spec, [], NOW) == "suspended"


def test_manifest_records_trigger_creator_and_event_and_is_a_valid_request() -> None:
    spec = parse_spec(
        {
            "runbookRef": {"name": "rb"},
            "alertmanager": AM,
            "legalBasis": "legitimate_interests",
            "dataLicenses": ["internal_use_only"],
        }
    )
    trigger = {
        "metadata": {
            "name": "high-error-rate",
            "namespace": "team-a",
            "annotations": {"runbook-operator.dev/created-by": "alice"},
        }
    }
    event = {"fingerprint": "f1", "startsAt": "s", "labels": {"a": "b"}, "generatorURL": "u"}
    me = {"username": "system:serviceaccount:rs:recv", "uid": "u1", "groups": ["g1", "g2"]}
    body = plan.execution_manifest(trigger, spec, "high-error-rate-x", {"k": 1}, event, me)
    ann = body["metadata"]["annotations"]
    assert ann[TRIGGERED_BY] == "high-error-rate"
    assert ann[TRIGGER_CREATED_BY] == "alice"
    assert json.loads(ann[TRIGGER_EVENT]) == event
    assert ann["runbook-operator.dev/created-by"] == me["username"]
    assert ann["runbook-operator.dev/created-by-groups"] == "g1,g2"
    assert body["metadata"]["labels"] == {TRIGGER_LABEL: "high-error-rate"}
    request = ExecutionRequest.model_validate(body["spec"])
    assert request.legal_basis == "legitimate_interests" and request.input == {"k": 1}
    stamps = Stamps.of(ann, paused=False, cancel=False)
    assert stamps.trigger == {"name": "high-error-rate", "createdBy": "alice", "event": event}
    assert stamps.creator is not None and stamps.creator.username == me["username"]
    assert plan.started_by(body, "high-error-rate") and not plan.started_by(body, "other")


def test_stamps_without_a_trigger_have_none() -> None:
    assert Stamps.of({}, paused=False, cancel=False).trigger is None


def test_counts_add_up_and_leave_other_fields() -> None:
    status: dict[str, Any] = {"counts": {"received": 2, "started": 1}, "skipped": {"rateLimit": 1}}
    delta = CountsDelta(
        received=3,
        started=1,
        duplicates=1,
        skipped={"rateLimit": 1, "maxConcurrent": 1},
        last_execution="x",
        last_triggered="t",
    )
    out = with_counts(status, delta)
    assert out["counts"] == {
        "received": 5,
        "started": 2,
        "duplicates": 1,
        "cancelled": 0,
        "skipped": 2,
    }
    assert out["skipped"] == {"rateLimit": 2, "maxConcurrent": 1}
    assert out["lastExecution"] == "x" and out["lastTriggered"] == "t"
    assert CountsDelta().empty and not delta.empty


def _true(status: dict[str, Any]) -> list[str]:
    return [c["type"] for c in status["conditions"] if c["status"] == "True"]


def test_conditions_follow_kstatus() -> None:
    common: dict[str, Any] = {"started": [], "generation": 3, "now": NOW, "suspended": False}
    assert _true(trigger_status({}, problem=None, runbook_found=True, **common)) == ["Ready"]
    assert _true(trigger_status({}, problem="bad", runbook_found=True, **common)) == ["Stalled"]
    assert _true(trigger_status({}, problem=None, runbook_found=False, **common)) == ["Reconciling"]
    running = [started("a", 5), started("b", 5, "COMPLETED")]
    out = trigger_status({}, problem=None, runbook_found=True, **{**common, "started": running})
    assert out["activeCount"] == 1 and out["active"][0]["name"] == "a"
    assert all(c["observedGeneration"] == 3 for c in out["conditions"])


def test_history_keeps_the_newest_and_the_rate_window() -> None:
    runs = [
        started("ok-old", 600, "COMPLETED"),
        started("ok-mid", 300, "COMPLETED"),
        started("ok-new", 30, "COMPLETED"),
        started("bad-old", 500, "FAILED"),
        started("bad-new", 400, "CANCELLED"),
        started("running", 700),
    ]
    assert history_to_delete(runs, 1, 1, NOW, timedelta(minutes=1)) == [
        "ok-old",
        "ok-mid",
        "bad-old",
    ]
    assert history_to_delete(runs, 0, 5, NOW, timedelta(minutes=1)) == ["ok-old", "ok-mid"]


def test_the_first_ledger_entry_records_the_trigger_and_no_other_does() -> None:
    from runbook_engine.audit import AuditEvent
    from runbook_engine.driver import Actors, with_identity
    from runbook_engine.enums import LogEventType
    from runbook_engine.identity import Identity

    trigger = {"name": "t", "createdBy": "alice", "event": {"fingerprint": "f"}}
    actors = Actors("operator", requester=Identity.from_wire({"username": "sa"}), trigger=trigger)
    started = with_identity(AuditEvent("k", LogEventType.EXECUTION_STARTED), actors)
    assert started.details["trigger"] == trigger
    assert started.details["authenticatedUser"]["username"] == "sa"
    step = with_identity(AuditEvent("s", LogEventType.STEP_STARTED, "a"), actors)
    assert "trigger" not in step.details
    plain = with_identity(AuditEvent("k", LogEventType.EXECUTION_STARTED), Actors("operator"))
    assert "trigger" not in plain.details
