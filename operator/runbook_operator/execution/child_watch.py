"""The operator's own watches of Jobs and pods, label-selected by the apiserver.

kopf filters a handler's `labels=` on the client side, so `@kopf.on.event("pods", labels=…)`
lists and watches every pod of the cluster and decodes each one: memory, CPU and exposure the
operator does not need on a cluster with 10,000 pods. These watches ask the apiserver for the
operator's children only (`app.kubernetes.io/managed-by=runbook-operator`), one per watched
namespace (or one cluster-wide for globs or the whole cluster), and feed `ChildCache`; an event
that can change an attempt's outcome wakes its execution. A watch that ends is continued from
its last resourceVersion (bookmarks keep that fresh); a version too old (410) or an error lists
again. A change missed while disconnected is caught by the per-execution relist after
`RUNBOOK_RESYNC_SECONDS`.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook_operator import kube as k
from runbook_operator import metrics, names
from runbook_operator.execution.children import ChildCache, Kind

log = logging.getLogger("runbook_operator")
SELECTOR = names.MANAGED_SELECTOR
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
KINDS: Sequence[tuple[Kind, k.Resource]] = (("job", k.JOBS), ("pod", k.PODS))


def scopes(namespaces: Sequence[str]) -> tuple[list[str | None], Callable[[str], bool]]:
    """Where to watch, and which namespaces of what arrives are ours: exact names are watched
    one by one; globs (or no list: the whole cluster) need one cluster-wide watch, filtered."""
    if namespaces and not any(set(ns) & set("*?[") for ns in namespaces):
        return list(namespaces), lambda _ns: True
    if not namespaces:
        return [None], lambda _ns: True
    return [None], lambda ns: any(fnmatch.fnmatchcase(ns, pattern) for pattern in namespaces)


@dataclass
class ChildWatch:
    """Threads that keep `children` current; `wake(uid)` is called for events that matter."""

    kube: k.Kube
    children: ChildCache
    namespaces: Sequence[str]
    wake: Callable[[str], None]
    sleep: Callable[[float], None] = time.sleep
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        where, ours = scopes(self.namespaces)
        for kind, res in KINDS:
            for namespace in where:
                thread = threading.Thread(
                    target=self.run,
                    args=(kind, res, namespace, ours),
                    name=f"watch-{kind}-{namespace or 'all'}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def run(
        self, kind: Kind, res: k.Resource, namespace: str | None, ours: Callable[[str], bool]
    ) -> None:
        """List, then watch from the list's version for as long as the operator runs."""
        failures = 0
        while not self._stop.is_set():
            try:
                items, version = self.kube.list_versioned(res, namespace, SELECTOR)
                for obj in items:
                    self.seen(kind, "ADDED", obj, ours)
                while not self._stop.is_set():
                    version = self.follow(kind, res, namespace, version, ours)
                    failures = 0
            except k.Gone:
                log.info("watch of %ss in %s expired: listing again", kind, namespace or "all")
            except Exception as exc:  # the API away, a cut connection: wait, list again
                metrics.API_ERRORS.labels(f"watch_{kind}").inc()
                delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning("watch of %ss failed (%s); again in %.1fs", kind, exc, delay)
                self.sleep(delay)

    def follow(
        self,
        kind: Kind,
        res: k.Resource,
        namespace: str | None,
        version: str,
        ours: Callable[[str], bool],
    ) -> str:
        """One watch request, to its end; returns the last resourceVersion seen."""
        for event in self.kube.watch(res, namespace, SELECTOR, version):
            obj = event.get("object") or {}
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if event.get("type") != "BOOKMARK":
                self.seen(kind, event.get("type"), obj, ours)
            if self._stop.is_set():
                break
        return version

    def seen(
        self,
        kind: Kind,
        event_type: str | None,
        obj: Mapping[str, Any],
        ours: Callable[[str], bool],
    ) -> None:
        meta = obj.get("metadata") or {}
        if not ours(str(meta.get("namespace") or "")):
            return
        if self.children.observe(kind, event_type, obj):
            uid = (meta.get("labels") or {}).get(names.EXECUTION_UID_LABEL)
            if uid:
                self.wake(str(uid))
