"""kopf registrations, and nothing else: each handler hands over to the controller.

Level-based: one daemon per RunbookExecution converges it (reconcile, then sleep until the
engine's next wake-up, an event about the execution or one of its Jobs/pods, or the resync
interval); watch events only wake it. A restart resumes every daemon, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from runbook_operator import names
from runbook_operator.settings import GROUP, VERSION, configure

__all__ = ["configure"]
log = logging.getLogger("runbook_operator")
OURS = {"app.kubernetes.io/managed-by": names.MANAGED_BY}
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


async def _call(memo: Any, fn: Any, *args: Any) -> Any:
    """Run a blocking controller call on the operator's own thread pool."""
    return await asyncio.get_running_loop().run_in_executor(memo.pool, fn, *args)


def _wake(memo: Any, uid: str | None) -> None:
    event = memo.wakers.get(uid) if uid else None
    if event is not None:
        event.set()


def _finished(body: Any) -> bool:
    return (body.get("status") or {}).get("phase") in TERMINAL


def _control_requested(body: Any) -> bool:
    spec = body.get("spec") or {}
    return bool(spec.get("paused") or spec.get("cancel"))


@kopf.daemon(GROUP, VERSION, "runbookexecutions", cancellation_timeout=5.0)
async def drive_execution(
    namespace: str | None, name: str, uid: str, body: Any, memo: Any, **_: Any
) -> None:
    """Reconcile until the execution is finished (or deleted). A finished one is left alone at
    start-up: its status is written last, so a terminal phase means all else was done."""
    if _finished(body) and not _control_requested(body):
        return
    waker = memo.wakers.setdefault(uid, asyncio.Event())
    try:
        while True:
            waker.clear()
            outcome = await _call(memo, memo.controller.reconcile, namespace, name)
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


def _spec_changed(body: Any) -> bool:
    """A spec the status has not caught up with (pause, cancel, a new execution). The status
    writes of the operator itself do not count: they would wake every daemon once more."""
    meta = body.get("metadata") or {}
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed != meta.get("generation") or bool(meta.get("deletionTimestamp"))


@kopf.on.event(GROUP, VERSION, "runbookexecutions")
async def execution_changed(uid: str, body: Any, memo: Any, **_: Any) -> None:
    """A spec change (pause, cancel): wake its daemon, or run once more if it has finished."""
    if uid in memo.wakers:
        if _spec_changed(body):
            _wake(memo, uid)
    elif _finished(body) and _control_requested(body):
        meta = body["metadata"]
        await _call(memo, memo.controller.reconcile, meta["namespace"], meta["name"])


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def job_changed(type: str | None, event: Any, labels: Any, memo: Any, **_: Any) -> None:
    """Keep the Job; wake its execution only when the change can alter the attempt."""
    if memo.controller.children.observe("job", type, event["object"]):
        _wake(memo, labels.get(names.EXECUTION_UID_LABEL))


@kopf.on.event("", "v1", "pods", labels=OURS)
async def pod_changed(type: str | None, event: Any, labels: Any, memo: Any, **_: Any) -> None:
    if memo.controller.children.observe("pod", type, event["object"]):
        _wake(memo, labels.get(names.EXECUTION_UID_LABEL))


@kopf.on.delete(GROUP, VERSION, "runbookexecutions")
async def execution_deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Cancel what still runs, write the last entries and a checkpoint, then release."""
    await _call(memo, memo.controller.finalize, namespace, name)


@kopf.on.resume(GROUP, VERSION, "runbooks")
@kopf.on.create(GROUP, VERSION, "runbooks")
@kopf.on.update(GROUP, VERSION, "runbooks", field="spec")
async def runbook_changed(namespace: str | None, name: str, body: Any, memo: Any, **_: Any) -> None:
    """Validate a Runbook fully (cycles included) and report it in its Valid condition."""
    await _call(memo, memo.runbooks.update_status, namespace, name, dict(body))
