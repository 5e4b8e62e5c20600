"""Live updates: ONE Kubernetes watch of RunbookExecutions, shared by every open page and fanned
out to each by server-sent events (a page subscribes; it never polls the apiserver itself).

The watch runs in a thread with the user's credentials: cluster-wide when they may list
cluster-wide, else over the namespace(s) given to `runbookctl ui`. It starts with the first
subscriber, re-lists when the apiserver says its version is too old, and backs off on errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from runbook_operator.kube import EXECUTIONS, Gone, Kube, KubeError
from runbookctl.ui.source import execution_row

QUEUE_SIZE = 256
"""Events a slow page may lag behind; past that, the oldest are dropped (it re-reads anyway)."""
KEEPALIVE_SECONDS = 15.0


def summary(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What a page needs from a watch event: which execution, its row and a version."""
    meta = obj.get("metadata") or {}
    row = execution_row(obj, datetime.now(UTC))
    row.pop("message", None)
    return {
        "type": event_type,
        "resourceVersion": str(meta.get("resourceVersion", "")),
        "uid": str(meta.get("uid", "")),
        **row,
    }


class Hub:
    """The shared watch and its subscribers (asyncio queues on the server's loop)."""

    def __init__(self, kube: Kube, namespaces: list[str] | None) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.watches_started = 0
        """How many watch threads this hub started (one per scope, however many pages)."""

    def _ensure_started(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        scopes: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        for scope in scopes:
            self.watches_started += 1
            threading.Thread(target=self._run, args=(scope,), daemon=True, name="ui-watch").start()

    def stop(self) -> None:
        self._stop.set()

    def _publish(self, message: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(message)

    def _run(self, scope: str | None) -> None:
        version = ""
        delay = 1.0
        while not self._stop.is_set():
            try:
                if not version:
                    data = self.kube.call("GET", EXECUTIONS.path(scope), query={"limit": "1"})
                    version = str((data.get("metadata") or {}).get("resourceVersion") or "")
                for event in self.kube.watch(EXECUTIONS, scope, "", version, timeout_seconds=240):
                    obj = event.get("object") or {}
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if self._stop.is_set():
                        return
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED") and self._loop:
                        message = summary(str(event["type"]), obj)
                        try:
                            self._loop.call_soon_threadsafe(self._publish, message)
                        except RuntimeError:  # the server's loop has closed: nobody listens
                            return
                delay = 1.0
            except Gone:
                version = ""
            except KubeError:
                version = ""
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def subscribe(self) -> AsyncIterator[str]:
        """Server-sent event lines for one page, until it goes away."""
        self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        self._ensure_started()
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"data: {json.dumps(message)}\n\n"
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
