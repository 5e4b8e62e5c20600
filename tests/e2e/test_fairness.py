"""Fairness between tenants, on the real cluster with steps on kwok's simulated nodes.

One operator serves every namespace. Each test runs an operator of its own (from this checkout)
over namespaces of its own, with step pods placed on kwok's fake nodes (nodeSelector and
toleration, as `make bench` does): kwok marks them Succeeded with an inline result, so the
operator, the apiserver and the Job controller are what is measured, not container start-up.

- a tenant starting 1,000 steps at once does not delay another tenant's first step;
- the per-namespace cap on running step Jobs holds, and held executions start as Jobs end
  (with the resync interval far away, so only the cap's wake-up can start them);
- the operator's memory after 500 finished executions is no higher than after 50.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import KWOK_TOLERATION, Cluster, wait_for
from .operator_env import GROUP, VERSION, OperatorProcess, Runbooks, operator_env

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]

KWOK_SELECTOR = {"type": "kwok"}
EXECUTIONS = "runbookexecutions"
FIRST_JOB_BOUND_S = 10.0
"""How long another tenant's first step may wait for its Job while a 1,000-step fan-out starts."""
RSS_TOLERANCE = 1.25


def step(i: int) -> dict[str, Any]:
    return {"id": f"s{i:04d}", "actionType": "TRANSFORM", "config": {"expressions": {"i": str(i)}}}


def created_at(obj: client.V1Job | dict[str, Any]) -> datetime:
    """The apiserver's creationTimestamp of a typed object or of a custom object's dict."""
    if isinstance(obj, dict):
        return datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    return obj.metadata.creation_timestamp  # type: ignore[no-any-return]


def finished(job: client.V1Job) -> bool:
    return any(
        c.type in ("Complete", "Failed") and c.status == "True"
        for c in (job.status.conditions or [])
    )


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class Tenants:
    """An operator of the test's own and the tenant namespaces it serves."""

    cluster: Cluster
    op: OperatorProcess
    namespaces: list[str]
    custom: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.cluster.api)

    def rb(self, i: int) -> Runbooks:
        return Runbooks(self.cluster, self.namespaces[i], self.op.tail)

    def execute(self, i: int, name: str, runbook: str, labels: dict[str, str]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RunbookExecution",
            "metadata": {"name": name, "labels": labels},
            "spec": {"runbookRef": {"name": runbook}},
        }
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespaces[i], EXECUTIONS, body
        )

    def phases(self, i: int, selector: str) -> list[str]:
        items = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespaces[i], EXECUTIONS, label_selector=selector
        )["items"]
        return [str((x.get("status") or {}).get("phase") or "") for x in items]

    def jobs(self, i: int, selector: str = "") -> list[client.V1Job]:
        return list(
            self.cluster.batch.list_namespaced_job(
                self.namespaces[i], label_selector=selector
            ).items
        )

    def running_jobs(self, i: int) -> int:
        """Step Jobs that still run as the operator counts them: not finished, and no pod of
        theirs has ended (backoffLimit 0: such a Job starts nothing more). Jobs are listed
        before pods, so a Job started after a pod was seen to end is never counted beside it."""
        jobs = [j.metadata.name for j in self.jobs(i) if not finished(j)]
        pods = self.cluster.core.list_namespaced_pod(self.namespaces[i]).items
        ended = {
            ref.name
            for p in pods
            if p.status.phase in ("Succeeded", "Failed")
            for ref in p.metadata.owner_references or ()
            if ref.controller and ref.kind == "Job"
        }
        return sum(1 for name in jobs if name not in ended)


def _release(custom: client.CustomObjectsApi, namespace: str) -> None:
    """Take the operator's finalizer off every execution (the operator is stopped), so the
    namespace can go."""
    with contextlib.suppress(ApiException):
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, EXECUTIONS)["items"]
        for item in items:
            if item["metadata"].get("finalizers"):
                with contextlib.suppress(ApiException):
                    custom.patch_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        EXECUTIONS,
                        item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )


@pytest.fixture
def tenants(
    cluster: Cluster,
    project_crds: None,
    kwok_nodes: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Tenants]]:
    """`tenants(n, **env)`: n fresh namespaces and an operator serving exactly them, its step
    pods on the kwok nodes, `env` added to its settings."""
    started: list[Tenants] = []

    def start(count: int, **env: str) -> Tenants:
        tag = uuid.uuid4().hex[:6]
        names = [f"e2e-fair-{tag}-{chr(ord('a') + i)}" for i in range(count)]
        for name in names:
            cluster.core.create_namespace(
                client.V1Namespace(
                    metadata=client.V1ObjectMeta(name=name, labels={"runbook-e2e": "1"})
                )
            )
        folder = tmp_path_factory.mktemp("fair-operator")
        settings = operator_env(cluster, folder, ",".join(names), names[0])
        settings.update(
            RUNBOOK_EXECUTOR_NODE_SELECTOR=json.dumps(KWOK_SELECTOR),
            RUNBOOK_EXECUTOR_TOLERATIONS=json.dumps([KWOK_TOLERATION]),
            **env,
        )
        op = OperatorProcess(settings, folder / "operator.log")
        made = Tenants(cluster, op, names)
        started.append(made)
        op.start()
        return made

    yield start
    for made in started:
        made.op.stop()
        print(f"--- fairness operator log (tail) ---\n{made.op.tail(40)}")
        for name in made.namespaces:
            _release(made.custom, name)
            with contextlib.suppress(ApiException):
                cluster.core.delete_namespace(name, propagation_policy="Background")


# -- one tenant's fan-out does not delay another's first step ----------------------------------
@pytest.mark.timeout(900)
def test_a_tenant_starting_1000_steps_does_not_delay_another_tenants_first_step(
    tenants: Callable[..., Tenants],
) -> None:
    """Tenant A's execution has 1,000 ready steps (maxParallelSteps 1000, no namespace cap, so
    all 1,000 Jobs are asked for at once); tenant B's one-step execution is created just after.
    B's Job must exist within FIRST_JOB_BOUND_S of B's creation, while A is still starting
    (the Job creators serve namespaces in turn; first come first served, B's Job would wait
    behind all of A's)."""
    t = tenants(2, RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE="0")
    a, b = t.rb(0), t.rb(1)
    a.runbook("wide", [step(i) for i in range(1000)], maxParallelSteps=1000)
    b.runbook("one", [step(0)])
    a.execute("fan-out", "wide")
    wait_for(lambda: t.jobs(0), 120, 0.1, "tenant A's first Jobs")  # A's fan-out is under way

    started = time.monotonic()
    made_b = b.execute("first", "one")
    b_jobs = wait_for(lambda: t.jobs(1), 120, 0.1, "tenant B's Job")
    seen_after = time.monotonic() - started
    a_so_far = len(t.jobs(0))

    delay = (created_at(b_jobs[0]) - created_at(made_b)).total_seconds()
    print(
        f"\nB's first Job: {delay:.0f}s after B was created (seen after {seen_after:.1f}s); "
        f"A had {a_so_far} of 1000 Jobs then"
    )
    assert delay <= FIRST_JOB_BOUND_S, (
        f"tenant B's first Job came {delay:.0f}s after B was created (A had {a_so_far} Jobs)"
    )
    b.wait_phase("first", "COMPLETED", timeout=180)

    # ...and A was still starting then: its last Job came after B's first.
    def all_of_a() -> list[client.V1Job] | None:
        jobs = t.jobs(0)
        return jobs if len(jobs) >= 1000 else None

    a_jobs = wait_for(all_of_a, 600, 2, "all 1000 of tenant A's Jobs")
    last_a = max(created_at(j) for j in a_jobs)
    first_a = min(created_at(j) for j in a_jobs)
    print(f"A's 1000 Jobs were created over {(last_a - first_a).total_seconds():.0f}s")
    assert last_a > created_at(b_jobs[0]), (
        "tenant A had made all its Jobs before tenant B's: the test measured no contention"
    )


# -- the per-namespace cap ----------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_the_namespace_cap_bounds_running_jobs_and_held_executions_start_as_jobs_end(
    tenants: Callable[..., Tenants],
) -> None:
    """Two executions of 60 parallel steps share a namespace capped at 10 running Jobs. The
    resync interval is 10 minutes: only the wake-up when a Job ends can start held steps."""
    cap = 10
    t = tenants(1, RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE=str(cap), RUNBOOK_RESYNC_SECONDS="600")
    rb = t.rb(0)
    rb.runbook("wide", [step(i) for i in range(60)], maxParallelSteps=60)
    for name in ("first", "second"):
        t.execute(0, name, "wide", {"e2e-fair": "cap"})

    most = 0
    throttled: set[str] = set()
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        running = t.running_jobs(0)
        most = max(most, running)
        assert running <= cap, f"{running} step Jobs running in a namespace capped at {cap}"
        for name in ("first", "second"):
            conditions = rb.status(name).get("conditions") or []
            if any(c["type"] == "Throttled" and c["status"] == "True" for c in conditions):
                throttled.add(name)
        if t.phases(0, "e2e-fair=cap") == ["COMPLETED", "COMPLETED"]:
            break
        time.sleep(0.3)
    phases = t.phases(0, "e2e-fair=cap")
    assert phases == ["COMPLETED", "COMPLETED"], f"{phases}\n{t.op.tail()}"
    print(f"\nat most {most} step Jobs ran at once (cap {cap}); throttled: {sorted(throttled)}")
    assert throttled, "no execution said it waited for the namespace's cap"
    reasons = {reason for name in ("first", "second") for reason, _ in rb.events(name)}
    assert "Throttled" in reasons, reasons
    for name in ("first", "second"):
        assert not any(c["type"] == "Throttled" for c in rb.status(name).get("conditions") or [])


# -- memory -------------------------------------------------------------------------------------
BATCH = 50
BATCHES = 10
SETTLE_S = 10.0


@pytest.mark.timeout(900)
def test_the_operators_memory_after_500_finished_executions_is_no_higher_than_after_50(
    tenants: Callable[..., Tenants],
) -> None:
    """Executions run 50 at a time (the same load each time, so the peak is the same); after
    the first 50 and after all 500 have finished, and a pause for the collector, the
    operator's resident memory is compared. Whatever it keeps per execution shows as growth."""
    t = tenants(1)
    rb = t.rb(0)
    rb.runbook("one", [step(0)])
    assert t.op.proc is not None
    pid = t.op.proc.pid

    def run_batch(k: int) -> None:
        selector = f"e2e-fair-batch={k}"
        for i in range(BATCH):
            t.execute(0, f"run-{k:02d}-{i:02d}", "one", {"e2e-fair-batch": str(k)})

        def all_done() -> bool:
            phases = t.phases(0, selector)
            return len(phases) == BATCH and all(p == "COMPLETED" for p in phases)

        wait_for(all_done, 240, 1, f"batch {k}: {BATCH} executions COMPLETED")

    samples: list[tuple[int, int]] = []
    started = time.monotonic()
    for k in range(BATCHES):
        run_batch(k)
        if k in (0, BATCHES - 1):
            time.sleep(SETTLE_S)
        samples.append(((k + 1) * BATCH, rss_kib(pid)))
    after_50, after_500 = samples[0][1], samples[-1][1]
    print(
        f"\noperator RSS (KiB) by finished executions: {samples} "
        f"({time.monotonic() - started:.0f}s for {BATCH * BATCHES} executions)"
    )
    assert after_500 <= after_50 * RSS_TOLERANCE, (
        f"the operator holds {after_500} KiB after {BATCH * BATCHES} finished executions, "
        f"{after_500 / after_50:.2f}x the {after_50} KiB after {BATCH}"
    )
