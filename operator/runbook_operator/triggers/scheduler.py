"""Scheduled RunbookTriggers, the shell: read the trigger and its executions, let the pure
planner (triggers/schedule.py) decide, then cancel, create, prune and record.

One `tick` per wake-up of the trigger's daemon (handlers.py). Every write is idempotent: the
execution of a scheduled time has one name, so a replayed tick, a restarted operator or a second
one meets AlreadyExists ("already started") instead of starting it twice; `lastScheduleTime` in
the status then moves on. All API calls go through kube.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from runbook_engine.identity import Identity
from runbook_engine.timeutil import format_time, parse_time, utcnow
from runbook_operator import kube as k
from runbook_operator.execution.stamps import (
    TRIGGER_EVENT,
    TRIGGER_EVENT_LIMIT,
    control_annotations,
)
from runbook_operator.triggers import plan as trigger_plan
from runbook_operator.triggers.alert import InputError, map_input
from runbook_operator.triggers.model import RunbookTriggerSpec, parse_spec
from runbook_operator.triggers.schedule import (
    Schedule,
    ScheduleError,
    execution_name,
    plan,
    schedule_event,
)
from runbook_operator.triggers.status import CountsDelta, with_counts

log = logging.getLogger("runbook_operator.triggers")

STATUS_RETRIES = 8
SKIP_NAME_TAKEN = "nameTaken"
"""An execution of that name exists but another trigger (or a person) made it."""


@dataclass
class Outcome:
    """What one tick did (counted into the trigger's status)."""

    started: list[str] = field(default_factory=list)
    duplicates: int = 0
    cancelled: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


def handled_until(trigger: Mapping[str, Any], mine: Sequence[Mapping[str, Any]]) -> datetime:
    """The newest scheduled time already handled: status.lastScheduleTime, or the newest
    scheduled time an execution of this trigger records (a status lost to a restore, or pruned
    by an older CRD, must not start old times again), or the trigger's creation."""
    meta = trigger.get("metadata") or {}
    candidates = [parse_time(str(meta["creationTimestamp"]))]
    recorded = (trigger.get("status") or {}).get("lastScheduleTime")
    if recorded:
        candidates.append(parse_time(str(recorded)))
    for body in mine:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        raw = str(annotations.get(TRIGGER_EVENT) or "")[:TRIGGER_EVENT_LIMIT]
        try:
            event = json.loads(raw) if raw else {}
            if isinstance(event, dict) and event.get("kind") == "schedule":
                candidates.append(parse_time(str(event["scheduledTime"])))
        except (ValueError, KeyError):
            continue
    return max(candidates)


class Scheduler:
    """Fires scheduled triggers; `tick` returns when to look again (None: not a schedule)."""

    def __init__(self, kube: k.Kube, clock: Callable[[], datetime] = utcnow) -> None:
        self.kube = kube
        self.clock = clock
        self._me: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """The operator's own userInfo: stamped as the creator of what it starts (admission
        checks the stamp names the caller), and as who cancels on Replace."""
        if self._me is None:
            self._me = self.kube.whoami()
        return self._me

    def tick(self, namespace: str, name: str) -> datetime | None:
        try:
            trigger = self.kube.get(k.TRIGGERS, namespace, name)
        except k.NotFound:
            return None
        meta = trigger.get("metadata") or {}
        if meta.get("deletionTimestamp") or not (trigger.get("spec") or {}).get("schedule"):
            return None
        now = self.clock()
        try:
            spec = parse_spec(trigger.get("spec") or {})
            assert spec.schedule is not None
            schedule = Schedule.parse(spec.schedule.cron, spec.schedule.timezone)
        except (ValidationError, ScheduleError) as exc:
            # The trigger's conditions say Stalled (its controller); nothing is scheduled.
            log.warning("trigger %s/%s: not scheduled: %s", namespace, name, exc)
            self._record(namespace, name, Outcome(), {"nextFire": None})
            return None
        mine = [
            body
            for body in self.kube.list(k.EXECUTIONS, namespace, trigger_plan.trigger_selector(name))
            if trigger_plan.started_by(body, name)
        ]
        started = [trigger_plan.Started.of(body) for body in mine]
        since = handled_until(trigger, mine)
        decision = plan(
            schedule,
            since=since,
            now=now,
            starting_deadline_seconds=spec.schedule.starting_deadline_seconds,
            max_runs=spec.schedule.catch_up.max_runs,
            policy=str(spec.schedule.concurrency_policy),
            active=[s.name for s in started if s.active],
            max_concurrent=spec.max_concurrent,
            suspended=spec.suspend,
        )
        outcome = Outcome(skipped=dict(decision.skipped))
        for execution in decision.cancel:
            self._cancel(namespace, execution, outcome)
        for at in decision.start:
            self._start(trigger, spec, schedule, at, outcome)
        fields: dict[str, Any] = {
            "nextFire": format_time(decision.next_fire) if decision.next_fire else None
        }
        if decision.last_scheduled is not None:
            fields["lastScheduleTime"] = format_time(decision.last_scheduled)
        self._record(namespace, name, outcome, fields, now)
        return decision.next_fire

    def _start(
        self,
        trigger: Mapping[str, Any],
        spec: RunbookTriggerSpec,
        schedule: Schedule,
        at: datetime,
        outcome: Outcome,
    ) -> None:
        meta = trigger["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        assert spec.schedule is not None
        event = schedule_event(name, namespace, schedule, spec.schedule.cron, at)
        try:
            execution_input = map_input(spec.input, event)
        except InputError as exc:
            log.warning("trigger %s/%s: %s", namespace, name, exc)
            outcome.skip(trigger_plan.SKIP_INVALID_INPUT)
            return
        execution = execution_name(name, str(meta["uid"]), at)
        recorded = {key: event[key] for key in ("kind", "scheduledTime", "scheduledTimeLocal")}
        recorded.update(cron=spec.schedule.cron, timezone=schedule.zone.key)
        manifest = trigger_plan.execution_manifest(
            trigger, spec, execution, execution_input, recorded, creator=self.identity()
        )
        body, created = self.kube.create_or_get(k.EXECUTIONS, namespace, manifest)
        if created:
            outcome.started.append(execution)
            log.info(
                "trigger %s/%s: started %s for %s",
                namespace,
                name,
                execution,
                event["scheduledTime"],
            )
        elif trigger_plan.started_by(body, name):
            outcome.duplicates += 1  # a replayed tick or another operator started it already
        else:
            outcome.skip(SKIP_NAME_TAKEN)

    def _cancel(self, namespace: str, execution: str, outcome: Outcome) -> None:
        """Replace: cancel an active execution (as the receiver's onResolved does)."""
        try:
            body = self.kube.get(k.EXECUTIONS, namespace, execution)
        except k.NotFound:
            return
        spec = body.get("spec") or {}
        if spec.get("cancel"):
            return
        me = self.identity()
        who = Identity.from_wire(
            {
                "username": me.get("username") or "",
                "uid": me.get("uid"),
                "groups": list(me.get("groups") or []),
            }
        )
        patch = {
            "metadata": {"annotations": control_annotations(who, bool(spec.get("paused")), True)},
            "spec": {"cancel": True},
        }
        try:
            self.kube.patch(k.EXECUTIONS, namespace, execution, patch)
        except k.NotFound:
            return  # deleted meanwhile: nothing left to replace
        outcome.cancelled.append(execution)

    def _record(
        self,
        namespace: str,
        name: str,
        outcome: Outcome,
        fields: Mapping[str, Any],
        now: datetime | None = None,
    ) -> None:
        """Counts and schedule fields on the trigger's status, guarded by resourceVersion (the
        receiver and the trigger's controller write the same status); unchanged: no write."""
        delta = CountsDelta(
            received=len(outcome.started) + outcome.duplicates + sum(outcome.skipped.values()),
            started=len(outcome.started),
            duplicates=outcome.duplicates,
            cancelled=len(outcome.cancelled),
            skipped=outcome.skipped,
            last_execution=outcome.started[-1] if outcome.started else None,
            last_triggered=format_time(now) if outcome.started and now else None,
        )
        for _ in range(STATUS_RETRIES):
            try:
                body = self.kube.get(k.TRIGGERS, namespace, name)
            except k.NotFound:
                return
            before = body.get("status") or {}
            status = {**before, **with_counts(before, delta), **fields}
            if delta.empty:
                status["counts"] = before.get("counts", status["counts"])
                status["skipped"] = before.get("skipped", status["skipped"])
            if status == before:
                return
            patch = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": status,
            }
            try:
                self.kube.patch(k.TRIGGERS, namespace, name, patch, subresource="status")
                return
            except k.Conflict:
                continue
        raise k.Conflict(409, "Conflict", f"status of trigger {namespace}/{name} kept changing")
