"""The imperative shell of one reconcile: fetch, decide (`reconcile`), carry out.

Synchronous (the kopf handlers run it on a thread pool). Effects go out in a
crash-safe order — ledger, result ConfigMaps, Jobs, then status — and every write is
idempotent or guarded by a resourceVersion, so kopf's at-least-once delivery, an operator
restart between two writes, or a concurrent edit leaves no duplicate Job and no gap in the ledger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from runbook_engine.audit import AuditChain
from runbook_engine.contract import StepExecutorResult
from runbook_engine.driver import Actors, record
from runbook_engine.problems import Problem
from runbook_engine.timeutil import format_time, utcnow
from runbook_operator import kube as k
from runbook_operator import metrics, names
from runbook_operator.config import OperatorConfig
from runbook_operator.execution import pinning
from runbook_operator.execution.children import ChildCache
from runbook_operator.execution.reconcile import (
    Effects,
    KubeEvent,
    Pinned,
    World,
    kube_events,
    load_state,
    reconcile,
    wanted_reads,
)
from runbook_operator.execution.status import execution_status
from runbook_operator.steps import observe, results
from runbook_operator.steps.jobs import ExecutionRef

JOB_CREATE_CONCURRENCY = 8
"""Jobs one reconcile creates at once; the client's connection pool holds more than this."""
log = logging.getLogger("runbook_operator")
MAX_CONFLICT_RETRIES = 5
TERMINAL_PHASES = ("COMPLETED", "FAILED", "CANCELLED")
RETRY_AFTER_ERROR = timedelta(seconds=15)
DELETE_ACTOR = "kubectl-delete (finalizer)"


class Ledger(Protocol):
    """What the controller needs of an execution's ledger (runbook_operator.ledger.store)."""

    def load(self) -> AuditChain: ...

    def append(self, entries: Sequence[Mapping[str, Any]]) -> None: ...

    def write_checkpoint(self, chain: AuditChain, signer: Any, now: datetime) -> dict[str, Any]: ...


LedgerFactory = Callable[[k.Kube, ExecutionRef], Ledger]


@dataclass(frozen=True, slots=True)
class Outcome:
    """After one reconcile: is the execution finished, and when to look again at the latest."""

    done: bool
    wake_at: datetime | None = None


@dataclass
class Controller:
    kube: k.Kube
    cfg: OperatorConfig
    ledger_factory: LedgerFactory
    signer: Any = None
    clock: Callable[[], datetime] = utcnow
    _pinned: dict[str, Pinned] = field(default_factory=dict)
    _ledgers: dict[str, Ledger] = field(default_factory=dict)
    _rbac_ready: set[str] = field(default_factory=set)
    children: ChildCache = field(default_factory=ChildCache)
    _creators: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(JOB_CREATE_CONCURRENCY, "create-job")
    )
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    # -- entry points ----------------------------------------------------------------------------
    def _lock(self, namespace: str, name: str) -> threading.Lock:
        """One reconcile at a time per execution (daemon, finalizer and control events)."""
        with self._locks_guard:
            return self._locks.setdefault(f"{namespace}/{name}", threading.Lock())

    def reconcile(self, namespace: str, name: str) -> Outcome:
        with self._lock(namespace, name):
            return self._reconcile_retrying(namespace, name)

    def _reconcile_retrying(self, namespace: str, name: str) -> Outcome:
        """One reconcile, retried from a fresh read when a guarded write meets a Conflict.

        Any other failure (the API unreachable, a damaged ledger, a bug) is logged, shown in the
        execution's Ready condition and retried later: one bad object never stops the operator.
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                with metrics.RECONCILE_SECONDS.time():
                    return self._reconcile(namespace, name)
            except k.Conflict as exc:
                log.info("conflict on %s/%s, re-reading: %s", namespace, name, exc.message)
                self._ledgers.pop(f"{namespace}/{name}", None)
            except Exception as exc:  # never let one execution take the operator down
                return self._failed_reconcile(namespace, name, exc)
        return Outcome(done=False, wake_at=self.clock())

    def _failed_reconcile(self, namespace: str, name: str, exc: Exception) -> Outcome:
        log.exception("reconcile of %s/%s failed", namespace, name)
        metrics.API_ERRORS.labels("reconcile").inc()
        self._ledgers.pop(f"{namespace}/{name}", None)
        message = f"{type(exc).__name__}: {exc}"[:1000]
        ready = {"type": "Ready", "status": "False", "reason": "ReconcileError", "message": message}
        try:
            body = self.kube.get(k.EXECUTIONS, namespace, name)
            conditions = [
                c
                for c in (body.get("status") or {}).get("conditions") or []
                if c.get("type") != "Ready"
            ]
            ready["lastTransitionTime"] = format_time(self.clock())
            ready["observedGeneration"] = body["metadata"].get("generation")
            patch = {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": {"conditions": [*conditions, ready]},
            }
            self.kube.patch(k.EXECUTIONS, namespace, name, patch, subresource="status")
        except Exception as again:  # reporting is best effort; the log has the first error
            log.info("cannot report the failure on %s/%s: %s", namespace, name, again)
        return Outcome(done=False, wake_at=self.clock() + RETRY_AFTER_ERROR)

    def finalize(self, namespace: str, name: str) -> None:
        """The execution is being deleted: cancel what runs, seal the ledger, then let go."""
        with self._lock(namespace, name):
            self._finalize_retrying(namespace, name)
        with self._locks_guard:
            self._locks.pop(f"{namespace}/{name}", None)

    def _finalize_retrying(self, namespace: str, name: str) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                return self._finalize(namespace, name)
            except k.Conflict:
                self._ledgers.pop(f"{namespace}/{name}", None)
        raise k.Conflict(409, "Conflict", f"could not finalize {namespace}/{name}")

    # -- the reconcile -------------------------------------------------------------------------
    def _reconcile(self, namespace: str, name: str) -> Outcome:
        try:
            body = self.kube.get(k.EXECUTIONS, namespace, name)
        except k.NotFound:
            return Outcome(done=True)
        if body["metadata"].get("deletionTimestamp"):
            return Outcome(done=True)
        return self._drive(body, cancel=False)

    def _finalize(self, namespace: str, name: str) -> None:
        try:
            body = self.kube.get(k.EXECUTIONS, namespace, name)
        except k.NotFound:
            return
        if (body.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            self._drive(body, cancel=True)
        ref = _ref(body)
        # Only Jobs still running: finished ones go with the execution (ownerReferences), and
        # deleting a 1,000-step execution should not cost 1,000 requests.
        for job in self.kube.list(k.JOBS, namespace, f"{names.EXECUTION_UID_LABEL}={ref.uid}"):
            if not observe.finished(job):
                self.kube.delete(k.JOBS, namespace, job["metadata"]["name"])
        self._pinned.pop(ref.uid, None)
        self._ledgers.pop(f"{namespace}/{name}", None)
        self.children.forget(ref.uid)

    def _drive(self, body: Mapping[str, Any], *, cancel: bool) -> Outcome:
        ref = _ref(body)
        now = self.clock()
        pinned = self._pin(body, ref, now)
        if isinstance(pinned, pinning.Refusal):
            self._refuse(body, ref, pinned, now)
            return Outcome(done=True)
        control = None
        if cancel:
            body = {**body, "spec": {**body.get("spec", {}), "cancel": True}}
            control = DELETE_ACTOR
        ledger = self._ledger(ref)
        chain = ledger.load()
        state = load_state(pinned.plan, body.get("status") or {}, ref.execution_id, now)
        jobs, pods = self._children(ref, bool(state.running) or state.status.terminal)
        reads = self._read_results(ref, wanted_reads(state, jobs, pods, ref))
        world = World(ref, body, pinned, chain, jobs, pods, reads, now, control)
        effects = reconcile(world, state, self.cfg)
        self._apply(body, ref, ledger, chain, effects, now)
        if effects.terminal:
            self.children.forget(ref.uid)
        return Outcome(done=effects.terminal, wake_at=effects.next_wakeup)

    # -- fetching ------------------------------------------------------------------------------
    def _pin(
        self, body: Mapping[str, Any], ref: ExecutionRef, now: datetime
    ) -> Pinned | pinning.Refusal:
        cached = self._pinned.get(ref.uid)
        if cached is not None:
            return cached
        cm_name = names.definition_configmap(ref.name, ref.uid)
        try:
            cm = self.kube.get(k.CONFIGMAPS, ref.namespace, cm_name)
        except k.NotFound:
            if (body.get("status") or {}).get("definitionRef"):
                reason = f"the pinned definition ConfigMap {cm_name} was deleted"
                return pinning.Refusal("DefinitionLost", (Problem("status.definitionRef", reason),))
            made = self._make_pin(body, ref)
            if isinstance(made, pinning.Refusal):
                return made
            cm, _ = self.kube.create_or_get(k.CONFIGMAPS, ref.namespace, made)
        try:
            pinned = pinning.pinned_from_configmap(cm)
        except (ValueError, KeyError) as exc:
            return pinning.Refusal("DefinitionLost", (Problem("status.definitionRef", str(exc)),))
        self._pinned[ref.uid] = pinned
        return pinned

    def _make_pin(
        self, body: Mapping[str, Any], ref: ExecutionRef
    ) -> dict[str, Any] | pinning.Refusal:
        request = pinning.parse_request(body.get("spec") or {})
        if isinstance(request, pinning.Refusal):
            return request
        try:
            runbook = self.kube.get(k.RUNBOOKS, ref.namespace, request.runbook_ref.name)
        except k.NotFound:
            runbook = None
        return pinning.pin(runbook, request, ref)

    def _ledger(self, ref: ExecutionRef) -> Ledger:
        key = f"{ref.namespace}/{ref.name}"
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = self.ledger_factory(self.kube, ref)
        return ledger

    def _children(
        self, ref: ExecutionRef, needed: bool
    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """From the watch-fed cache; listed afresh when it is older than the resync interval."""
        if not needed:
            return [], []
        cached = self.children.get(ref.uid, max_age=self.cfg.resync_seconds)
        if cached is not None:
            return cached
        selector = f"{names.EXECUTION_UID_LABEL}={ref.uid}"
        jobs = self.kube.list(k.JOBS, ref.namespace, selector)
        pods = self.kube.list(k.PODS, ref.namespace, selector) if jobs else []
        self.children.prime(ref.uid, jobs, pods)
        return list(jobs), list(pods)

    def _read_results(
        self, ref: ExecutionRef, wanted: Sequence[tuple[str, results.Pointer]]
    ) -> dict[str, StepExecutorResult | str]:
        out: dict[str, StepExecutorResult | str] = {}
        for job, pointer in wanted:
            try:
                cm = self.kube.get(k.CONFIGMAPS, ref.namespace, pointer.configmap)
                out[job] = results.read_configmap(cm, pointer.sha256)
            except k.NotFound:
                out[job] = f"result ConfigMap {pointer.configmap} not found"
            except results.ResultError as exc:
                out[job] = str(exc)
        return out

    # -- acting ----------------------------------------------------------------------------------
    def _apply(
        self,
        body: Mapping[str, Any],
        ref: ExecutionRef,
        ledger: Ledger,
        chain: AuditChain,
        effects: Effects,
        now: datetime,
    ) -> None:
        # Result ConfigMaps before the Jobs whose pods mount them.
        for cm in effects.result_configmaps:
            self.kube.create_or_get(k.CONFIGMAPS, ref.namespace, cm)
        if effects.create_jobs:
            self._ensure_executor_rbac(ref.namespace)
        # Jobs side by side (a fan-out makes hundreds), and the ledger meanwhile: the next step
        # starts one round trip after its dependency ended, not three. A Job made before its
        # STEP_STARTED entry is safe: its name is deterministic, so a replay after a crash
        # adopts it and records the entry then.
        creating = [
            self._creators.submit(self._create_job, ref, job) for job in effects.create_jobs
        ]
        if effects.entries:
            ledger.append(effects.entries)
            # Right after the ledger: a replay after a lost status write has no new entries,
            # so Events posted later in this reconcile would never be posted at all.
            self._post_events(body, effects.events, now)
        for done in creating:
            done.result()
        for name in effects.delete_jobs:
            self.kube.delete(k.JOBS, ref.namespace, name)
        status = effects.status
        if effects.terminal and self.signer is not None:
            status = self._checkpoint(ledger, chain, status, now)
        self._write_status(body, ref, status)
        metrics.observe(effects)

    def _create_job(self, ref: ExecutionRef, manifest: Mapping[str, Any]) -> None:
        try:
            obj, created = self.kube.create_or_get(k.JOBS, ref.namespace, manifest)
        except (k.Invalid, k.KubeError) as exc:
            log.warning("cannot create Job %s: %s", manifest["metadata"]["name"], exc)
            metrics.API_ERRORS.labels("create_job").inc()
            return  # the next reconcile sees no Job and records a lost attempt with the reason
        self.children.add(ref.uid, "job", obj)
        owner = (obj["metadata"].get("labels") or {}).get(names.EXECUTION_UID_LABEL)
        if not created and owner != ref.uid:
            log.error(
                "Job %s exists but belongs to %s, not %s", obj["metadata"]["name"], owner, ref.uid
            )

    def _checkpoint(
        self, ledger: Ledger, chain: AuditChain, status: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        recorded = (status.get("audit") or {}).get("checkpoint") or {}
        if recorded.get("head") == chain.head and recorded.get("count") == len(chain.entries):
            return status
        checkpoint = ledger.write_checkpoint(chain, self.signer, now)
        return {**status, "audit": {**status["audit"], "checkpoint": checkpoint}}

    def _write_status(
        self, body: Mapping[str, Any], ref: ExecutionRef, status: dict[str, Any]
    ) -> None:
        """Write the status this reconcile derived from `body`'s status.

        Guarded by resourceVersion. A conflict caused by a change elsewhere in the object
        (spec, metadata: a `kubectl patch`, kopf's annotations) is retried with the fresh
        resourceVersion, because this reconcile's ledger entries and Job changes are already
        done and the status must follow them; only a status changed by someone else in between
        makes the whole reconcile start again.
        """
        based_on = body.get("status")
        version = body["metadata"]["resourceVersion"]
        for _ in range(MAX_CONFLICT_RETRIES):
            if status == based_on:
                return
            patch = {"metadata": {"resourceVersion": version}, "status": status}
            try:
                self.kube.patch(k.EXECUTIONS, ref.namespace, ref.name, patch, subresource="status")
                return
            except k.NotFound:
                return
            except k.Conflict:
                fresh = self.kube.get(k.EXECUTIONS, ref.namespace, ref.name)
                if fresh.get("status") != based_on:
                    log.info(
                        "status of %s/%s was changed by another writer", ref.namespace, ref.name
                    )
                    raise
                version = fresh["metadata"]["resourceVersion"]
        raise k.Conflict(409, "Conflict", f"status of {ref.namespace}/{ref.name} kept changing")

    def _post_events(
        self, body: Mapping[str, Any], events: Sequence[KubeEvent], now: datetime
    ) -> None:
        meta = body["metadata"]
        for event in events:
            manifest = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{meta['name'][:200]}.{names.short_hash(event.key, length=12)}"
                },
                "involvedObject": {
                    "apiVersion": body["apiVersion"],
                    "kind": body["kind"],
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta["uid"],
                },
                "type": event.type,
                "reason": event.reason,
                "message": event.message[:1024],
                "source": {"component": "runbook-operator"},
                "reportingComponent": "runbook-operator",
                "reportingInstance": "runbook-operator",
                "firstTimestamp": format_time(now),
                "lastTimestamp": format_time(now),
                "count": 1,
            }
            try:
                self.kube.create_or_get(k.EVENTS, meta["namespace"], manifest)
            except k.KubeError as exc:  # Events are best effort; the ledger is the record
                log.info("cannot post Event %s: %s", event.reason, exc)

    def _refuse(
        self, body: Mapping[str, Any], ref: ExecutionRef, refusal: pinning.Refusal, now: datetime
    ) -> None:
        if (body.get("status") or {}).get("phase") == "FAILED":
            return
        parsed = pinning.parse_request(body.get("spec") or {})
        request = None if isinstance(parsed, pinning.Refusal) else parsed
        ledger = self._ledger(ref)
        chain = ledger.load()
        actors = Actors(self.cfg.actor, request.started_by if request else None)
        entries = record(chain, pinning.refusal_events(refusal, request), actors, now)
        if entries:
            ledger.append(entries)
            self._post_events(body, kube_events(entries), now)
        runbook = str((body.get("spec") or {}).get("runbookRef", {}).get("name", ""))
        state = pinning.refused_state(ref, runbook, refusal, now)
        status = execution_status(
            state,
            chain,
            execution=ref.name,
            uid=ref.uid,
            generation=body["metadata"].get("generation"),
            now=now,
            previous=body.get("status") or {},
            extra={},
            failure_reason=refusal.reason,
        )
        if self.signer is not None:
            status = self._checkpoint(ledger, chain, status, now)
        self._write_status(body, ref, status)

    def _ensure_executor_rbac(self, namespace: str) -> None:
        if not self.cfg.manage_executor_rbac or namespace in self._rbac_ready:
            return
        sa = self.cfg.executor_service_account
        labels = {
            "app.kubernetes.io/managed-by": names.MANAGED_BY,
            "app.kubernetes.io/name": "runbook-operator",
        }
        meta = {"name": sa, "labels": labels}
        objects: list[tuple[k.Resource, dict[str, Any]]] = [
            (k.SERVICE_ACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
            (
                k.ROLES,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": meta,
                    "rules": [
                        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}
                    ],
                },
            ),
            (
                k.ROLE_BINDINGS,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": meta,
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": sa,
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
                },
            ),
        ]
        for res, obj in objects:
            self.kube.create_or_get(res, namespace, obj)
        self._rbac_ready.add(namespace)


def _ref(body: Mapping[str, Any]) -> ExecutionRef:
    meta = body["metadata"]
    ns, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
    return ExecutionRef(ns, name, uid, names.execution_id(ns, name, uid))


__all__ = ["Controller", "Ledger", "Outcome"]
