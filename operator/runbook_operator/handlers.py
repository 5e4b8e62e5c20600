"""kopf registrations, and nothing else: each handler hands over to the controller.

Level-based: one daemon per RunbookExecution converges it (reconcile, then sleep until the
engine's next wake-up, an event about the execution or one of its Jobs/pods, or the resync
interval); watch events only wake it. A restart resumes every daemon, so nothing is lost. Jobs
and pods are not watched through kopf (it filters labels client-side, so it would watch every
pod of the cluster) but by execution/child_watch.py, label-selected by the apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from runbook_engine.timeutil import utcnow
from runbook_operator import kube as k
from runbook_operator.crd.runbook_status import runbook_status_of
from runbook_operator.execution import control
from runbook_operator.execution.view import ExecutionView
from runbook_operator.settings import GROUP, VERSION, configure

__all__ = ["configure"]
log = logging.getLogger("runbook_operator")
TRIGGER_RESYNC_SECONDS = 10.0
"""How often a trigger's status follows its executions (active, history) without an event."""


async def _call(memo: Any, namespace: str | None, fn: Any, *args: Any) -> Any:
    """Run a blocking controller call on the operator's reconcile workers, which serve
    namespaces in turn (execution/fair_pool.py): 500 queued reconciles of one tenant do not
    hold back another tenant's next one."""
    return await asyncio.wrap_future(memo.pool.submit(namespace or "", fn, *args))


def _wake(memo: Any, uid: str | None) -> None:
    """Wake the daemon of execution `uid` (events about its Jobs and pods arrive through the
    operator's own label-selected watches: execution/child_watch.py)."""
    event = memo.wakers.get(uid) if uid else None
    if event is not None:
        event.set()


@kopf.daemon(GROUP, VERSION, "runbookexecutions", cancellation_timeout=5.0)
async def drive_execution(
    namespace: str | None, name: str, uid: str, body: Any, memo: Any, **_: Any
) -> None:
    """Reconcile until the execution is finished (or deleted). A finished one is left alone at
    start-up: its status is written last, so a terminal phase means all else was done."""
    view = ExecutionView.of(body)
    if view.finished and not view.control_requested:
        return
    waker = memo.wakers.setdefault(uid, asyncio.Event())
    memo.driven[(namespace, name)] = uid
    try:
        while True:
            waker.clear()
            outcome = await _call(memo, namespace, memo.controller.reconcile, namespace, name, uid)
            if outcome.done:
                return
            sleep = memo.cfg.resync_seconds
            if outcome.wake_at is not None:
                wait = (outcome.wake_at - memo.controller.clock()).total_seconds()
                sleep = min(sleep, max(0.0, wait))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=sleep + 0.01)
    finally:
        memo.wakers.pop(uid, None)
        memo.controller.bodies.forget(uid)
        if memo.driven.get((namespace, name)) == uid:
            del memo.driven[(namespace, name)]


@kopf.on.event(GROUP, VERSION, "runbookexecutions")
async def execution_changed(uid: str, body: Any, memo: Any, **_: Any) -> None:
    """A spec change (pause, cancel): wake its daemon, or run once more if it has finished.
    Every event's body is kept for the reconcile (execution/bodies.py: no GET per reconcile)."""
    memo.controller.bodies.saw(dict(body))
    view = ExecutionView.of(body)
    if uid in memo.wakers:
        if view.spec_unobserved:
            _wake(memo, uid)
    elif control.reconcile_after_finish(view):
        ref = view.ref
        await _call(
            memo, ref.namespace, memo.controller.reconcile, ref.namespace, ref.name, ref.uid
        )


@kopf.on.delete(GROUP, VERSION, "runbookexecutions")
async def execution_deleted(
    namespace: str | None, name: str, uid: str, memo: Any, **_: Any
) -> None:
    """Cancel what still runs, write the last entries and a checkpoint, then release."""
    await _call(memo, namespace, memo.controller.finalize, namespace, name, uid)


@kopf.on.resume(GROUP, VERSION, "runbooks")
@kopf.on.create(GROUP, VERSION, "runbooks")
@kopf.on.update(GROUP, VERSION, "runbooks", field="spec")
async def runbook_changed(namespace: str | None, body: Any, memo: Any, **_: Any) -> None:
    """Validate a Runbook fully (cycles included) and report it in its Valid condition."""
    status = runbook_status_of(body, utcnow(), memo.cfg.image_policy)
    await _call(memo, namespace, k.write_status, memo.kube, k.RUNBOOKS, dict(body), status)


@kopf.on.resume(GROUP, VERSION, "runbooktriggers")
@kopf.on.create(GROUP, VERSION, "runbooktriggers")
@kopf.on.update(GROUP, VERSION, "runbooktriggers", field="spec")
async def trigger_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Conditions, running executions and history of a RunbookTrigger (triggers/controller)."""
    await _call(memo, namespace, memo.triggers.reconcile, namespace, name)


@kopf.timer(GROUP, VERSION, "runbooktriggers", interval=TRIGGER_RESYNC_SECONDS)
async def trigger_resync(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """The same, periodically: executions finish without the trigger changing."""
    await _call(memo, namespace, memo.triggers.reconcile, namespace, name)


def _scheduled(spec: Any, **_: Any) -> bool:
    return bool((spec or {}).get("schedule"))


@kopf.daemon(GROUP, VERSION, "runbooktriggers", when=_scheduled, cancellation_timeout=5.0)
async def drive_schedule(namespace: str | None, name: str, uid: str, memo: Any, **_: Any) -> None:
    """Fire a scheduled trigger: tick (triggers/scheduler.py), then sleep until its next fire
    time, a spec change, or the resync interval. (History and conditions: trigger_changed.)"""
    waker = memo.trigger_wakers.setdefault(uid, asyncio.Event())
    try:
        while True:
            waker.clear()
            wake_at = None
            try:
                wake_at = await _call(memo, namespace, memo.scheduler.tick, namespace, name)
            except k.KubeError as exc:
                log.warning("trigger %s/%s: schedule tick failed: %s", namespace, name, exc)
            except Exception:  # one trigger's surprise must not end its schedule for good
                log.exception("trigger %s/%s: schedule tick failed", namespace, name)
            sleep = memo.cfg.resync_seconds
            if wake_at is not None:
                wait = (wake_at - memo.scheduler.clock()).total_seconds()
                sleep = min(sleep, max(0.0, wait))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=sleep + 0.01)
    finally:
        memo.trigger_wakers.pop(uid, None)


@kopf.on.update(GROUP, VERSION, "runbooktriggers", field="spec")
async def trigger_spec_changed(uid: str, memo: Any, **_: Any) -> None:
    """A changed schedule (cron, zone, suspend, limits): tick now, not at the old next fire."""
    event = memo.trigger_wakers.get(uid)
    if event is not None:
        event.set()


@kopf.on.event(GROUP, VERSION, "runbookapprovals")
async def approval_changed(
    namespace: str | None, body: Any, memo: Any, type: str | None, **_: Any
) -> None:
    """A decision: wake the execution it names, which judges it; one for an execution no
    daemon drives (finished, absent) is refused here so its author sees why."""
    if type == "DELETED" or (body.get("status") or {}).get("verdict"):
        return
    execution = ((body.get("spec") or {}).get("executionRef") or {}).get("name")
    uid = memo.driven.get((namespace, execution))
    if uid is not None:
        _wake(memo, uid)
    else:
        await _call(memo, namespace, memo.controller.judge_late, namespace, dict(body))
