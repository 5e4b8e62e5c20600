"""The imperative shell of one reconcile: fetch, decide (`reconcile`), carry out.

Synchronous (the kopf handlers run it on a fair thread pool). Effects go out in a crash-safe order:
result ConfigMaps, then Jobs and ledger entries side by side (Events right after the ledger),
then Job deletions, the checkpoint of a finished execution, and the status last. Every write is
idempotent or guarded by a resourceVersion, so kopf's at-least-once delivery, an operator
restart between two writes, or a concurrent edit leaves no duplicate Job and no gap in the
ledger (docs/architecture.md walks through it).

Fairness between namespaces: Jobs are created on a pool that serves namespaces in turn
(execution/fair_pool.py), and a namespace's running step Jobs are capped
(execution/job_cap.py): a reconcile starts at most the namespace's free slots, and an execution
held by the cap is woken when a Job of its namespace ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from runbook_engine.audit import AuditChain
from runbook_engine.contract import StepExecutorResult
from runbook_engine.driver import Actors, record
from runbook_engine.model import ExecutionRequest
from runbook_engine.plan import Plan
from runbook_engine.problems import Problem
from runbook_engine.state import ExecutionState
from runbook_engine.timeutil import utcnow
from runbook_operator import kube as k
from runbook_operator import metrics, names
from runbook_operator.config import OperatorConfig
from runbook_operator.execution import approvals, control, pinning
from runbook_operator.execution import rerun as rerun_start
from runbook_operator.execution.bodies import ExecutionBodies
from runbook_operator.execution.children import ChildCache
from runbook_operator.execution.events import KubeEvent, event_manifest, kube_events
from runbook_operator.execution.fair_pool import FairPool
from runbook_operator.execution.job_cap import JobCap, Reservation
from runbook_operator.execution.locks import KeyedLocks
from runbook_operator.execution.pinning import Pinned
from runbook_operator.execution.reconcile import (
    Effects,
    ResultRead,
    World,
    load_state,
    reconcile,
    wanted_reads,
)
from runbook_operator.execution.status import execution_status, with_ready_false
from runbook_operator.execution.view import ExecutionView
from runbook_operator.ledger import continuity
from runbook_operator.ledger.segments import LedgerError
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import executor_identity, image_policy, observe, results

JOB_CREATE_CONCURRENCY = 8
"""Jobs created at once (all reconciles together, namespaces in turn); the client's connection
pool holds more than this."""
log = logging.getLogger("runbook_operator")
MAX_CONFLICT_RETRIES = 5
RETRY_AFTER_ERROR = timedelta(seconds=15)
TAMPERED = "LedgerTampered"
"""Ready=False reason and Event reason of an execution whose ledger someone else rewrote."""
_RBAC_RESOURCES: Mapping[str, k.Resource] = {
    "ServiceAccount": k.SERVICE_ACCOUNTS,
    "Role": k.ROLES,
    "RoleBinding": k.ROLE_BINDINGS,
}


class Ledger(Protocol):
    """What the controller needs of an execution's ledger (runbook_operator.ledger.store)."""

    def load(self) -> AuditChain: ...

    def append(self, entries: Sequence[Mapping[str, Any]]) -> bool: ...

    def write_checkpoint(self, chain: AuditChain, signer: Any, now: datetime) -> dict[str, Any]: ...


LedgerFactory = Callable[[k.Kube, ExecutionRef], Ledger]


@dataclass(frozen=True, slots=True)
class Outcome:
    """After one reconcile: is the execution finished, and when to look again at the latest."""

    done: bool
    wake_at: datetime | None = None


def _nobody(uid: str) -> None:
    """The default waker: a Controller without daemons to wake (tests, a one-off reconcile)."""


@dataclass
class Controller:
    kube: k.Kube
    cfg: OperatorConfig
    ledger_factory: LedgerFactory
    signer: Any = None
    clock: Callable[[], datetime] = utcnow
    children: ChildCache = field(default_factory=ChildCache)
    bodies: ExecutionBodies = field(default_factory=ExecutionBodies)
    """The freshest body of each driven execution (watch, own writes): no GET per reconcile."""
    wake: Callable[[str], None] = _nobody
    """Wakes the daemon of the execution with this uid (set by the operator at start-up)."""
    _pinned: dict[str, Pinned] = field(default_factory=dict)
    _ledgers: dict[str, Ledger] = field(default_factory=dict)
    _rbac_ready: set[str] = field(default_factory=set)
    _taken: dict[str, dict[str, str]] = field(default_factory=dict)
    """uid → result ConfigMap name → why the ConfigMap found under the name of an inline result
    is not that result (someone else's, made first): learnt when storing it (`_apply`)."""
    _locks: KeyedLocks = field(default_factory=KeyedLocks)
    _creators: FairPool = field(
        default_factory=lambda: FairPool(JOB_CREATE_CONCURRENCY, "create-job")
    )
    cap: JobCap = field(init=False)

    def __post_init__(self) -> None:
        self.cap = JobCap(
            self.cfg.max_running_jobs_per_namespace,
            running=self.children.running_jobs,
            wake=lambda uid: self.wake(uid),
        )
        self.children.on_freed = self.cap.capacity_freed

    # -- entry points ----------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str, uid: str) -> Outcome:
        """Drive execution `uid` one step; one reconcile at a time per execution."""
        with self._locks.hold(uid):
            self.bodies.track(uid)  # until it is finished or gone (_forget), or its daemon ends
            return self._retrying(namespace, name, uid, deleting=False)

    def finalize(self, namespace: str, name: str, uid: str) -> None:
        """The execution is being deleted: cancel what runs, seal the ledger, then let go."""
        with self._locks.hold(uid):
            self._retrying(namespace, name, uid, deleting=True)

    def cached(self) -> dict[str, int]:
        """How many executions each cache holds (freed at a terminal phase or deletion)."""
        return {
            "pinned": len(self._pinned),
            "ledgers": len(self._ledgers),
            "locks": len(self._locks),
            "children": self.children.size(),
            "bodies": len(self.bodies),
        }

    # -- one reconcile, retried ----------------------------------------------------------------
    def _retrying(self, namespace: str, name: str, uid: str, *, deleting: bool) -> Outcome:
        """One reconcile, retried from a fresh read when a guarded write meets a Conflict.

        Any other failure (the API unreachable, a damaged ledger, a bug) is logged, shown in the
        execution's Ready condition and retried later: one bad object never stops the operator.
        A finalizer's failure is raised instead, so kopf keeps the finalizer and retries.
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                with metrics.RECONCILE_SECONDS.time():
                    return self._once(namespace, name, uid, deleting=deleting)
            except k.Conflict as exc:
                log.info("conflict on %s/%s, re-reading: %s", namespace, name, exc.message)
                self._distrust(uid)
            except Exception as exc:  # never let one execution take the operator down
                if deleting:
                    raise
                return self._failed(namespace, name, uid, exc)
        if deleting:  # kopf keeps the finalizer and calls again
            raise k.Conflict(409, "Conflict", f"could not finalize {namespace}/{name}")
        return Outcome(done=False, wake_at=self.clock())

    def _failed(self, namespace: str, name: str, uid: str, exc: Exception) -> Outcome:
        log.exception("reconcile of %s/%s failed", namespace, name)
        metrics.API_ERRORS.labels("reconcile").inc()
        self._distrust(uid)
        message = f"{type(exc).__name__}: {exc}"[:1000]
        try:
            view = ExecutionView.of(self._read(namespace, name, uid, fresh=True))
            status = with_ready_false(
                view.status, "ReconcileError", message, view.generation, self.clock()
            )
            self._write_status(view, status)
        except Exception as again:  # reporting is best effort; the log has the first error
            log.info("cannot report the failure on %s/%s: %s", namespace, name, again)
        return Outcome(done=False, wake_at=self.clock() + RETRY_AFTER_ERROR)

    def _read(
        self, namespace: str, name: str, uid: str, *, fresh: bool = False
    ) -> Mapping[str, Any]:
        """The execution's body: the kept copy (watch, own writes) unless it is older than the
        resync interval or `fresh` is asked for; else a GET, which is kept in turn."""
        kept = None if fresh else self.bodies.fresh(uid, self.cfg.resync_seconds)
        if kept is not None:
            return kept
        body = self.kube.get(k.EXECUTIONS, namespace, name)
        self.bodies.saw(body)
        return body

    def _write_status(self, view: ExecutionView, status: Mapping[str, Any]) -> None:
        """Write the execution's status (kube.write_status) and keep what the server stored."""
        stored = k.write_status(self.kube, k.EXECUTIONS, view.body, status)
        if stored is not None:
            self.bodies.saw(stored)

    def _once(self, namespace: str, name: str, uid: str, *, deleting: bool) -> Outcome:
        try:
            # A finalizer reads afresh: a deletion is rare and must see deletionTimestamp.
            view = ExecutionView.of(self._read(namespace, name, uid, fresh=deleting))
        except k.NotFound:
            self._forget(uid)
            return Outcome(done=True)
        if view.ref.uid != uid:  # re-created under the same name: its own daemon drives it
            self._forget(uid)
            return Outcome(done=True)
        if view.deleting and not deleting:
            return Outcome(done=True)  # the finalizer takes over
        if deleting and view.finished:
            outcome = Outcome(done=True)
        else:
            outcome = self._drive(view, deleting=deleting)
        if deleting:
            self._delete_running_jobs(view.ref)
        if outcome.done:
            self._forget(uid)
        return outcome

    def _drive(self, view: ExecutionView, *, deleting: bool) -> Outcome:
        ref, now = view.ref, self.clock()
        pinned = self._pin(view)
        if isinstance(pinned, pinning.Refusal):
            self._refuse(view, pinned, now)
            return Outcome(done=True)
        ledger = self._ledger(ref)
        chain = self._load_own(view, ledger, now)
        if chain is None:
            return Outcome(done=True)
        state = load_state(pinned.plan, view.status, ref.execution_id, now)
        copies: tuple[dict[str, Any], ...] = ()
        if view.spec.get("rerunOf") and rerun_start.is_fresh(state, view.status):
            started = self._rerun_start(view, pinned, now)
            if isinstance(started, pinning.Refusal):
                self._refuse(view, started, now)
                return Outcome(done=True)
            state, copies = started.state, started.configmaps
        observed = self._observe(ref, bool(state.running) or state.status.terminal)
        wanted = wanted_reads(state, observed, ref)
        reads = self._read_results(ref, wanted)
        inline = {r.pointer.configmap: r.pointer for r in wanted if r.inline}
        received, authorized = self._decisions(view, pinned.plan, state, chain)
        # The namespace's turn covers only the decision (pure): what it starts stays reserved
        # until those Jobs are in the cache, so two reconciles never spend the same slot.
        with self.cap.turn(ref.namespace, ref.uid) as turn:
            world = World(
                view,
                pinned,
                chain,
                observed,
                reads,
                now,
                deleting,
                start_budget=turn.free,
                approvals=received,
                authorized=authorized,
            )
            effects = reconcile(world, state, self.cfg)
            turn.took(len(effects.create_jobs), held=effects.held)
        if copies:  # the reused results first: downstream Jobs mount them
            effects = replace(effects, result_configmaps=(*copies, *effects.result_configmaps))
        reservation = self.cap.reservation(ref.namespace, turn)
        try:
            self._apply(view, ledger, chain, effects, now, reservation, inline)
        finally:
            reservation.release()  # what is left: Jobs not made (a failure before them)
        gates = approvals.gates(pinned.plan)
        if gates:
            metrics.approvals_pending(
                ref.namespace, ref.name, gates, approvals.awaiting(pinned.plan, effects.state)
            )
        return Outcome(done=effects.terminal, wake_at=effects.next_wakeup)

    def _rerun_start(
        self, view: ExecutionView, pinned: Pinned, now: datetime
    ) -> rerun_start.RerunStart | pinning.Refusal:
        """Read the parent (object, verified ledger, results of the steps to reuse) and
        prepare the re-run's start, or say why it is refused."""
        request = pinning.parse_request(view.spec)  # the re-run options are in the spec only
        if isinstance(request, pinning.Refusal):
            return request
        assert request.rerun_of is not None
        namespace = view.ref.namespace
        try:
            parent = self.kube.get(k.EXECUTIONS, namespace, request.rerun_of.name)
        except k.NotFound:
            parent = None
        problem = rerun_start.parent_problem(request, parent, namespace)
        if problem is not None or parent is None:
            assert problem is not None
            return problem
        wanted = rerun_start.reused_reads(pinned.plan, request, parent)
        if isinstance(wanted, pinning.Refusal):
            return wanted
        pref = rerun_start.parent_ref(parent)
        try:
            chain = self.ledger_factory(self.kube, pref).load()
        except LedgerError as exc:
            return pinning.Refusal("ParentLedgerTampered", (Problem("spec.rerunOf", f"{exc}"),))
        rewritten = continuity.rewritten(
            chain.entries, (parent.get("status") or {}).get("audit") or {}
        )
        if rewritten is not None:
            return pinning.Refusal(
                "ParentLedgerTampered", (Problem("spec.rerunOf", f"parent's {rewritten}"),)
            )
        read: dict[str, StepExecutorResult | str] = {}
        for sid, cm_name in wanted.items():
            try:
                cm = self.kube.get(k.CONFIGMAPS, namespace, cm_name)
                read[sid] = results.read_configmap(
                    cm, owner_uid=pref.uid, output_limit=self.cfg.max_output_bytes
                )
            except k.NotFound:
                read[sid] = f"the parent's result ConfigMap {cm_name} is gone"
            except results.ResultError as exc:
                read[sid] = str(exc)
        facts = rerun_start.ParentFacts(parent, chain.entries, read)
        return rerun_start.prepare(pinned, request, view.ref, view.spec, facts, now)

    def _decisions(
        self, view: ExecutionView, plan: Plan, state: ExecutionState, chain: AuditChain
    ) -> tuple[tuple[approvals.Received, ...], dict[str, bool]]:
        """The execution's RunbookApprovals (only when its runbook has an APPROVAL step), and
        RBAC's answer for those that need one (no approvers listed: the verb `approve`)."""
        if not approvals.gates(plan):
            return (), {}
        ref = view.ref
        received = approvals.for_execution(self.kube.list(k.APPROVALS, ref.namespace), ref.name)
        authorized = {}
        for r in approvals.to_review(plan, state, received, chain):
            assert r.who is not None
            authorized[r.name] = self.kube.allowed(
                r.who.username, r.who.groups, r.who.uid, approvals.approve_attributes(ref)
            )
        return tuple(received), authorized

    def judge_late(self, namespace: str, body: Mapping[str, Any]) -> None:
        """A RunbookApproval for an execution no daemon drives (finished or absent): refused
        as not waiting, so its author sees why it never counted."""
        execution = str(((body.get("spec") or {}).get("executionRef") or {}).get("name") or "")
        try:
            phase = (self.kube.get(k.EXECUTIONS, namespace, execution).get("status") or {}).get(
                "phase"
            )
        except k.NotFound:
            phase = None
        status = approvals.late_verdict(body, execution, phase, self.clock())
        if status is not None:
            self._write_verdict(namespace, str(body["metadata"]["name"]), status)

    def _write_verdict(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            self.kube.patch(
                k.APPROVALS, namespace, name, {"status": dict(status)}, subresource="status"
            )
        except k.NotFound:
            return

    def _distrust(self, uid: str) -> None:
        """After a Conflict or a failure the kept ledger and body may be stale: the next
        reconcile reads both from the server."""
        self._ledgers.pop(uid, None)
        self.bodies.drop(uid)

    def _forget(self, uid: str) -> None:
        """Free what is kept for an execution that is finished or gone."""
        self._pinned.pop(uid, None)
        self._ledgers.pop(uid, None)
        self.cap.forget(uid)
        self.children.forget(uid)
        self.bodies.forget(uid)
        self._taken.pop(uid, None)

    # -- fetching ------------------------------------------------------------------------------
    def _pin(self, view: ExecutionView) -> Pinned | pinning.Refusal:
        ref = view.ref
        cached = self._pinned.get(ref.uid)
        if cached is not None:
            return cached
        cm_name = names.definition_configmap(ref.name, ref.uid)
        try:
            cm = self.kube.get(k.CONFIGMAPS, ref.namespace, cm_name)
        except k.NotFound:
            if view.pinned_before:
                reason = f"the pinned definition ConfigMap {cm_name} was deleted"
                return pinning.Refusal("DefinitionLost", (Problem("status.definitionRef", reason),))
            made = self._make_pin(view)
            if isinstance(made, pinning.Refusal):
                return made
            cm, _ = self.kube.create_or_get(k.CONFIGMAPS, ref.namespace, made)
        try:
            pinned = pinning.pinned_from_configmap(cm)
        except (ValueError, KeyError) as exc:
            return pinning.Refusal("DefinitionLost", (Problem("status.definitionRef", str(exc)),))
        self._pinned[ref.uid] = pinned
        return pinned

    def _make_pin(self, view: ExecutionView) -> dict[str, Any] | pinning.Refusal:
        request = pinning.parse_request(view.spec)
        if isinstance(request, pinning.Refusal):
            return request
        if self.cfg.require_identity and view.stamps.creator is None:
            return pinning.unauthenticated()
        if request.rerun_of is not None:
            return self._pin_rerun(view, request)
        try:
            runbook = self.kube.get(k.RUNBOOKS, view.ref.namespace, request.runbook_ref.name)
        except k.NotFound:
            runbook = None
        return pinning.pin(runbook, request, view.ref, self.cfg.image_policy)

    def _pin_rerun(
        self, view: ExecutionView, request: ExecutionRequest
    ) -> dict[str, Any] | pinning.Refusal:
        """A re-run pins the parent's definition (or, with `latest`, the Runbook as it is now)
        and, without spec.input, the parent's input."""
        assert request.rerun_of is not None
        namespace = view.ref.namespace
        try:
            parent = self.kube.get(k.EXECUTIONS, namespace, request.rerun_of.name)
        except k.NotFound:
            parent = None
        problem = rerun_start.parent_problem(request, parent, namespace)
        if problem is not None or parent is None:
            assert problem is not None
            return problem
        pref = rerun_start.parent_ref(parent)
        cm_name = names.definition_configmap(pref.name, pref.uid)
        try:
            parent_pin = pinning.pinned_from_configmap(
                self.kube.get(k.CONFIGMAPS, namespace, cm_name)
            )
        except (k.NotFound, ValueError, KeyError) as exc:
            reason = f"the parent's pinned definition {cm_name} cannot be read: {exc}"
            return pinning.Refusal("ParentDefinitionLost", (Problem("spec.rerunOf", reason),))
        effective = rerun_start.effective_request(request, view.spec, parent_pin)
        runbook: dict[str, Any] | None
        if request.latest:
            try:
                runbook = self.kube.get(k.RUNBOOKS, namespace, request.runbook_ref.name)
            except k.NotFound:
                runbook = None
        else:
            runbook = rerun_start.pinned_runbook(parent_pin, request.runbook_ref.name)
        return pinning.pin(runbook, effective, view.ref, self.cfg.image_policy)

    def _ledger(self, ref: ExecutionRef) -> Ledger:
        ledger = self._ledgers.get(ref.uid)
        if ledger is None:
            ledger = self._ledgers[ref.uid] = self.ledger_factory(self.kube, ref)
        return ledger

    def _load_own(self, view: ExecutionView, ledger: Ledger, now: datetime) -> AuditChain | None:
        """The stored chain, if it extends what this operator recorded (status.audit and its
        last checkpoint); else the execution is stopped as tampered and None returned: the
        operator never extends or signs a chain it did not write."""
        chain = ledger.load()
        problem = continuity.rewritten(chain.entries, view.status.get("audit") or {})
        if problem is None:
            return chain
        log.error("ledger of %s is not the one written: %s", view.ref.execution_id, problem)
        metrics.API_ERRORS.labels("ledger_tampered").inc()
        self._ledgers.pop(view.ref.uid, None)
        event = KubeEvent("Warning", TAMPERED, problem, f"tampered/{names.short_hash(problem)}")
        self._post_events(view, [event], now)
        status = with_ready_false(view.status, TAMPERED, problem, view.generation, now)
        self._write_status(view, status)
        return None

    def _observe(self, ref: ExecutionRef, needed: bool) -> observe.Observed:
        """The execution's Jobs and pods, classified once. From the watch-fed cache; listed
        afresh when it is older than the resync interval, or when it shows a Job without the
        pod it ran (the pod watch may be behind the Job watch)."""
        if not needed:
            return observe.NOTHING
        cached = self.children.get(ref.uid, max_age=self.cfg.resync_seconds)
        if cached is not None:
            seen = observe.observe_children(ref.uid, *cached)
            if not seen.pods_unseen:
                return seen
            # The Job watch may be ahead of the pod watch (a Job marked Complete before its
            # pod's events arrive): only a fresh LIST may say a pod is gone.
        selector = f"{names.EXECUTION_UID_LABEL}={ref.uid}"
        jobs = self.kube.list(k.JOBS, ref.namespace, selector)
        pods = self.kube.list(k.PODS, ref.namespace, selector) if jobs else []
        self.children.prime(ref.uid, jobs, pods, ref.namespace)
        return observe.observe_children(ref.uid, jobs, pods)

    def _read_results(
        self, ref: ExecutionRef, wanted: Sequence[ResultRead]
    ) -> dict[str, StepExecutorResult | str]:
        """Results the pods point to, read only from their attempt's ConfigMap, owned by the
        execution, and never inflated past the operator's output cap (a gzip bomb fails its
        attempt instead of the operator).

        An inline result is not read before it is stored (that was a GET per attempt): storing
        it finds out whether its name is taken, and then the reconcile is redone with the
        reason (`_taken`), so the attempt fails instead of the operator."""
        out: dict[str, StepExecutorResult | str] = {}
        for read in wanted:
            if read.inline:
                why = self._taken.get(ref.uid, {}).get(read.pointer.configmap)
                if why is not None:
                    out[read.job] = why
                continue
            try:
                cm = self.kube.get(k.CONFIGMAPS, ref.namespace, read.pointer.configmap)
                out[read.job] = results.read_configmap(
                    cm, read.pointer, owner_uid=ref.uid, output_limit=self.cfg.max_output_bytes
                )
            except k.NotFound:
                if not read.inline:
                    out[read.job] = f"result ConfigMap {read.pointer.configmap} not found"
            except results.ResultError as exc:
                out[read.job] = str(exc)
        return out

    # -- acting ----------------------------------------------------------------------------------
    def _apply(
        self,
        view: ExecutionView,
        ledger: Ledger,
        chain: AuditChain,
        effects: Effects,
        now: datetime,
        reservation: Reservation,
        inline: Mapping[str, results.Pointer],
    ) -> None:
        ref = view.ref
        # Result ConfigMaps before the Jobs whose pods mount them.
        for cm in effects.result_configmaps:
            existing, created = self.kube.create_or_get(k.CONFIGMAPS, ref.namespace, cm)
            if not created and not results.same_result(existing, cm):  # made meanwhile
                self._result_name_taken(ref, cm["metadata"]["name"], existing, inline)
        if effects.create_jobs:
            self._ensure_executor_identity(ref.namespace)
        # Jobs side by side (a fan-out makes hundreds), and the ledger meanwhile: the next step
        # starts one round trip after its dependency ended, not three. A Job made before its
        # STEP_STARTED entry is safe: its name is deterministic, so a replay after a crash
        # adopts it and records the entry then. The creators serve namespaces in turn: a
        # fan-out of 1,000 Jobs here does not hold back another namespace's first Job.
        creating = [
            self._creators.submit(ref.namespace, self._create_job, ref, job, reservation)
            for job in effects.create_jobs
        ]
        sealed = False
        if effects.entries:
            sealed = ledger.append(effects.entries)
            # Right after the ledger: a replay after a lost status write has no new entries,
            # so Events posted later in this reconcile would never be posted at all.
            self._post_events(view, effects.events, now)
        self._post_events(view, effects.notices, now)  # no entry behind them: best effort
        for done in creating:
            done.result()
        for name in effects.delete_jobs:
            self.kube.delete(k.JOBS, ref.namespace, name)
        # After the ledger: a verdict is what the ledger recorded.
        for name, verdict in effects.approval_verdicts:
            self._write_verdict(ref.namespace, name, verdict)
        status = effects.status
        if effects.terminal or sealed or self._checkpoint_due(chain, view.status):
            status = self._checkpoint(ledger, chain, status, now)
        self._write_status(view, status)
        metrics.observe(effects)

    def _result_name_taken(
        self,
        ref: ExecutionRef,
        name: str,
        existing: Mapping[str, Any],
        inline: Mapping[str, results.Pointer],
    ) -> None:
        """A ConfigMap with other content already holds the name of a result to store. For an
        inline result nothing is written yet in this reconcile: remember why and redo it
        (Conflict), so that attempt fails with the reason. Anything else is an error."""
        pointer = inline.get(name)
        if pointer is None:
            raise results.ResultError(f"{name} exists with other content")
        try:
            results.read_configmap(
                existing, pointer, owner_uid=ref.uid, output_limit=self.cfg.max_output_bytes
            )
        except results.ResultError as exc:
            self._taken.setdefault(ref.uid, {})[name] = str(exc)
            raise k.Conflict(409, "Conflict", f"{name}: {exc}") from None
        raise results.ResultError(f"{name} exists with other content")

    def _checkpoint_due(self, chain: AuditChain, previous: Mapping[str, Any]) -> bool:
        """At least every `checkpoint_every` entries a signed checkpoint, so a rollback of the
        ledger to an older consistent prefix is caught between two of them."""
        signed = ((previous.get("audit") or {}).get("checkpoint") or {}).get("count") or 0
        return len(chain.entries) - int(signed) >= self.cfg.checkpoint_every

    def _create_job(
        self, ref: ExecutionRef, manifest: Mapping[str, Any], reservation: Reservation
    ) -> None:
        """Create one Job; its slot of the namespace's cap is let go once the cache counts it
        (or when it is not made)."""
        try:
            self._create_one_job(ref, manifest)
        finally:
            reservation.release(1)

    def _create_one_job(self, ref: ExecutionRef, manifest: Mapping[str, Any]) -> None:
        # Backstop: a policy tightened after the execution was pinned. The attempt is then
        # lost with the policy's reason (reconcile.observe names it).
        if why := image_policy.manifest_problem(manifest, self.cfg.image_policy):
            log.warning("not creating Job %s: %s", manifest["metadata"]["name"], why)
            return
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

    def _delete_running_jobs(self, ref: ExecutionRef) -> None:
        selector = f"{names.EXECUTION_UID_LABEL}={ref.uid}"
        for name in control.jobs_to_delete(self.kube.list(k.JOBS, ref.namespace, selector)):
            self.kube.delete(k.JOBS, ref.namespace, name)

    def _checkpoint(
        self, ledger: Ledger, chain: AuditChain, status: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        if self.signer is None:
            return status
        recorded = (status.get("audit") or {}).get("checkpoint") or {}
        if recorded.get("head") == chain.head and recorded.get("count") == len(chain.entries):
            return status
        checkpoint = ledger.write_checkpoint(chain, self.signer, now)
        return {**status, "audit": {**status["audit"], "checkpoint": checkpoint}}

    def _post_events(self, view: ExecutionView, events: Sequence[KubeEvent], now: datetime) -> None:
        for event in events:
            try:
                self.kube.create_or_get(
                    k.EVENTS, view.ref.namespace, event_manifest(view, event, now)
                )
            except k.KubeError as exc:  # Events are best effort; the ledger is the record
                log.info("cannot post Event %s: %s", event.reason, exc)

    def _refuse(self, view: ExecutionView, refusal: pinning.Refusal, now: datetime) -> None:
        if view.phase == "FAILED":
            return
        ref = view.ref
        parsed = pinning.parse_request(view.spec)
        request = None if isinstance(parsed, pinning.Refusal) else parsed
        ledger = self._ledger(ref)
        chain = self._load_own(view, ledger, now)
        if chain is None:
            return
        actors = Actors(
            self.cfg.actor,
            request.started_by if request else None,
            requester=view.stamps.creator,
            trigger=view.stamps.trigger,
        )
        entries = record(chain, pinning.refusal_events(refusal, request), actors, now)
        if entries:
            ledger.append(entries)
            self._post_events(view, kube_events(entries), now)
        state = pinning.refused_state(ref, view.runbook_name, refusal, now)
        status = execution_status(
            state,
            chain,
            ref=ref,
            generation=view.generation,
            now=now,
            previous=view.status,
            extra={},
            failure_reason=refusal.reason,
        )
        status = self._checkpoint(ledger, chain, status, now)
        self._write_status(view, status)

    def _ensure_executor_identity(self, namespace: str) -> None:
        if not self.cfg.manage_executor_rbac or namespace in self._rbac_ready:
            return
        for obj in executor_identity.objects(namespace, self.cfg.executor_service_account):
            self.kube.create_or_get(_RBAC_RESOURCES[obj["kind"]], namespace, obj)
        self._rbac_ready.add(namespace)


__all__ = ["JOB_CREATE_CONCURRENCY", "Controller", "Ledger", "Outcome"]
