"""When each step's pod (and, for the operator, its Job) appeared and finished, as watched.

Both systems are timed by the same client-side watch, so the watch's own latency cancels
out of every difference. Only the first sighting of each fact counts (at-least-once events).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch

from .workloads import argo_step

EXECUTION_LABEL = "runbook-operator.dev/execution"
STEP_LABEL = "runbook-operator.dev/step"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
NODE_NAME_ANNOTATION = "workflows.argoproj.io/node-name"

Key = tuple[str, str, str]  # namespace, execution or workflow, step


def step_key(meta: dict[str, Any]) -> Key | None:
    """(namespace, unit, step) of a pod or Job of either system; None for anything else."""
    labels = meta.get("labels") or {}
    if EXECUTION_LABEL in labels and STEP_LABEL in labels:
        return (meta["namespace"], labels[EXECUTION_LABEL], labels[STEP_LABEL])
    node = (meta.get("annotations") or {}).get(NODE_NAME_ANNOTATION)
    if WORKFLOW_LABEL in labels and node:
        return (meta["namespace"], labels[WORKFLOW_LABEL], argo_step(node))
    return None


def pod_done(pod: dict[str, Any]) -> bool:
    """Succeeded, or every container exited 0: a kubelet reports the containers' end a status
    update before the phase, and a controller may act on the first (ours reads the result)."""
    status = pod.get("status") or {}
    if status.get("phase") == "Succeeded":
        return True
    states = [c.get("state") or {} for c in status.get("containerStatuses") or []]
    return bool(states) and all((s.get("terminated") or {}).get("exitCode") == 0 for s in states)


@dataclass
class Timeline:
    """First-seen times (time.monotonic()) per step."""

    pod_created: dict[Key, float] = field(default_factory=dict)
    pod_done: dict[Key, float] = field(default_factory=dict)
    job_created: dict[Key, float] = field(default_factory=dict)

    def of_namespaces(self, namespaces: Collection[str]) -> Timeline:
        def pick(d: dict[Key, float]) -> dict[Key, float]:
            return {k: v for k, v in d.items() if k[0] in namespaces}

        return Timeline(pick(self.pod_created), pick(self.pod_done), pick(self.job_created))


class Recorder:
    """Watches pods and Jobs in every namespace starting with `prefix` until stopped."""

    def __init__(self, api: client.ApiClient, prefix: str) -> None:
        self.timeline = Timeline()
        self._prefix = prefix
        self._lock = threading.Lock()
        self._stop = threading.Event()
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self._threads = [
            threading.Thread(target=self._run, args=(core.list_pod_for_all_namespaces, self._pod)),
            threading.Thread(target=self._run, args=(batch.list_job_for_all_namespaces, self._job)),
        ]

    def __enter__(self) -> Recorder:
        for t in self._threads:
            t.daemon = True
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _events(self, lister: Callable[..., Any]) -> Iterator[dict[str, Any]]:
        """Raw watch events (plain dicts: decoding models would cost the measured CPU)."""
        resource_version = lister(limit=1).metadata.resource_version
        while not self._stop.is_set():
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                lister, resource_version=resource_version, timeout_seconds=30, deserialize=False
            )
            for ev in stream:
                obj = ev["object"]
                if ev["type"] == "ERROR":  # 410 Gone: start again from now
                    resource_version = lister(limit=1).metadata.resource_version
                    break
                resource_version = obj["metadata"]["resourceVersion"]
                yield obj

    def _run(
        self, lister: Callable[..., Any], handle: Callable[[dict[str, Any], float], None]
    ) -> None:
        for obj in self._events(lister):
            meta = obj["metadata"]
            # An object being deleted belongs to a run that is over (a broken run's namespace
            # cleared under the same name): its events would pass for the new run's.
            if meta.get("namespace", "").startswith(self._prefix) and not meta.get(
                "deletionTimestamp"
            ):
                handle(obj, time.monotonic())

    def forget(self, namespaces: Collection[str]) -> None:
        """Drop what was seen in `namespaces` (cleared for a new run under the same names)."""
        tl = self.timeline
        with self._lock:
            for seen in (tl.pod_created, tl.pod_done, tl.job_created):
                for key in [k for k in seen if k[0] in namespaces]:
                    del seen[key]

    def _first(self, into: dict[Key, float], key: Key, now: float) -> None:
        with self._lock:
            into.setdefault(key, now)

    def _pod(self, pod: dict[str, Any], now: float) -> None:
        key = step_key(pod["metadata"])
        if key is None:
            return
        self._first(self.timeline.pod_created, key, now)
        if pod_done(pod):
            self._first(self.timeline.pod_done, key, now)

    def _job(self, job: dict[str, Any], now: float) -> None:
        key = step_key(job["metadata"])
        if key is not None:
            self._first(self.timeline.job_created, key, now)
