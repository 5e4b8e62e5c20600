"""The Jobs and pods of each execution, kept from watch events instead of listed per reconcile.

Listing every Job and pod of an execution on every reconcile made a 50-step chain decode
its whole history at each transition (a third of the operator's CPU in `make bench`). The
watch already delivers each change, so the operator keeps the newest copy of each object and
lists again only when the copy is older than the resync interval: that catches a deletion
missed while a watch was reconnecting. A Job the operator creates is added at once, so the
next reconcile never mistakes a Job still on its way through the watch for a lost one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook_operator import names
from runbook_operator.steps import observe

Kind = str  # "job" | "pod"
QUIET = observe.signal("pod", {})
"""The signal of an object that has done nothing yet (a Job just created, a pod scheduled)."""


def _version(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:  # opaque by contract; etcd's are integers, anything else: take it
        return 0


@dataclass
class _Children:
    listed_at: float
    items: dict[tuple[Kind, str], Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class ChildCache:
    """Per execution uid: its Jobs and pods by name. Thread-safe."""

    clock: Callable[[], float] = time.monotonic
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
        self, uid: str, jobs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
    ) -> None:
        """A fresh LIST: it replaces what was kept (keeping any newer copy from the watch)."""
        with self._lock:
            old = self._by_uid.get(uid)
            entry = _Children(self.clock())
            for kind, objs in (("job", jobs), ("pod", pods)):
                for obj in objs:
                    key = (kind, obj["metadata"]["name"])
                    newer = old.items.get(key) if old else None
                    keep = newer if newer and _version(newer) > _version(obj) else obj
                    entry.items[key] = keep
            self._by_uid[uid] = entry

    def observe(self, kind: Kind, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Keep what a watch event says; True when it may change an attempt's outcome."""
        uid = (obj.get("metadata", {}).get("labels") or {}).get(names.EXECUTION_UID_LABEL)
        if not uid:
            return False
        key = (kind, obj["metadata"]["name"])
        with self._lock:
            entry = self._by_uid.get(uid)
            before = entry.items.get(key) if entry else None
            if entry is not None:
                if event_type == "DELETED":
                    entry.items.pop(key, None)
                elif before is None or _version(obj) >= _version(before):
                    entry.items[key] = obj
        if event_type == "DELETED":
            return True
        return observe.signal(kind, obj) != (observe.signal(kind, before) if before else QUIET)

    def add(self, uid: str, kind: Kind, obj: Mapping[str, Any]) -> None:
        """An object this operator just created (or found), before its watch event arrives."""
        with self._lock:
            entry = self._by_uid.get(uid)
            if entry is not None:
                entry.items.setdefault((kind, obj["metadata"]["name"]), obj)

    def running_jobs(self) -> int:
        """Jobs of the executions kept here that have not finished (the running-Jobs gauge:
        derived from what the watch shows, not counted up and down, so it cannot drift)."""
        with self._lock:
            return sum(
                1
                for entry in self._by_uid.values()
                for (kind, _), obj in entry.items.items()
                if kind == "job" and not observe.finished(obj)
            )

    def size(self) -> int:
        """Executions whose children are kept."""
        with self._lock:
            return len(self._by_uid)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)
