"""What the cluster commands print (pure): rows and tables from RunbookExecution objects and
ledger entries. `runbookctl.cluster` fetches; this module only shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.table import Table

from runbook_engine.timeutil import parse_time
from runbookctl.render import STATUS_STYLE, event_line


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def age(created: Any, now: datetime) -> str:
    """kubectl's short age: `45s`, `12m`, `5h`, `3d` (`-` when unknown)."""
    start = _time(created)
    if start is None:
        return "-"
    seconds = max(0, int((now - start).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(start: Any, end: Any, now: datetime) -> str:
    """`1.5s`, `4m05s`, `2h03m`; a step still running counts up to now."""
    begin = _time(start)
    if begin is None:
        return "-"
    seconds = ((_time(end) or now) - begin).total_seconds()
    if seconds < 60:
        return f"{max(seconds, 0):.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _styled(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def execution_row(obj: Mapping[str, Any], now: datetime) -> dict[str, str]:
    """name, runbook, phase, progress, paused, age: the columns of `runbookctl get`."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    return {
        "name": str(meta.get("name", "")),
        "runbook": str((spec.get("runbookRef") or {}).get("name", "")),
        "phase": str(status.get("phase") or "PENDING"),
        "progress": str(status.get("progress") or "-"),
        "paused": "yes" if spec.get("paused") else "",
        "age": age(meta.get("creationTimestamp"), now),
    }


def executions_table(objs: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "RUNBOOK", "PHASE", "PROGRESS", "PAUSED", "AGE"):
        table.add_column(column)
    for obj in objs:
        row = execution_row(obj, now)
        table.add_row(
            row["name"],
            row["runbook"],
            _styled(row["phase"]),
            row["progress"],
            row["paused"],
            row["age"],
        )
    return table


def step_row(step: Mapping[str, Any], now: datetime) -> dict[str, str]:
    """step, status, attempt, duration, job, message: the columns of `runbookctl status`."""
    return {
        "step": str(step.get("stepId", "")),
        "status": str(step.get("status", "PENDING")),
        "attempt": str(step.get("attempt", 0)),
        "duration": duration(step.get("startedAt"), step.get("finishedAt"), now),
        "job": str(step.get("jobName") or "-"),
        "message": str(step.get("message") or "")[:100],
    }


def status_title(obj: Mapping[str, Any]) -> str:
    row = execution_row(obj, datetime.now().astimezone())
    status = obj.get("status") or {}
    title = f"{row['name']} · {row['runbook']} · {row['phase']} · {row['progress']}"
    return title + (f" · {status['message']}" if status.get("message") else "")


def steps_table(obj: Mapping[str, Any], now: datetime) -> Table:
    table = Table(title=status_title(obj), expand=False)
    for column in ("step", "status", "attempt", "duration", "job", "message"):
        table.add_column(column)
    for step in (obj.get("status") or {}).get("steps") or ():
        row = step_row(step, now)
        table.add_row(
            row["step"],
            _styled(row["status"]),
            row["attempt"],
            row["duration"],
            row["job"],
            row["message"],
        )
    return table


def entries_table(entries: Sequence[Any], title: str) -> Table:
    """The ledger as `runbookctl logs` prints it: seq, time, actor, event line."""
    table = Table(title=title, box=None, pad_edge=False)
    for column in ("SEQ", "TIME", "ACTOR", "EVENT"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        if not isinstance(entry, Mapping):
            table.add_row("?", "", "", f"(damaged line: {str(entry)[:60]})")
            continue
        line = event_line(dict(entry))
        table.add_row(
            str(entry.get("seq")),
            str(entry.get("timestamp", "")),
            str(entry.get("actorId", "")),
            line.split(" ", 1)[1] if " " in line else line,
        )
    return table


def result_source(obj: Mapping[str, Any], step_id: str) -> tuple[str, str | None]:
    """The Job whose result holds `step_id`'s output, and the output's hash in the status.

    Raises LookupError saying why there is no output (unknown step, not succeeded)."""
    steps = (obj.get("status") or {}).get("steps") or []
    step = next((s for s in steps if s.get("stepId") == step_id), None)
    if step is None:
        known = ", ".join(str(s.get("stepId")) for s in steps) or "none yet"
        raise LookupError(f"no step {step_id!r} in the status (steps: {known})")
    if step.get("status") != "SUCCEEDED" or not step.get("jobName"):
        raise LookupError(f"step {step_id!r} is {step.get('status', 'PENDING')}: it has no output")
    return str(step["jobName"]), step.get("outputHash")


NextFire = Any
"""`(schedule spec dict, now) -> datetime | None`, or None where schedules are not known."""


def trigger_row(
    obj: Mapping[str, Any], now: datetime, next_fire: NextFire = None
) -> dict[str, str]:
    """name, runbook, source, ready, active, last, next, age: the columns of `runbookctl triggers`.
    `last`/`next` are ages and countdowns (`3m ago`, `in 2h`); `-` when none."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    schedule = spec.get("schedule")
    if schedule:
        source = f"cron {schedule.get('cron', '')}"
        if schedule.get("timezone"):
            source += f" ({schedule['timezone']})"
    elif spec.get("alertmanager") is not None:
        source = "alertmanager"
    else:
        source = "-"
    ready = next(
        (str(c.get("status")) for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        "-",
    )
    last = _time(status.get("lastTriggered"))
    upcoming = _time(status.get("nextFire"))
    if upcoming is None and schedule and next_fire is not None and not spec.get("suspend"):
        try:
            upcoming = next_fire(schedule, now)
        except (ValueError, TypeError, KeyError):
            upcoming = None
    return {
        "name": str(meta.get("name", "")),
        "runbook": str((spec.get("runbookRef") or {}).get("name", "")),
        "source": source,
        "ready": "suspended" if spec.get("suspend") else ready,
        "active": str(status.get("activeCount", 0)),
        "last": f"{age(status.get('lastTriggered'), now)} ago" if last else "-",
        "next": f"in {age(now.isoformat(), upcoming)}" if upcoming else "-",
        "age": age(meta.get("creationTimestamp"), now),
    }


def triggers_table(
    objs: Sequence[Mapping[str, Any]], now: datetime, next_fire: NextFire = None
) -> Table:
    table = Table(box=None, pad_edge=False)
    columns = ("NAME", "RUNBOOK", "SOURCE", "READY", "ACTIVE", "LAST", "NEXT", "AGE")
    for column in columns:
        table.add_column(column)
    for obj in objs:
        row = trigger_row(obj, now, next_fire)
        table.add_row(*(row[c.lower()] for c in columns))
    return table
