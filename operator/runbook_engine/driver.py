"""One drive step, shared by every shell: schedule, then record the decision in the audit chain.

The local runner, the test simulator, the benchmark and the operator all call `drive`; they
differ only in how they observe attempts and carry out `StartAttempt`/`StopAttempt`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from runbook_engine.audit import AuditChain, AuditEvent
from runbook_engine.enums import LogEventType
from runbook_engine.identity import Identity
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan
from runbook_engine.scheduler import Decision, Observation, schedule
from runbook_engine.state import ExecutionState


@dataclass(frozen=True, slots=True)
class Actors:
    """Who may be recorded as an event's actor. `shell` is the default (the runner, the operator)."""

    shell: str
    started_by: str | None = None
    """Who asked for the execution (request.startedBy)."""
    control: str | None = None
    """Who made the latest pause/resume/cancel request, when the shell knows."""
    requester: Identity | None = None
    """The authenticated creator of the execution (`started_by` is only what it claimed)."""
    controller: Identity | None = None
    """The authenticated user behind the latest pause/resume/cancel."""
    trigger: Mapping[str, Any] | None = None
    """The trigger that started the execution (name, its creator, the event), when one did:
    recorded beside the requester so the ledger says why the service account started it."""


def _requester(actors: Actors) -> str | None:
    return actors.requester.username if actors.requester else actors.started_by


def _controller(actors: Actors) -> str | None:
    return actors.controller.username if actors.controller else actors.control


IDENTITY_RULES: Mapping[LogEventType, Callable[[Actors], Identity | None]] = MappingProxyType(
    {
        LogEventType.EXECUTION_STARTED: lambda a: a.requester,
        LogEventType.EXECUTION_REJECTED: lambda a: a.requester,
        LogEventType.EXECUTION_PAUSED: lambda a: a.controller,
        LogEventType.EXECUTION_RESUMED: lambda a: a.controller,
        LogEventType.EXECUTION_CANCELLED: lambda a: a.controller,
        LogEventType.CONTROL_REJECTED: lambda a: a.controller,
    }
)
"""Event type → the authenticated user it records in `details.authenticatedUser`."""


TRIGGER_EVENTS = frozenset({LogEventType.EXECUTION_STARTED, LogEventType.EXECUTION_REJECTED})
"""Events that record the trigger behind the execution (the first entry of its ledger)."""


ACTOR_RULES: Mapping[LogEventType, Callable[[Actors], str | None]] = MappingProxyType(
    {
        LogEventType.EXECUTION_STARTED: _requester,
        LogEventType.EXECUTION_REJECTED: _requester,
        LogEventType.EXECUTION_PAUSED: _controller,
        LogEventType.EXECUTION_RESUMED: _controller,
        LogEventType.EXECUTION_CANCELLED: _controller,
    }
)
"""Event type → who caused it; every other event (and an unknown person) is the shell's."""


def actor_for(event_type: LogEventType, actors: Actors) -> str:
    rule = ACTOR_RULES.get(event_type)
    return (rule(actors) if rule else None) or actors.shell


def with_identity(event: AuditEvent, actors: Actors) -> AuditEvent:
    """The event with the authenticated user who caused it, when the shell knows one."""
    rule = IDENTITY_RULES.get(event.event_type)
    who = rule(actors) if rule else None
    details = dict(event.details)
    if who is not None:
        details["authenticatedUser"] = who.wire()
    if actors.trigger is not None and event.event_type in TRIGGER_EVENTS:
        details["trigger"] = dict(actors.trigger)
    if details == event.details:
        return event
    return replace(event, details=details)


def record(
    chain: AuditChain, events: Iterable[AuditEvent], actors: Actors, now: datetime
) -> tuple[dict[str, Any], ...]:
    """Append events to the chain; returns the new entries (replayed events are skipped)."""
    new: list[dict[str, Any]] = []
    for event in events:
        event = with_identity(event, actors)
        entry = chain.append(event, actor_id=actor_for(event.event_type, actors), timestamp=now)
        if entry is not None:
            new.append(entry)
    return tuple(new)


@dataclass(frozen=True, slots=True)
class DriveStep:
    """A decision and the audit entries it added (to hand to the ledger sinks)."""

    decision: Decision
    entries: tuple[dict[str, Any], ...]

    @property
    def state(self) -> ExecutionState:
        return self.decision.state


def drive(
    plan: Plan,
    request: ExecutionRequest,
    state: ExecutionState,
    chain: AuditChain,
    observations: Iterable[Observation],
    now: datetime,
    actors: Actors,
) -> DriveStep:
    """`schedule` once and record its events; the caller carries out the actions."""
    decision = schedule(plan, request, state, observations, now)
    return DriveStep(decision, record(chain, decision.events, actors, now))
