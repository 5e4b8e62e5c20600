"""When a scheduled RunbookTrigger fires: a pure planner (no clock, no API).

Given the cron expression, its IANA zone, the last scheduled time already handled, `now`, the
catch-up bounds and the executions still active, `plan` says which scheduled times to start now,
which active executions to cancel first, what was skipped (by reason) and when to look again.
The controller feeds it the trigger's status and a clock; tests feed it a fake one.

Cron expressions are evaluated by `cronsim` (docs/triggers.md, "Schedules", says why), which
follows Debian cron across daylight-saving changes: a wall-clock time that does not exist (the
spring-forward gap) fires once, right after the gap; a time that exists twice (fall back) fires
once, at its first occurrence. Expressions whose minute or hour field starts with `*` run on
elapsed time instead (an hourly job fires every real hour: 23, 24 or 25 times that day).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from runbook_engine.timeutil import format_time
from runbook_operator.names import dns_part, short_hash

ALLOW = "Allow"
FORBID = "Forbid"
REPLACE = "Replace"
POLICIES = (ALLOW, FORBID, REPLACE)

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The usual shorthands (robfig/cron's, which Argo and CronJob accept); cronsim has none."""

MAX_SCAN = 2000
"""Fire times one pass walks forward at most. A long outage of a frequent schedule has more
missed times than that; the pass then jumps close to `now` (see `_due_times`), so its cost is
bounded whatever the gap, and the skipped count it reports is a lower bound."""
NO_FIRE_YEARS = 50
"""cronsim gives up after 50 years without a match (e.g. `0 0 31 2 *` is refused up front)."""

# Skip reasons, as counted in status.skipped (camelCase like the rest of the status)
SKIP_DEADLINE = "startingDeadline"
SKIP_CATCH_UP = "catchUpLimit"
SKIP_FORBID = "concurrencyPolicy"
SKIP_REPLACED = "replaced"
SKIP_MAX_CONCURRENT = "maxConcurrent"
SKIP_SUSPENDED = "suspended"

NAME_PREFIX_MAX = 40
"""Execution names stay ≤ 63 characters, so their label value is the name itself (names.py)."""


class ScheduleError(ValueError):
    """A schedule that cannot be evaluated; the message names the field and the reason."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated cron expression in a zone."""

    cron: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, cron: str, timezone: str = "UTC") -> Schedule:
        expression = MACROS.get(cron.strip().lower(), cron.strip())
        if len(expression.split()) != 5:
            raise ScheduleError(
                f"spec.schedule.cron: {cron!r} is not a five-field cron expression "
                "(minute hour day-of-month month day-of-week, or @hourly/@daily/...)"
            )
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"spec.schedule.timezone: {timezone!r} is not an IANA time zone "
                "(e.g. Europe/Berlin, UTC)"
            ) from None
        try:
            CronSim(expression, datetime(2000, 1, 1, tzinfo=zone))
        except CronSimError as exc:
            raise ScheduleError(f"spec.schedule.cron: {cron!r}: {exc}") from None
        return cls(expression, zone)

    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after `after`, in UTC, strictly increasing.

        cronsim walks local wall-clock time for fixed-time jobs, so after a fall-back change it
        can answer a time earlier (in real time) than `after` (the first occurrence of a repeated
        hour when `after` lies in the second): such answers are dropped here.
        """
        start = _aware(after)
        previous = start
        try:
            for local in CronSim(self.cron, start.astimezone(self.zone)):
                instant = local.astimezone(UTC)
                if instant > previous:
                    previous = instant
                    yield instant
        except (StopIteration, CronSimError):
            return

    def fire_times_before(self, until: datetime, count: int) -> list[datetime]:
        """About the `count` latest fire times at or before `until`, oldest first (cronsim's
        reverse walk: used only to find where to start a forward walk, see `_due_times`)."""
        found: list[datetime] = []
        try:
            walk = CronSim(self.cron, _aware(until).astimezone(self.zone), reverse=True)
            for local in itertools.islice(walk, count):
                found.append(local.astimezone(UTC))
        except (StopIteration, CronSimError):
            pass
        return sorted(set(found))


def next_fire(cron: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (UTC), or None if it never fires again: for
    the controller's wake-up timer and for `runbookctl triggers`."""
    return next(Schedule.parse(cron, timezone).fire_times(after), None)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Due:
    """The fire times in (since, now] that a pass considers, and how many it saw in all."""

    latest: tuple[datetime, ...]
    """The newest of them (at most `keep`), oldest first."""
    total: int
    """All of them, a lower bound when the walk was cut short (MAX_SCAN)."""
    newest: datetime | None


def _due_times(schedule: Schedule, since: datetime, now: datetime, keep: int) -> Due:
    """Fire times in (since, now], keeping only the newest `keep` (bounded work, see MAX_SCAN)."""
    kept: deque[datetime] = deque(maxlen=max(keep, 1))
    total = 0
    for instant in schedule.fire_times(since):
        if instant > now:
            break
        total += 1
        kept.append(instant)
        if total >= MAX_SCAN:
            # Too many to walk: restart from just before the newest few fire times near now
            # (cronsim's reverse walk), then walk forward again from there.
            anchors = schedule.fire_times_before(now, keep + 1)
            if anchors and anchors[0] - timedelta(seconds=1) > instant:
                walk = schedule.fire_times(anchors[0] - timedelta(seconds=1))
                tail = list(
                    itertools.islice(itertools.takewhile(lambda t: t <= now, walk), MAX_SCAN)
                )
                total += len(tail)
                kept.extend(tail)
            break
    latest = tuple(kept) if keep > 0 else ()
    return Due(latest=latest, total=total, newest=kept[-1] if kept else None)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one pass of a scheduled trigger does."""

    start: tuple[datetime, ...] = ()
    """Scheduled times to start now, oldest first."""
    cancel: tuple[str, ...] = ()
    """Active executions to cancel before starting (Replace)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Due times not started in this pass, by reason (added to status.skipped)."""
    last_scheduled: datetime | None = None
    """The newest due time this pass handled (started or skipped): the next pass starts after it."""
    next_fire: datetime | None = None
    """The first fire time after `now`: when to look again."""


def plan(
    schedule: Schedule,
    *,
    since: datetime,
    now: datetime,
    starting_deadline_seconds: int | None = None,
    max_runs: int = 1,
    policy: str = ALLOW,
    active: Sequence[str] = (),
    max_concurrent: int | None = None,
    suspended: bool = False,
) -> Plan:
    """Decide which due times start now.

    `since` is the last scheduled time already handled (or the trigger's creation): only fire
    times after it and at or before `now` are due. Of those, none older than
    `starting_deadline_seconds` start, and of the rest only the newest `max_runs` (CronJob and
    Argo start only the latest missed run: `max_runs` 1). Then the concurrency policy: Allow
    starts them all; Forbid starts nothing while `active` is non-empty, else only the newest;
    Replace cancels every active execution and starts only the newest. `max_concurrent` caps
    what runs at once. Every due time is handled once: started, or counted in `skipped`.
    """
    if policy not in POLICIES:
        raise ScheduleError(f"spec.schedule.concurrencyPolicy: {policy!r} is not one of {POLICIES}")
    since, now = _aware(since).astimezone(UTC), _aware(now).astimezone(UTC)
    upcoming = next(schedule.fire_times(max(now, since)), None)
    horizon = since
    too_old = 0
    if starting_deadline_seconds is not None:
        oldest_allowed = now - timedelta(seconds=starting_deadline_seconds)
        if oldest_allowed - timedelta(microseconds=1) > since:
            # Count (boundedly) what the deadline drops, then walk only the allowed window.
            horizon = oldest_allowed - timedelta(microseconds=1)
            too_old = _due_times(schedule, since, horizon, 0).total
    due = _due_times(schedule, horizon, now, max_runs)
    skipped: dict[str, int] = {}

    def skip(reason: str, count: int) -> None:
        if count > 0:
            skipped[reason] = skipped.get(reason, 0) + count

    skip(SKIP_DEADLINE, too_old)
    newest = due.newest
    if newest is None:
        # Nothing due; if the deadline dropped some, everything up to its horizon is handled.
        last = horizon if too_old else None
        return Plan(skipped=skipped, last_scheduled=last, next_fire=upcoming)
    if suspended:
        skip(SKIP_SUSPENDED, due.total)
        return Plan(skipped=skipped, last_scheduled=newest, next_fire=upcoming)
    chosen = list(due.latest)
    skip(SKIP_CATCH_UP, due.total - len(chosen))
    cancel: tuple[str, ...] = ()
    running = len(active)
    if chosen and policy == FORBID:
        if active:
            skip(SKIP_FORBID, len(chosen))
            chosen = []
        else:
            skip(SKIP_FORBID, len(chosen) - 1)
            chosen = chosen[-1:]
    elif chosen and policy == REPLACE:
        skip(SKIP_REPLACED, len(chosen) - 1)
        chosen = chosen[-1:]
        cancel = tuple(active)
        running = 0
    if max_concurrent is not None:
        room = max(0, max_concurrent - running)
        skip(SKIP_MAX_CONCURRENT, max(0, len(chosen) - room))
        chosen = chosen[max(0, len(chosen) - room) :] if room else []
        if not chosen:
            cancel = ()
    return Plan(
        start=tuple(chosen),
        cancel=cancel,
        skipped=skipped,
        last_scheduled=newest,
        next_fire=upcoming,
    )


def execution_name(trigger: str, trigger_uid: str, scheduled: datetime) -> str:
    """The one name of the execution a trigger starts for a scheduled time.

    Deterministic in (trigger, scheduled time): a restarted operator, or a second one, creating
    it again gets AlreadyExists, which means "already started". The trigger's uid is hashed in,
    so a trigger deleted and re-created under the same name never adopts the old one's runs.
    """
    at = _aware(scheduled).astimezone(UTC)
    stamp = at.strftime("%Y%m%d%H%M")
    if at.second or at.microsecond:
        stamp += at.strftime("%S")
    digest = short_hash(trigger_uid, at.isoformat(), length=6)
    return f"{dns_part(trigger, NAME_PREFIX_MAX)}-{stamp}-{digest}"


def schedule_event(
    trigger: str, namespace: str, schedule: Schedule, cron: str, scheduled: datetime
) -> dict[str, Any]:
    """What a scheduled run is about: the document `spec.input`'s JMESPath expressions read,
    and (in the execution's trigger-event annotation) what its ledger records.

    `scheduledTime` is the time the schedule named (UTC, RFC 3339), not when the run started:
    a caught-up run knows which slot it stands for. `scheduledTimeLocal` is the same instant in
    the schedule's zone, with its offset.
    """
    at = _aware(scheduled).astimezone(UTC)
    return {
        "kind": "schedule",
        "scheduledTime": format_time(at),
        "scheduledTimeLocal": at.astimezone(schedule.zone).isoformat(),
        "trigger": {
            "name": trigger,
            "namespace": namespace,
            "cron": cron,
            "timezone": schedule.zone.key,
        },
    }
