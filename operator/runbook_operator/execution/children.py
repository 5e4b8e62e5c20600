"""The Jobs and pods of each execution, kept from watch events instead of listed per reconcile.

Listing every Job and pod of an execution on every reconcile made a 50-step chain decode
its whole history at each transition (a third of the operator's CPU in `make bench`). The
watch already delivers each change, so the operator keeps the newest copy of each object and
lists again only when the copy is older than the resync interval: that catches a deletion
missed while a watch was reconnecting. A Job the operator creates is added at once, so the
next reconcile never mistakes a Job still on its way through the watch for a lost one.

The cache also counts each namespace's running Jobs for the per-namespace cap
(execution/job_cap.py): a Job the watch shows running is kept even before its execution is
reconciled (after a restart, the watch's first LIST counts them at once), and `on_freed` hears
of every Job that stops running, so executions held by the cap are woken without polling.
A Job stops running when its pod ends, not when the Job controller marks it Complete a moment
later: with backoffLimit 0 and restartPolicy Never it can start no other pod. Counting it until
then held the next step of every chain whenever a namespace sat at its cap (`make bench`
concurrent-100: 100 executions against the default cap of 100; docs/benchmarks.md, 14).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook_operator import names
from runbook_operator.steps import observe

log = logging.getLogger("runbook_operator")
Kind = str  # "job" | "pod"
QUIET = observe.signal("pod", {})
"""The signal of an object that has done nothing yet (a Job just created, a pod scheduled)."""


def _version(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:  # opaque by contract; etcd's are integers, anything else: take it
        return 0


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _running(kind: Kind, obj: Mapping[str, Any] | None) -> bool:
    return kind == "job" and obj is not None and not observe.finished(obj)


def _ended_pods_job(kind: Kind, obj: Mapping[str, Any]) -> str | None:
    """The Job whose pod this is, when the pod has ended (its controller reference)."""
    if kind != "pod" or (obj.get("status") or {}).get("phase") not in POD_ENDED:
        return None
    for owner in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if owner.get("controller") and owner.get("kind") == "Job":
            return str(owner.get("name") or "") or None
    return None


POD_ENDED = frozenset({"Succeeded", "Failed"})


def kept(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object without its managedFields: nothing reads a child's field managers, and they
    were about a third of each kept Job and pod (docs/benchmarks.md bottleneck 15)."""
    meta = obj.get("metadata")
    if not meta or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


NEVER_LISTED = float("-inf")
"""`listed_at` of an entry made from watch events or a create alone: `get` lists it first."""


@dataclass
class _Children:
    listed_at: float
    namespace: str = ""
    items: dict[tuple[Kind, str], Mapping[str, Any]] = field(default_factory=dict)
    jobs_running: set[str] = field(default_factory=set)
    """Names of the Jobs in `items` that have not finished."""
    pods_ended: set[str] = field(default_factory=set)
    """Names of the Jobs whose pod has ended (kept while the Job is, as its pods come and go)."""

    @property
    def running(self) -> set[str]:
        """Jobs that still run: not finished, and no pod of theirs has ended."""
        return self.jobs_running - self.pods_ended

    def runs(self, job: str) -> bool:
        return job in self.jobs_running and job not in self.pods_ended

    def put(self, key: tuple[Kind, str], obj: Mapping[str, Any]) -> None:
        self.items[key] = obj = kept(obj)
        self.namespace = self.namespace or _namespace(obj)
        if _running(key[0], obj):
            self.jobs_running.add(key[1])
        elif key[0] == "job":
            self.jobs_running.discard(key[1])
        elif (job := _ended_pods_job(key[0], obj)) is not None:
            self.pods_ended.add(job)

    def drop(self, key: tuple[Kind, str]) -> None:
        self.items.pop(key, None)
        if key[0] == "job":
            self.jobs_running.discard(key[1])
            self.pods_ended.discard(key[1])


@dataclass
class ChildCache:
    """Per execution uid: its Jobs and pods by name. Thread-safe."""

    clock: Callable[[], float] = time.monotonic
    on_freed: Callable[[str], None] | None = None
    """Told the namespace whenever a Job there stops counting as running (it finished, was
    deleted, or its execution was forgotten); called outside the cache's lock."""
    _by_uid: dict[str, _Children] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(
        self, uid: str, max_age: float
    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]] | None:
        """(jobs, pods), or None when not listed yet or listed longer than `max_age` ago."""
        with self._lock:
            entry = self._by_uid.get(uid)
            if entry is None or self.clock() - entry.listed_at > max_age:
                return None
            jobs = [o for (kind, _), o in entry.items.items() if kind == "job"]
            pods = [o for (kind, _), o in entry.items.items() if kind == "pod"]
            return jobs, pods

    def prime(
        self,
        uid: str,
        jobs: Sequence[Mapping[str, Any]],
        pods: Sequence[Mapping[str, Any]],
        namespace: str = "",
    ) -> None:
        """A fresh LIST: it replaces what was kept (keeping any newer copy from the watch)."""
        with self._lock:
            old = self._by_uid.get(uid)
            entry = _Children(self.clock(), namespace or (old.namespace if old else ""))
            for kind, objs in (("job", jobs), ("pod", pods)):
                for obj in objs:
                    key = (kind, obj["metadata"]["name"])
                    newer = old.items.get(key) if old else None
                    keep = newer if newer and _version(newer) > _version(obj) else obj
                    entry.put(key, keep)
            self._by_uid[uid] = entry
            freed = bool(old and old.running - entry.running)
        if freed:
            self._freed(entry.namespace)

    def observe(self, kind: Kind, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Keep what a watch event says; True when it may change an attempt's outcome."""
        uid = (obj.get("metadata", {}).get("labels") or {}).get(names.EXECUTION_UID_LABEL)
        if not uid:
            return False
        key = (kind, obj["metadata"]["name"])
        freed: str | None = None
        with self._lock:
            entry = self._by_uid.get(uid)
            if entry is None and event_type != "DELETED" and _running(kind, obj):
                # counted for the namespace's cap before its execution is reconciled
                entry = self._by_uid[uid] = _Children(NEVER_LISTED, _namespace(obj))
            before = entry.items.get(key) if entry else None
            if entry is not None:
                job = key[1] if kind == "job" else _ended_pods_job(kind, obj)
                was_running = job is not None and entry.runs(job)
                if event_type == "DELETED":
                    entry.drop(key)
                elif before is None or _version(obj) >= _version(before):
                    entry.put(key, obj)
                if was_running and job is not None and not entry.runs(job):
                    freed = entry.namespace
                if entry.listed_at == NEVER_LISTED and not entry.running:
                    del self._by_uid[uid]  # nothing left to count; a reconcile lists anyway
        if freed is not None:
            self._freed(freed)
        if event_type == "DELETED":
            return True
        return observe.signal(kind, obj) != (observe.signal(kind, before) if before else QUIET)

    def add(self, uid: str, kind: Kind, obj: Mapping[str, Any]) -> None:
        """An object this operator just created (or found), before its watch event arrives."""
        with self._lock:
            entry = self._by_uid.get(uid)
            if entry is None:
                entry = self._by_uid[uid] = _Children(NEVER_LISTED, _namespace(obj))
            key = (kind, obj["metadata"]["name"])
            if key not in entry.items:
                entry.put(key, obj)

    def running_jobs(self, namespace: str | None = None) -> int:
        """Jobs not yet finished, of one namespace or of all (the running-Jobs gauge and the
        namespace cap: derived from what the watch shows, never counted up and down, so it
        cannot drift)."""
        with self._lock:
            return sum(
                len(entry.running)
                for entry in self._by_uid.values()
                if namespace is None or entry.namespace == namespace
            )

    def size(self) -> int:
        """Executions whose children are kept."""
        with self._lock:
            return len(self._by_uid)

    def forget(self, uid: str) -> None:
        """The execution is finished or gone: drop its children, except Jobs that still run
        (an attempt is over when its pod has ended, a moment before the Job controller marks
        the Job Complete; a Job being deleted). Those count for the namespace's cap until the
        watch says they ended, then go too."""
        with self._lock:
            entry = self._by_uid.pop(uid, None)
            if entry is not None and entry.running:
                left = _Children(NEVER_LISTED, entry.namespace)
                for name in entry.running:
                    left.put(("job", name), entry.items[("job", name)])
                self._by_uid[uid] = left

    def _freed(self, namespace: str) -> None:
        if self.on_freed is None:
            return
        try:
            self.on_freed(namespace)
        except Exception:  # the cache is updated already; a waker's failure is not the watch's
            log.exception("telling namespace %s that a Job ended failed", namespace)
