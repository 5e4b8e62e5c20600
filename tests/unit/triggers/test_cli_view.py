"""`runbookctl triggers` rows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from runbookctl.cluster_view import trigger_row, triggers_table

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def obj(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "t", "creationTimestamp": "2026-12-03T10:00:00Z"},
        "spec": {"runbookRef": {"name": "rb"}, **spec},
        "status": status or {},
    }


def test_an_alertmanager_trigger_shows_its_last_firing_and_no_next() -> None:
    row = trigger_row(
        obj(
            {"alertmanager": {"tokenSecretRef": {"name": "x"}}},
            {
                "lastTriggered": "2026-12-03T11:55:00Z",
                "activeCount": 2,
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        ),
        NOW,
    )
    assert row == {
        "name": "t",
        "runbook": "rb",
        "source": "alertmanager",
        "ready": "True",
        "active": "2",
        "last": "5m ago",
        "next": "-",
        "age": "2h",
    }


def test_a_schedule_shows_next_from_the_schedule_module_or_a_dash() -> None:
    spec = {"schedule": {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}}
    seen: list[Any] = []

    def next_fire(schedule: dict[str, Any], now: datetime) -> datetime:
        seen.append((schedule, now))
        return now + timedelta(hours=3)

    row = trigger_row(obj(spec), NOW, next_fire)
    assert row["source"] == "cron 0 6 * * 1-5 (Europe/Berlin)"
    assert row["next"] == "in 3h" and row["last"] == "-"
    assert seen == [(spec["schedule"], NOW)]
    assert trigger_row(obj(spec), NOW)["next"] == "-"
    assert trigger_row(obj({**spec, "suspend": True}), NOW, next_fire)["ready"] == "suspended"
    written = obj(spec, {"nextFire": "2026-12-03T12:10:00Z"})
    assert trigger_row(written, NOW)["next"] == "in 10m"


def test_the_table_has_every_column() -> None:
    table = triggers_table([obj({"alertmanager": {}})], NOW)
    assert [c.header for c in table.columns] == [
        "NAME",
        "RUNBOOK",
        "SOURCE",
        "READY",
        "ACTIVE",
        "LAST",
        "NEXT",
        "AGE",
    ]
