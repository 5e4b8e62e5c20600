"""The operator's side of RunbookTrigger: conditions, running executions, history (the shell).

Level-based: each reconcile reads the trigger, its Runbook and its executions (by label, from
the apiserver) and writes the status the pure `status.trigger_status` derives; finished
executions beyond `historyLimit` are deleted. The receiver (receiver.py) starts executions; the
schedule half (triggers/schedule.py) plugs in here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from runbook_engine.timeutil import utcnow
from runbook_operator import kube as k
from runbook_operator.triggers import plan
from runbook_operator.triggers.model import parse_spec
from runbook_operator.triggers.status import history_to_delete, trigger_status

log = logging.getLogger("runbook_operator.triggers")


def spec_problem(exc: ValidationError) -> str:
    """The first problem, naming the field (`spec.<path>: reason`)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    msg = str(first.get("msg", "")).removeprefix("Value error, ")
    return f"spec.{where}: {msg}" if where else msg


@dataclass
class TriggerController:
    kube: k.Kube
    clock: Callable[[], datetime] = utcnow

    def reconcile(self, namespace: str, name: str) -> None:
        try:
            body = self.kube.get(k.TRIGGERS, namespace, name)
        except k.NotFound:
            return
        problem = None
        spec = None
        try:
            spec = parse_spec(body.get("spec") or {})
        except ValidationError as exc:
            problem = spec_problem(exc)
        runbook_found = True
        if spec is not None:
            try:
                self.kube.get(k.RUNBOOKS, namespace, spec.runbook_ref.name)
            except k.NotFound:
                runbook_found = False
        items = self.kube.list(k.EXECUTIONS, namespace, plan.trigger_selector(name))
        started = [plan.Started.of(i) for i in items]
        now = self.clock()
        if spec is not None:
            limit = spec.history_limit
            for doomed in history_to_delete(
                started, limit.succeeded, limit.failed, now, plan.RATE_WINDOW
            ):
                self.kube.delete(k.EXECUTIONS, namespace, doomed)
                started = [s for s in started if s.name != doomed]
        generation = (body.get("metadata") or {}).get("generation")
        status = trigger_status(
            body.get("status") or {},
            problem=problem,
            runbook_found=runbook_found,
            suspended=bool(spec and spec.suspend),
            started=started,
            generation=int(generation) if generation is not None else None,
            now=now,
        )
        try:
            k.write_status(self.kube, k.TRIGGERS, body, status)
        except k.Conflict:
            log.info("trigger %s/%s: status changed meanwhile; next round", namespace, name)
