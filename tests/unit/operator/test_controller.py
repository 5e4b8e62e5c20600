"""The Controller (the imperative shell of a reconcile) over an in-memory API server (fakekube).

Real LedgerStore, real Signer, real Runbook and RunbookExecution objects; only the API server
is a fake, so what is checked here is the shell itself: the order its effects go out in, the
retry from a fresh read after a Conflict, the refusal of an execution that cannot start, the
finalizer, a crash between any two writes, and failure reporting. tests/e2e/test_operator.py
runs the same controller on a real API server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runbook_engine.audit import verify
from runbook_engine.contract import StepExecutorResult
from runbook_operator import kube as k
from runbook_operator import names
from runbook_operator.config import OperatorConfig
from runbook_operator.execution import control
from runbook_operator.execution.children import ChildCache
from runbook_operator.execution.controller import (
    MAX_CONFLICT_RETRIES,
    Controller,
    Outcome,
)
from runbook_operator.execution.fair_pool import FairPool
from runbook_operator.execution.reconcile import THROTTLED
from runbook_operator.kube import STATUS_RETRIES
from runbook_operator.ledger.checkpoint import Signer, checkpoint_problem, load_public_pem
from runbook_operator.ledger.find import pinned_key
from runbook_operator.ledger.segments import (
    CHECKPOINT_KEY,
    ENTRIES_KEY,
    all_entries,
    ordered,
    selector,
)
from runbook_operator.ledger.store import LedgerStore
from runbook_operator.ledger.verify import verify_ledger
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import results

from .fakekube import Call, Crash, FakeKube, selected
from .kubefakes import REF, execution, job, pod, pointer_message, terminated

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CFG = OperatorConfig()
SIGNER = Signer.generate()
NS, NAME, UID = REF.namespace, REF.name, REF.uid
CHAIN = ("a", "b", "c")
TIMEOUT = 10


# -- the world -----------------------------------------------------------------------------------
@dataclass
class Clock:
    """Fixed time that the test moves on by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


class InlineExecutor(FairPool):
    """Creates Jobs on the calling thread, so the order of calls is the same in every run
    (a FairPool by type, as the Controller's field asks; it never starts a thread)."""

    def __init__(self) -> None:
        super().__init__(1, "inline")

    def submit(self, key: str, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # a Crash too: the Future carries it, as a thread's would
            done.set_exception(exc)
        return done


def step(sid: str, *deps: str) -> dict[str, Any]:
    return {"id": sid, "actionType": "TRANSFORM", "dependsOn": list(deps)}


def chain_steps(*ids: str) -> list[dict[str, Any]]:
    return [step(sid, *ids[:i][-1:]) for i, sid in enumerate(ids)]


def runbook(steps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": "rb"},
        "spec": {"steps": list(steps)},
    }


def cluster(
    steps: Sequence[dict[str, Any]] | None = None, spec: dict[str, Any] | None = None
) -> FakeKube:
    """A namespace with the Runbook `rb` (none if `steps` is None) and the execution REF."""
    kube = FakeKube()
    if steps is not None:
        kube.put(k.RUNBOOKS, NS, runbook(steps))
    kube.put(k.EXECUTIONS, NS, execution(spec))
    return kube


def controller(
    kube: FakeKube,
    clock: Clock,
    *,
    creators: FairPool | None = None,
    cfg: OperatorConfig = CFG,
    wake: Callable[[str], None] | None = None,
) -> Controller:
    """A new operator process: empty caches, fed by the watch of Jobs and pods."""
    ctrl = Controller(
        kube,
        cfg,
        ledger_factory=lambda kube, ref: LedgerStore(kube, ref),
        signer=SIGNER,
        clock=clock,
        children=ChildCache(clock=lambda: 0.0),
        _creators=creators or InlineExecutor(),
    )
    if wake is not None:
        ctrl.wake = wake
    kube.watchers.append(ctrl.children.observe)
    return ctrl


def ok(**output: Any) -> StepExecutorResult:
    return StepExecutorResult(success=True, output=output)


def job_of(sid: str, attempt: int) -> str:
    return names.job_name(NAME, UID, sid, attempt)


def finish(
    kube: FakeKube,
    sid: str,
    attempt: int,
    result: StepExecutorResult | None = None,
    *,
    inline: bool = False,
) -> None:
    """The step pod ends: it stores its result ConfigMap (or, `inline`, puts the whole result
    in its termination message) and the Job controller marks the Job Complete."""
    result = result or ok(step=sid)
    name = job_of(sid, attempt)
    if inline:
        message = json.dumps(result.wire())
    else:
        raw, sha = results.encode(result)
        cm = names.result_configmap(name)
        owner = REF.owner(controller=False)  # as the step pod writes it
        kube.put(k.CONFIGMAPS, NS, results.configmap(cm, raw, sha, {}, owner))
        message = pointer_message(results.Pointer(cm, sha, len(raw)))
    made = kube.stored(k.JOBS, NS, name)
    assert made is not None, f"no Job {name}"
    state = terminated(message, 0 if result.success else 1)
    kube.put(k.PODS, NS, pod(sid, attempt, state, spec=made["spec"]["template"]["spec"]))

    def complete(job: dict[str, Any]) -> None:
        job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}

    kube.edit(k.JOBS, NS, name, complete)


def finish_started(kube: FakeKube) -> list[str]:
    """Every Job that has no pod yet runs its step to success (the kubelet, in one go)."""
    done = []
    for made in kube.objects_of(k.JOBS, NS):
        name = made["metadata"]["name"]
        if kube.stored(k.PODS, NS, f"{name}-abcde") is None:
            labels = made["metadata"]["labels"]
            finish(kube, labels[names.STEP_LABEL], int(labels[names.ATTEMPT_LABEL]))
            done.append(name)
    return done


def status(kube: FakeKube) -> dict[str, Any]:
    body = kube.stored(k.EXECUTIONS, NS, NAME)
    assert body is not None
    return dict(body.get("status") or {})


def segments(kube: FakeKube) -> list[Any]:
    """The execution's ledger segments as stored (read past the fake's call log)."""
    wanted = selector(uid=UID)
    found = kube.objects_of(k.CONFIGMAPS, NS)
    return ordered([cm for cm in found if selected(cm["metadata"].get("labels") or {}, wanted)])


def ledger(kube: FakeKube) -> list[dict[str, Any]]:
    return list(all_entries(segments(kube)))


def event_types(kube: FakeKube) -> list[str]:
    return [str(e["eventType"]) for e in ledger(kube)]


def steps_of(kube: FakeKube) -> dict[str, str]:
    return {s["stepId"]: s["status"] for s in status(kube).get("steps", [])}


def condition(kube: FakeKube, kind: str) -> dict[str, Any]:
    found = [c for c in status(kube).get("conditions", []) if c["type"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} conditions in {status(kube)}"
    return dict(found[0])


def assert_ledger_sound(kube: FakeKube, *, checkpoint: bool = False) -> None:
    """The ledger verifies (hashes, links, no duplicate logId), its segments and signed
    checkpoints check out, and the execution's status.audit names exactly its head."""
    entries = ledger(kube)
    chain = verify(entries, execution_id=REF.execution_id)
    assert chain.valid, chain.error
    ids = [e["logId"] for e in entries]
    assert len(ids) == len(set(ids)), "a logId is stored twice"
    audit = status(kube)["audit"]
    assert (audit["count"], audit["head"]) == (len(entries), chain.head), (
        f"status.audit says {audit['count']} entries, the ledger holds {len(entries)}"
    )
    report = verify_ledger(
        REF,
        segments(kube),
        keys=pinned_key(SIGNER.public_pem),
        status_audit=audit,
        require_checkpoint=checkpoint,
    )
    assert report.ok, report.headline()


# -- what the calls say ----------------------------------------------------------------------------
def is_ledger(call: Call) -> bool:
    return call.resource == "configmaps" and "-ledger-" in str(call.name)


def is_status(call: Call) -> bool:
    return (
        call.verb == "patch"
        and call.resource == "runbookexecutions"
        and call.subresource == "status"
    )


def is_result_cm(call: Call) -> bool:
    return call.resource == "configmaps" and str(call.name).endswith("-result")


def is_checkpoint(call: Call) -> bool:
    return is_ledger(call) and CHECKPOINT_KEY in ((call.body or {}).get("data") or {})


def appends(calls: Sequence[Call]) -> list[int]:
    """Positions of the ledger writes that add entries (not those that only store a checkpoint)."""
    out: list[int] = []
    last: dict[str | None, str] = {}
    for i, c in enumerate(calls):
        if is_ledger(c) and c.write and c.body is not None:
            text = c.body["data"].get(ENTRIES_KEY, "")
            before = last.get(c.name)
            if (before is None and not is_checkpoint(c)) or (before is not None and text != before):
                out.append(i)
            last[c.name] = text
    return out


def writes(calls: Sequence[Call]) -> list[Call]:
    return [c for c in calls if c.write]


def where(calls: Sequence[Call], test: Callable[[Call], bool]) -> list[int]:
    return [i for i, c in enumerate(calls) if test(c)]


def describe(calls: Sequence[Call]) -> list[str]:
    return [
        f"{c.verb} {c.resource}{'/' + c.subresource if c.subresource else ''} {c.name} {c.outcome}"
        for c in calls
    ]


# == 1. the order of effects =====================================================================
def assert_effect_order(calls: Sequence[Call]) -> None:
    """One reconcile's writes: result ConfigMaps before Jobs, the ledger before Events, a
    checkpoint before the status that records it, and the status last of all."""
    w = writes(calls)
    shown = describe(w)
    results_at, jobs_at = where(w, is_result_cm), where(w, lambda c: c.resource == "jobs")
    ledger_at, events_at = where(w, is_ledger), where(w, lambda c: c.resource == "events")
    appended = appends(w)
    status_at = where(w, is_status)
    if results_at and jobs_at:
        assert max(results_at) < min(jobs_at), f"a Job before the result it mounts: {shown}"
    if appended and events_at:
        assert max(appended) < min(events_at), f"an Event before its ledger entry: {shown}"
    assert status_at == [len(w) - 1], f"the status is not the last write: {shown}"
    if ledger_at:
        assert max(ledger_at) < status_at[0], f"status before the ledger: {shown}"
    if jobs_at:
        assert max(jobs_at) < status_at[0], f"status before the Jobs: {shown}"


def test_one_reconcile_writes_results_jobs_ledger_events_then_status() -> None:
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)

    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)
    first = kube.since(mark)
    assert_effect_order(first)
    kinds = [c.resource for c in writes(first)]
    assert kinds.index("configmaps") < kinds.index("jobs")  # the pinned definition first
    assert {"jobs", "events"} <= set(kinds) and any(is_ledger(c) for c in first)

    # a's pod ends with its whole result in its termination message: the operator stores it
    # in a ConfigMap that b's Job mounts, in the same reconcile that creates b's Job
    finish(kube, "a", 1, ok(x=1), inline=True)
    clock.tick()
    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)
    second = kube.since(mark)
    assert_effect_order(second)
    assert [c.name for c in writes(second) if is_result_cm(c)] == [
        names.result_configmap(job_of("a", 1))
    ]
    assert [c.name for c in writes(second) if c.resource == "jobs"] == [job_of("b", 1)]

    finish(kube, "b", 1)
    clock.tick()
    mark = kube.mark()
    assert ctrl.reconcile(NS, NAME, UID).done
    last = kube.since(mark)
    assert_effect_order(last)
    w = writes(last)
    (cp_at,) = where(w, is_checkpoint)
    assert cp_at < where(w, is_status)[0], describe(w)
    stored_cp = json.loads(w[cp_at].body["data"][CHECKPOINT_KEY])
    assert w[-1].body["status"]["audit"]["checkpoint"] == stored_cp
    assert status(kube)["phase"] == "COMPLETED"
    assert_ledger_sound(kube, checkpoint=True)


def test_a_fan_out_on_the_job_thread_pool_still_writes_the_status_last() -> None:
    kube, clock = cluster([step(f"s{i}") for i in range(6)]), Clock()
    pool = FairPool(4, "test-create-job")
    try:
        ctrl = controller(kube, clock, creators=pool)
        mark = kube.mark()
        ctrl.reconcile(NS, NAME, UID)
    finally:
        pool.shutdown()
    calls = kube.since(mark)
    assert_effect_order(calls)
    assert sorted(kube.created(k.JOBS)) == sorted(job_of(f"s{i}", 1) for i in range(6))


# == 2. conflict retry ==========================================================================
def running_b(
    steps: Sequence[dict[str, Any]] = tuple(chain_steps("a", "b")),
) -> tuple[FakeKube, Clock, Controller]:
    """Reconciled once (a's Job made); a has just finished."""
    kube, clock = cluster(steps), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    finish(kube, "a", 1)
    clock.tick()
    return kube, clock, ctrl


def test_a_conflict_on_the_ledger_append_redoes_the_reconcile_from_a_fresh_read() -> None:
    kube, _, ctrl = running_b()
    kube.fail("replace", k.CONFIGMAPS, name=lambda n: "-ledger-" in str(n))
    mark = kube.mark()
    outcome = ctrl.reconcile(NS, NAME, UID)
    calls = kube.since(mark)
    (refused,) = [i for i, c in enumerate(calls) if c.outcome == "Conflict"]
    assert is_ledger(calls[refused])
    again = calls[refused + 1 :]
    assert any(c.verb == "get" and c.resource == "runbookexecutions" for c in again)
    assert any(c.verb == "list" and c.selector == selector(uid=UID) for c in again)
    assert not outcome.done
    assert kube.created(k.JOBS) == [job_of("a", 1), job_of("b", 1)]
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "RUNNING"}
    assert event_types(kube).count("STEP_STARTED") == 2
    assert_ledger_sound(kube)


def test_a_status_changed_by_a_second_operator_is_retried_with_a_fresh_ledger() -> None:
    """An old operator pod (a rolling update) advances the execution between our ledger
    append and our status write: our status write meets a Conflict, and the retry must read
    the ledger again, or it writes a status.audit that misses the other pod's entries."""
    kube, clock, ctrl = running_b(tuple(chain_steps(*CHAIN)))
    other = controller(kube, clock)

    def second_operator(kube: FakeKube) -> None:
        other.reconcile(NS, NAME, UID)  # records what we just did (no new entries)
        finish(kube, "b", 1)
        other.reconcile(NS, NAME, UID)  # records b's end and c's start: entries new to us

    kube.meanwhile("patch", k.EXECUTIONS, second_operator, subresource="status")
    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)
    calls = kube.since(mark)
    assert_ledger_sound(kube)
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "RUNNING"}
    assert kube.created(k.JOBS) == [job_of(s, 1) for s in CHAIN]
    # the other's two status writes, then ours refused; our retry finds nothing left to write
    assert [c.outcome for c in calls if is_status(c)] == ["ok", "ok", "Conflict"], describe(calls)


@pytest.mark.parametrize("change", ["metadata", "spec"])
def test_a_status_conflict_from_a_metadata_or_spec_change_rewrites_only_the_status(
    change: str,
) -> None:
    kube, _, ctrl = running_b()

    def someone_patches(kube: FakeKube) -> None:
        def edit(body: dict[str, Any]) -> None:
            if change == "metadata":
                body["metadata"].setdefault("annotations", {})["kopf.zalando.org/x"] = "1"
            else:
                body["spec"]["paused"] = True

        kube.edit(k.EXECUTIONS, NS, NAME, edit)

    kube.meanwhile("patch", k.EXECUTIONS, someone_patches, subresource="status")
    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)
    calls = kube.since(mark)
    shown = describe(calls)
    assert [c.outcome for c in calls if is_status(c)] == ["Conflict", "ok"], shown
    guarded = [c.body["metadata"]["resourceVersion"] for c in calls if is_status(c)]
    assert guarded[0] != guarded[1]  # the second patch carries the fresh resourceVersion
    (conflict,) = [i for i, c in enumerate(calls) if c.outcome == "Conflict"]
    after = calls[conflict + 1 :]
    assert [(c.verb, c.resource) for c in after] == [
        ("get", "runbookexecutions"),
        ("patch", "runbookexecutions"),
    ], f"the reconcile was redone: {shown}"
    assert [c.name for c in calls if c.resource == "jobs" and c.write] == [job_of("b", 1)]
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "RUNNING"}
    assert_ledger_sound(kube)


@pytest.mark.parametrize("where_", ["status", "ledger"])
def test_conflicts_that_never_stop_give_up_after_max_retries(where_: str) -> None:
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    if where_ == "status":
        kube.fail("patch", k.EXECUTIONS, times=None, subresource="status")
    else:
        kube.fail("create", k.CONFIGMAPS, times=None, name=lambda n: "-ledger-" in str(n))
    mark = kube.mark()
    outcome = ctrl.reconcile(NS, NAME, UID)
    assert outcome == Outcome(done=False, wake_at=T0)
    calls = kube.since(mark)
    reads = [c for c in calls if c.verb == "get" and c.resource == "runbookexecutions"]
    refused = [c for c in calls if c.outcome == "Conflict"]
    if where_ == "status":
        assert len(refused) == MAX_CONFLICT_RETRIES * STATUS_RETRIES
        # each round: one fresh read, then one re-read after each refused patch
        assert len(reads) == MAX_CONFLICT_RETRIES * (1 + STATUS_RETRIES)
    else:
        assert len(refused) == len(reads) == MAX_CONFLICT_RETRIES
    assert kube.created(k.JOBS) == [job_of("a", 1)]  # adopted on every retry, made once
    assert status(kube) == {}
    assert ctrl.cached()["locks"] == 0


# == 3. refusal ==================================================================================
REFUSALS = {
    "missing runbook": (None, {}, "RunbookNotFound", "spec.runbookRef.name"),
    "invalid runbook": ([step("a", "nope")], {}, "InvalidRunbook", "Runbook rb: "),
    "invalid spec": (
        chain_steps("a"),
        {"maxParallelSteps": 0},
        "InvalidSpec",
        "spec.maxParallelSteps",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_an_execution_that_cannot_start_ends_failed_once_with_a_signed_ledger(case: str) -> None:
    steps, spec, reason, field_ = REFUSALS[case]
    kube, clock = cluster(steps, spec), Clock()
    ctrl = controller(kube, clock)
    assert ctrl.reconcile(NS, NAME, UID).done
    assert status(kube)["phase"] == "FAILED"
    ready = condition(kube, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert field_ in ready["message"], ready["message"]
    assert event_types(kube) == ["EXECUTION_REJECTED", "EXECUTION_FAILED"]
    assert ledger(kube)[0]["details"]["reason"] == reason
    checkpoint = status(kube)["audit"]["checkpoint"]
    assert checkpoint["count"] == 2
    key = load_public_pem(SIGNER.public_pem)
    assert checkpoint_problem(checkpoint, key, execution_id=REF.execution_id) is None
    assert_ledger_sound(kube, checkpoint=True)
    assert kube.created(k.JOBS) == []
    assert [c.resource for c in kube.writes() if c.resource == "events"] == ["events"] * 2
    assert ctrl.cached() == {"pinned": 0, "ledgers": 0, "locks": 0, "children": 0, "bodies": 0}

    for again in (ctrl, controller(kube, clock)):  # the same process, and after a restart
        clock.tick()
        mark = kube.mark()
        assert again.reconcile(NS, NAME, UID).done
        assert writes(kube.since(mark)) == [], describe(kube.since(mark))


# == 4. the finalizer ============================================================================
def delete_execution(kube: FakeKube) -> None:
    def mark_deleted(body: dict[str, Any]) -> None:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:10:00Z"
        body["metadata"]["finalizers"] = ["runbook-operator.dev/finalizer"]

    kube.edit(k.EXECUTIONS, NS, NAME, mark_deleted)


def test_deleting_a_running_execution_cancels_it_and_deletes_only_unfinished_jobs() -> None:
    kube, clock, ctrl = running_b()
    ctrl.reconcile(NS, NAME, UID)  # b's Job made; a's is finished
    delete_execution(kube)
    ctrl.bodies.saw(dict(kube.get(k.EXECUTIONS, NS, NAME)))  # the watch delivers the deletion
    clock.tick()
    mark = kube.mark()
    assert ctrl.reconcile(NS, NAME, UID).done  # a reconcile leaves it to the finalizer
    assert writes(kube.since(mark)) == []

    ctrl.finalize(NS, NAME, UID)
    calls = kube.since(mark)
    deleted = [c.name for c in calls if c.verb == "delete"]
    assert set(deleted) == {job_of("b", 1)}, describe(calls)
    assert kube.stored(k.JOBS, NS, job_of("a", 1)) is not None
    assert kube.stored(k.JOBS, NS, job_of("b", 1)) is None
    (cancelled,) = [e for e in ledger(kube) if e["eventType"] == "EXECUTION_CANCELLED"]
    assert cancelled["actorId"] == control.DELETE_ACTOR == "kubectl-delete (finalizer)"
    assert status(kube)["phase"] == "CANCELLED"
    assert any(is_checkpoint(c) for c in calls)
    assert_ledger_sound(kube, checkpoint=True)
    assert ctrl.cached() == {"pinned": 0, "ledgers": 0, "locks": 0, "children": 0, "bodies": 0}


def test_deleting_a_finished_execution_only_deletes_jobs_still_running() -> None:
    kube, clock = cluster([step("a")]), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    finish(kube, "a", 1)
    assert ctrl.reconcile(NS, NAME, UID).done
    stray = job_of("a", 2)  # e.g. made by a reconcile whose status write was lost
    kube.put(k.JOBS, NS, job("a", 2))
    delete_execution(kube)
    mark = kube.mark()
    ctrl.finalize(NS, NAME, UID)
    assert [(c.verb, c.name) for c in writes(kube.since(mark))] == [("delete", stray)]
    assert status(kube)["phase"] == "COMPLETED"


@pytest.mark.parametrize(
    "fault",
    [
        ("patch", k.EXECUTIONS, k.Conflict(409, "Conflict", "again"), "status"),
        ("get", k.EXECUTIONS, k.KubeError(503, "ServiceUnavailable", "etcd"), None),
    ],
)
def test_a_finalizer_that_cannot_finish_raises_so_kopf_keeps_the_finalizer(fault: Any) -> None:
    verb, res, error, sub = fault
    kube, _, ctrl = running_b()
    ctrl.reconcile(NS, NAME, UID)
    delete_execution(kube)
    kube.fail(verb, res, error=error, times=None, subresource=sub)
    with pytest.raises(type(error)):
        ctrl.finalize(NS, NAME, UID)
    assert status(kube)["phase"] == "RUNNING"
    assert ctrl.cached()["locks"] == 0


# == 5. a crash between any two writes ===========================================================
@dataclass
class Run:
    """Reconciles until the execution is done, the kubelet finishing each Job in between."""

    kube: FakeKube = field(default_factory=lambda: cluster(chain_steps(*CHAIN)))
    clock: Clock = field(default_factory=Clock)
    crashes: int = 0

    def restart(self) -> Controller:
        self.kube.watchers.clear()
        self.kube.revive()
        return controller(self.kube, self.clock)

    def to_the_end(self, max_rounds: int = 40) -> None:
        ctrl = controller(self.kube, self.clock)
        for _ in range(max_rounds):
            try:
                if ctrl.reconcile(NS, NAME, UID).done:
                    return
            except Crash:
                self.crashes += 1
                ctrl = self.restart()
            finish_started(self.kube)
            self.clock.tick()
        raise AssertionError(f"not done after {max_rounds} reconciles: {steps_of(self.kube)}")


def clean_writes() -> int:
    run = Run()
    run.to_the_end()
    assert status(run.kube)["phase"] == "COMPLETED"
    return len(run.kube.writes())


def crash_problems(run: Run) -> list[str]:
    kube = run.kube
    out = []
    if status(kube).get("phase") != "COMPLETED":
        out.append(f"phase {status(kube).get('phase')}")
    created = kube.created(k.JOBS)
    if sorted(created) != sorted(job_of(s, 1) for s in CHAIN):
        out.append(f"Jobs created: {created}")
    try:
        assert_ledger_sound(kube, checkpoint=True)
    except AssertionError as exc:
        out.append(f"ledger: {exc}")
    events = event_types(kube)
    for kind, count in [("STEP_STARTED", 3), ("STEP_SUCCEEDED", 3), ("EXECUTION_COMPLETED", 1)]:
        if events.count(kind) != count:
            out.append(f"{events.count(kind)} {kind}")
    return out


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_crash_at_any_write_resumes_to_the_same_end(after: bool) -> None:
    """For each write k of a clean run, a run whose process dies at write k (before it
    reaches the server, or after it did but before the answer) and is restarted with empty
    caches still ends COMPLETED, with one Job per attempt and a sound, signed ledger."""
    total = clean_writes()
    assert total > 15  # definition, RBAC, 3 Jobs, ledger, Events, statuses, checkpoint
    failures = []
    for position in range(1, total + 1):
        run = Run()
        (run.kube.crash_after_write if after else run.kube.crash_before_write)(position)
        run.to_the_end()
        assert run.crashes == 1, f"write {position}: the crash did not happen"
        failures += [f"crash at write {position}: {p}" for p in crash_problems(run)]
    assert not failures, "\n".join(failures)


# == 6. failures and caches ======================================================================
def test_a_failing_reconcile_reports_reconcile_error_and_wakes_again_later() -> None:
    kube, clock = cluster(chain_steps("a")), Clock()
    ctrl = controller(kube, clock)
    kube.fail("get", k.RUNBOOKS, error=k.KubeError(500, "InternalError", "etcd timed out"))
    mark = kube.mark()
    assert ctrl.reconcile(NS, NAME, UID) == Outcome(done=False, wake_at=T0 + timedelta(seconds=15))
    ready = condition(kube, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReconcileError")
    assert "KubeError" in ready["message"] and "etcd timed out" in ready["message"]
    (patch,) = [c for c in writes(kube.since(mark))]
    assert is_status(patch) and patch.body["metadata"]["resourceVersion"]  # the guarded funnel
    assert kube.created(k.JOBS) == []

    reconciling, stalled = condition(kube, "Reconciling"), condition(kube, "Stalled")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ReconcileError")
    assert stalled["status"] == "False"  # retried: kstatus says InProgress, not Failed

    clock.tick()
    ctrl.reconcile(NS, NAME, UID)  # the API is back
    ready = condition(kube, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Running")
    assert (condition(kube, "Reconciling")["status"], condition(kube, "Stalled")["status"]) == (
        "True",
        "False",
    )
    assert kube.created(k.JOBS) == [job_of("a", 1)]


def test_a_failure_report_that_meets_a_conflict_still_lands_through_the_funnel() -> None:
    kube, clock = cluster(chain_steps("a")), Clock()
    ctrl = controller(kube, clock)
    kube.fail("get", k.RUNBOOKS, error=k.KubeError(500, "InternalError", "boom"))

    def kopf_annotates(kube: FakeKube) -> None:
        kube.edit(k.EXECUTIONS, NS, NAME, lambda b: b["metadata"].update(annotations={"x": "1"}))

    kube.meanwhile("patch", k.EXECUTIONS, kopf_annotates, subresource="status")
    ctrl.reconcile(NS, NAME, UID)
    assert condition(kube, "Ready")["reason"] == "ReconcileError"


def test_caches_are_freed_when_the_execution_ends() -> None:
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    finish(kube, "a", 1)
    ctrl.reconcile(NS, NAME, UID)
    assert ctrl.cached() == {"pinned": 1, "ledgers": 1, "locks": 0, "children": 1, "bodies": 1}
    finish(kube, "b", 1)
    assert ctrl.reconcile(NS, NAME, UID).done
    assert status(kube)["phase"] == "COMPLETED"
    assert ctrl.cached() == {"pinned": 0, "ledgers": 0, "locks": 0, "children": 0, "bodies": 0}


# == 7. fairness: the namespace's cap on running step Jobs ======================================
OTHER = ExecutionRef(NS, "other", "fedcba9876543210-uid")


def capped(cap: int) -> OperatorConfig:
    return OperatorConfig(max_running_jobs_per_namespace=cap)


def complete(job: dict[str, Any]) -> None:
    job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}


def throttled(kube: FakeKube) -> dict[str, Any] | None:
    found = [c for c in status(kube).get("conditions", []) if c["type"] == THROTTLED]
    return found[0] if found else None


def posted(kube: FakeKube, reason: str) -> list[str]:
    return [
        str(c.body["message"])
        for c in kube.writes()
        if c.resource == "events" and c.verb == "create" and c.body["reason"] == reason
    ]


def own_jobs(kube: FakeKube) -> list[str]:
    return [n for n in kube.created(k.JOBS) if n.startswith(f"{NAME}-")]


@pytest.mark.parametrize("ends", ["completes", "is deleted"])
def test_at_the_cap_no_job_is_made_and_a_job_ending_there_wakes_the_execution(ends: str) -> None:
    """Another execution's Job fills the namespace's cap of 1 (seen through the watch before
    that execution is reconciled by this process): ours starts nothing, says why, and is
    woken, not polled, when that Job ends."""
    kube, clock = cluster([step("a")]), Clock()
    woken: list[str] = []
    ctrl = controller(kube, clock, cfg=capped(1), wake=woken.append)
    theirs = kube.put(k.JOBS, NS, job("x", 1, ref=OTHER))["metadata"]["name"]

    mark = kube.mark()
    outcome = ctrl.reconcile(NS, NAME, UID)
    assert own_jobs(kube) == [], "a Job was created beyond the namespace's cap"
    assert outcome == Outcome(done=False, wake_at=None)  # nothing to poll for: a wake comes
    assert status(kube)["phase"] == "RUNNING" and steps_of(kube) == {"a": "PENDING"}
    cap = throttled(kube)
    assert cap is not None and (cap["status"], cap["reason"]) == ("True", "NamespaceJobCap")
    assert f"namespace {NS}'s cap of 1 running step Jobs" in cap["message"]
    assert posted(kube, THROTTLED) == [cap["message"]]
    assert_effect_order(kube.since(mark))
    assert ctrl.cap.held() == {NS: [UID]}

    clock.tick()
    mark = kube.mark()
    ctrl.reconcile(NS, NAME, UID)  # still held: nothing new to write, no second Event
    assert writes(kube.since(mark)) == [], describe(kube.since(mark))
    assert woken == []

    if ends == "completes":
        kube.edit(k.JOBS, NS, theirs, complete)
    else:
        kube.delete(k.JOBS, NS, theirs)
    assert woken == [UID]
    assert ctrl.cap.held() == {}

    clock.tick()
    ctrl.reconcile(NS, NAME, UID)
    assert own_jobs(kube) == [job_of("a", 1)]
    assert steps_of(kube) == {"a": "RUNNING"} and throttled(kube) is None
    finish(kube, "a", 1)
    clock.tick()
    assert ctrl.reconcile(NS, NAME, UID).done
    assert_ledger_sound(kube, checkpoint=True)
    assert len(posted(kube, THROTTLED)) == 1


def test_an_execution_starts_only_the_free_slots_and_the_rest_as_its_jobs_end() -> None:
    kube, clock = cluster([step(s) for s in "abcd"]), Clock()
    woken: list[str] = []
    ctrl = controller(kube, clock, cfg=capped(2), wake=woken.append)
    ctrl.reconcile(NS, NAME, UID)
    assert own_jobs(kube) == [job_of("a", 1), job_of("b", 1)]
    cap = throttled(kube)
    assert cap is not None and cap["message"].startswith("2 ready step(s) wait")

    finish(kube, "a", 1)  # its Job completes: a slot is free
    assert woken == [UID]
    clock.tick()
    ctrl.reconcile(NS, NAME, UID)
    assert own_jobs(kube)[2:] == [job_of("c", 1)]
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "RUNNING", "c": "RUNNING", "d": "PENDING"}

    finish(kube, "b", 1)
    finish(kube, "c", 1)
    clock.tick()
    ctrl.reconcile(NS, NAME, UID)
    assert own_jobs(kube)[3:] == [job_of("d", 1)] and throttled(kube) is None
    finish(kube, "d", 1)
    clock.tick()
    assert ctrl.reconcile(NS, NAME, UID).done
    assert status(kube)["phase"] == "COMPLETED"
    assert_ledger_sound(kube, checkpoint=True)
    assert ctrl.cached() == {"pinned": 0, "ledgers": 0, "locks": 0, "children": 0, "bodies": 0}
    assert ctrl.cap.held() == {}


def test_a_held_reconcile_replayed_after_a_lost_status_posts_no_second_event() -> None:
    kube, clock = cluster([step("a")]), Clock()
    ctrl = controller(kube, clock, cfg=capped(1))
    kube.put(k.JOBS, NS, job("x", 1, ref=OTHER))
    kube.fail("patch", k.EXECUTIONS, subresource="status", error=k.KubeError(500, "x", "lost"))
    ctrl.reconcile(NS, NAME, UID)
    assert condition(kube, "Ready")["reason"] == "ReconcileError"
    clock.tick()
    ctrl.reconcile(NS, NAME, UID)
    assert throttled(kube) is not None and own_jobs(kube) == []
    stored = [e for e in kube.objects_of(k.EVENTS, NS) if e["reason"] == THROTTLED]
    assert len(stored) == 1, stored


def test_no_cap_starts_every_ready_step() -> None:
    kube, clock = cluster([step(s) for s in "abcd"]), Clock()
    ctrl = controller(kube, clock, cfg=capped(0))
    ctrl.reconcile(NS, NAME, UID)
    assert len(own_jobs(kube)) == 4 and throttled(kube) is None


def test_two_executions_reconciled_at_once_share_the_cap_and_never_exceed_it() -> None:
    """Both decide at the same moment on separate threads, with Jobs made on a real pool: the
    namespace's turn makes the second see the slots the first just took."""
    kube, clock = cluster([step(f"s{i}") for i in range(6)]), Clock()
    kube.put(k.EXECUTIONS, NS, execution(ref=OTHER))
    pool = FairPool(4, "test-create-job")
    woken: list[str] = []
    ctrl = controller(kube, clock, creators=pool, cfg=capped(4), wake=woken.append)
    start = threading.Barrier(2)

    def drive(ref: ExecutionRef) -> None:
        start.wait(TIMEOUT)
        ctrl.reconcile(ref.namespace, ref.name, ref.uid)

    try:
        threads = [threading.Thread(target=drive, args=(ref,)) for ref in (REF, OTHER)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    finally:
        pool.shutdown()
    made = kube.created(k.JOBS)
    assert len(made) == 4, made
    assert ctrl.children.running_jobs(NS) == 4
    assert sorted(ctrl.cap.held()[NS]) == sorted([REF.uid, OTHER.uid])
    assert ctrl.cap.reserved(NS) == 0  # every slot taken for a Job went back once it was made


# == the fake itself: the API rules the tests above rely on ======================================
def test_the_fake_guards_writes_with_the_resource_version() -> None:
    kube = cluster()
    body = kube.get(k.EXECUTIONS, NS, NAME)
    stale = body["metadata"]["resourceVersion"]
    kube.patch(k.EXECUTIONS, NS, NAME, {"metadata": {"annotations": {"x": "1"}}})
    fresh = kube.get(k.EXECUTIONS, NS, NAME)["metadata"]["resourceVersion"]
    assert int(fresh) > int(stale)
    # only the metadata moved on: the funnel retries with the fresh resourceVersion
    k.write_status(kube, k.EXECUTIONS, body, {"phase": "RUNNING"})
    assert kube.get(k.EXECUTIONS, NS, NAME)["status"] == {"phase": "RUNNING"}
    with pytest.raises(k.Conflict):  # the status moved on since `body` was read: refused
        k.write_status(kube, k.EXECUTIONS, body, {"phase": "PAUSED"})
    cm = kube.create(k.CONFIGMAPS, NS, {"metadata": {"name": "x"}, "data": {"a": "1"}})
    with pytest.raises(k.AlreadyExists):
        kube.create(k.CONFIGMAPS, NS, cm)
    kube.replace(k.CONFIGMAPS, NS, "x", {**cm, "data": {"a": "2"}})
    with pytest.raises(k.Conflict):
        kube.replace(k.CONFIGMAPS, NS, "x", {**cm, "data": {"a": "3"}})


def test_the_fake_merges_patches_and_keeps_status_to_its_subresource() -> None:
    kube = cluster()
    kube.patch(k.EXECUTIONS, NS, NAME, {"spec": {"paused": True}, "status": {"phase": "X"}})
    body = kube.get(k.EXECUTIONS, NS, NAME)
    assert body["spec"] == {"runbookRef": {"name": "rb"}, "paused": True}
    assert body["status"] == {} and body["metadata"]["generation"] == 2
    kube.patch(
        k.EXECUTIONS, NS, NAME, {"status": {"phase": "X", "a": {"b": 1}}}, subresource="status"
    )
    kube.patch(k.EXECUTIONS, NS, NAME, {"status": {"a": None}}, subresource="status")
    assert kube.get(k.EXECUTIONS, NS, NAME)["status"] == {"phase": "X"}
    assert kube.get(k.EXECUTIONS, NS, NAME)["metadata"]["generation"] == 2


def test_the_fake_counts_faults_from_when_they_are_set_and_crashes_for_good() -> None:
    kube = cluster()
    kube.get(k.EXECUTIONS, NS, NAME)
    kube.fail("get", k.EXECUTIONS, nth=2, error=k.KubeError(500, "X", "boom"))
    kube.get(k.EXECUTIONS, NS, NAME)
    with pytest.raises(k.KubeError, match="boom"):
        kube.get(k.EXECUTIONS, NS, NAME)
    kube.get(k.EXECUTIONS, NS, NAME)  # times=1: once only
    kube.delete(k.JOBS, NS, "nothing-here")  # NotFound is success
    assert kube.calls[-1].outcome == "NotFound"
    kube.crash_before_write(2)
    kube.create(k.CONFIGMAPS, NS, {"metadata": {"name": "one"}})
    with pytest.raises(Crash):
        kube.create(k.CONFIGMAPS, NS, {"metadata": {"name": "two"}})
    with pytest.raises(Crash):
        kube.get(k.EXECUTIONS, NS, NAME)  # a dead process reads nothing either
    kube.revive()
    kube.crash_after_write(1)
    with pytest.raises(Crash):
        kube.create(k.CONFIGMAPS, NS, {"metadata": {"name": "three"}, "immutable": True})
    kube.revive()
    assert [c["metadata"]["name"] for c in kube.objects_of(k.CONFIGMAPS)] == ["one", "three"]
    assert kube.created(k.CONFIGMAPS) == ["one", "three"]
    with pytest.raises(k.Invalid):
        kube.replace(k.CONFIGMAPS, NS, "three", {"metadata": {"name": "three"}, "data": {"a": "1"}})
    labelled = {"metadata": {"name": "l", "labels": {"a": "1", "b": "2"}}}
    kube.create(k.CONFIGMAPS, NS, labelled)
    assert [c["metadata"]["name"] for c in kube.list(k.CONFIGMAPS, NS, "a=1,b=2")] == ["l"]
    assert kube.list(k.CONFIGMAPS, NS, "a=1,b=3") == []


# -- ledger trust (issue 16) ---------------------------------------------------------------------
def test_an_execution_without_an_authenticated_creator_does_not_start() -> None:
    """No created-by stamp (the admission policies are missing): refused, nothing runs."""
    kube, clock = cluster(chain_steps(*CHAIN)), Clock()
    kube.edit(k.EXECUTIONS, NS, NAME, lambda b: b["metadata"].pop("annotations"))
    controller(kube, clock).reconcile(NS, NAME, UID)
    assert status(kube)["phase"] == "FAILED"
    ready = {c["type"]: c for c in status(kube)["conditions"]}["Ready"]
    assert ready["reason"] == "Unauthenticated" and "created-by" in ready["message"]
    assert kube.objects_of(k.JOBS, NS) == []


def test_the_creator_is_the_actor_of_the_start_and_the_claim_stays_a_claim() -> None:
    kube, clock = cluster(chain_steps(*CHAIN), spec={"startedBy": "ceo@corp"}), Clock()
    controller(kube, clock).reconcile(NS, NAME, UID)
    started = ledger(kube)[0]
    assert started["actorId"] == "alice"
    assert started["details"]["startedBy"] == "ceo@corp"
    assert started["details"]["authenticatedUser"]["groups"] == ["tenant-a", "system:authenticated"]


def _rewrite_ledger(kube: FakeKube, actor: str = "ceo@corp") -> str:
    """Someone with write access edits entry 0 and recomputes every hash after it."""
    from runbook_engine.audit import entry_hash
    from runbook_engine.canonical import canonical_json

    [segment] = segments(kube)
    entries = [json.loads(line) for line in segment.data["entries.jsonl"].splitlines()]
    entries[0]["actorId"] = actor
    previous = entries[0]["previousHash"]
    for entry in entries:
        entry["previousHash"] = previous
        entry["hash"] = previous = entry_hash(entry)
    text = "".join(canonical_json(e).decode() + "\n" for e in entries)
    kube.edit(k.CONFIGMAPS, NS, segment.name, lambda cm: cm["data"].update({"entries.jsonl": text}))
    return previous


@pytest.mark.parametrize("restart", [False, True])
def test_a_rewritten_ledger_stops_the_execution_and_is_never_signed(restart: bool) -> None:
    kube, clock = cluster(chain_steps(*CHAIN)), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    forged = _rewrite_ledger(kube)
    if restart:
        ctrl = controller(kube, clock)  # reloads at once
    finish_started(kube)  # the next append meets a Conflict, reloads, and sees it
    clock.tick()
    outcome = ctrl.reconcile(NS, NAME, UID)
    assert outcome.done
    now = status(kube)
    ready = {c["type"]: c for c in now["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "LedgerTampered", ready
    stalled = {c["type"]: c for c in now["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "LedgerTampered")  # kstatus Failed
    assert {c["type"]: c for c in now["conditions"]}["Reconciling"]["status"] == "False"
    assert now["phase"] == "RUNNING"
    jobs = [j["metadata"]["name"] for j in kube.objects_of(k.JOBS, NS)]
    # Reloaded at start-up: nothing more starts. Mid-run the operator learns of it from the
    # Conflict of its next append; the Job it made beside that append (adopted on replay, as
    # always) is the only one, and no entry for it is written.
    assert jobs == [job_of("a", 1)] if restart else set(jobs) <= {job_of("a", 1), job_of("b", 1)}
    signed = [
        json.loads(s.data["checkpoint.json"]) for s in segments(kube) if "checkpoint.json" in s.data
    ]
    assert all(cp["head"] != forged for cp in signed)
    assert (now.get("audit") or {}).get("checkpoint", {}).get("head") != forged
    assert ledger(kube)[-1]["hash"] == forged  # nothing appended after the forgery
    reasons = [
        c.body.get("reason") for c in kube.calls if c.verb == "create" and c.resource == "events"
    ]
    assert "LedgerTampered" in reasons


def test_a_checkpoint_is_signed_every_n_entries_while_running() -> None:
    kube, clock = cluster(chain_steps(*CHAIN)), Clock()
    ctrl = controller(kube, clock, cfg=OperatorConfig(checkpoint_every=3))
    ctrl.reconcile(NS, NAME, UID)
    checkpoint = status(kube)["audit"]["checkpoint"]
    assert status(kube)["phase"] == "RUNNING"
    assert checkpoint["count"] == status(kube)["audit"]["count"] >= 3
    assert OperatorConfig().checkpoint_every == 50


# -- image policy (issue 17) ---------------------------------------------------------------------
def _custom(sid: str, image: str) -> dict[str, Any]:
    return {"id": sid, "actionType": "CUSTOM", "container": {"image": image, "command": ["x"]}}


def test_an_image_outside_the_policy_refuses_the_execution_at_start() -> None:
    kube, clock = cluster([_custom("a", "docker.io/evil/tool:1")]), Clock()
    cfg = OperatorConfig(image_allow_prefixes=("ghcr.io/acme",))
    controller(kube, clock, cfg=cfg).reconcile(NS, NAME, UID)
    ready = {c["type"]: c for c in status(kube)["conditions"]}["Ready"]
    assert status(kube)["phase"] == "FAILED" and ready["reason"] == "ImageNotAllowed"
    assert "spec.steps[0].container.image" in ready["message"]
    assert kube.objects_of(k.JOBS, NS) == []


def test_a_policy_tightened_after_the_start_creates_no_job_and_says_why() -> None:
    kube, clock = cluster([_custom("a", "docker.io/evil/tool:1")]), Clock()
    controller(kube, clock).reconcile(NS, NAME, UID)  # pinned under no policy
    for made in kube.objects_of(k.JOBS, NS):
        kube.delete(k.JOBS, NS, made["metadata"]["name"])
    strict = OperatorConfig(image_allow_prefixes=("ghcr.io/acme",))
    ctrl = controller(kube, clock, cfg=strict)
    clock.tick()
    ctrl.reconcile(NS, NAME, UID)
    steps = {s["stepId"]: s for s in status(kube)["steps"]}
    assert "not under an allowed prefix" in steps["a"]["message"], steps["a"]
    assert kube.objects_of(k.JOBS, NS) == []


# == 8. watches that lag ===========================================================================
def test_a_job_marked_complete_before_its_pod_reaches_the_watch_is_not_a_lost_pod() -> None:
    """The Job and pod watches are separate streams: under load the Job's Complete can arrive
    while the pod's events are still on their way (seen in `make bench`: 31 of 1,000 fan-out
    steps failed with "its pod is gone"). The cache alone must not call the pod gone."""
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    ctrl.reconcile(NS, NAME, UID)  # lists a's Job once: from here on the cache serves it
    assert ctrl.children.get(UID, CFG.resync_seconds) is not None

    def pods_late(kind: str, event: str | None, obj: dict[str, Any]) -> None:
        if kind != "pod":
            ctrl.children.observe(kind, event, obj)

    kube.watchers[:] = [pods_late]
    finish(kube, "a", 1)  # the pod ends and the Job completes; only the Job's news arrives
    ctrl.reconcile(NS, NAME, UID)
    assert steps_of(kube) == {"a": "SUCCEEDED", "b": "RUNNING"}
    assert job_of("b", 1) in kube.created(k.JOBS)


def test_a_pod_really_gone_still_fails_its_attempt_after_a_fresh_list() -> None:
    kube, clock = cluster(chain_steps("a", "b")), Clock()
    ctrl = controller(kube, clock)
    ctrl.reconcile(NS, NAME, UID)
    ctrl.reconcile(NS, NAME, UID)
    kube.edit(k.JOBS, NS, job_of("a", 1), complete)  # Complete, and no pod anywhere
    ctrl.reconcile(NS, NAME, UID)
    assert steps_of(kube)["a"] == "FAILED"
    (a,) = [s for s in status(kube)["steps"] if s["stepId"] == "a"]
    assert "its pod is gone" in a["message"]
