"""One active operator per scope, on the real cluster: two operator processes with the same
watched namespace; the second stands by (its log and /readyz say so) and creates nothing; when
the leader is SIGKILLed mid-run the standby takes over within the lease time, the run completes
with exactly one Job per attempt, and its ledger verifies (both sign with the same key, as two
replicas of one install do). The Lease decisions themselves: tests/unit/operator/test_leadership.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Cluster, wait_for
from .operator_env import OperatorProcess, Runbooks, _free_port, operator_env, shell_step

pytestmark = pytest.mark.e2e

DURATION, RENEW, RETRY, SKEW = 8, 2, 1, 2
"""Short lease timings so the takeover is quick (the chart's defaults: 15, 5, 2, 2)."""
TAKEOVER_S = DURATION + SKEW + 2 * RETRY
"""Longest a standby may take to lead after the leader died: the lease runs out (by the wall
clock plus the skew margin, or unchanged for DURATION since the standby saw the last renewal,
which it polls every RETRY to 1.5 x RETRY)."""
STEP = (
    "import json,time; time.sleep({sleep}); "
    "open('/dev/termination-log','w').write(json.dumps({{'success': True, 'output': {{'n': {n}}}}}))"
)


@dataclass
class Pair:
    namespace: str
    leader: OperatorProcess
    standby: OperatorProcess


@pytest.fixture
def pair(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two operators for one namespace, the same settings and signing key, their own ports
    and identities; the first leads, the second is started after it."""
    ns = f"e2e-lead-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    folder = tmp_path_factory.mktemp("leadership")
    env = operator_env(cluster, folder, ns, ns)
    env.update(
        RUNBOOK_LEASE_DURATION_SECONDS=str(DURATION),
        RUNBOOK_LEASE_RENEW_SECONDS=str(RENEW),
        RUNBOOK_LEASE_RETRY_SECONDS=str(RETRY),
        RUNBOOK_LEASE_SKEW_SECONDS=str(SKEW),
    )
    second = dict(
        env,
        RUNBOOK_METRICS_PORT=str(_free_port()),
        RUNBOOK_HEALTH_PORT=str(_free_port()),
        RUNBOOK_LEASE_IDENTITY=f"e2e-second-{uuid.uuid4().hex[:8]}",
    )
    assert second["RUNBOOK_SIGNING_KEY_FILE"] == env["RUNBOOK_SIGNING_KEY_FILE"]
    one = OperatorProcess(env, folder / "first.log")
    two = OperatorProcess(second, folder / "second.log")
    try:
        one.start()
        two.start(leading=False)
        yield Pair(ns, one, two)
    finally:
        for op, label in ((two, "second"), (one, "first")):
            op.stop()
            print(f"--- {label} operator log (tail) ---\n{op.tail(80)}")
        with contextlib.suppress(ApiException):
            cluster.core.delete_namespace(ns, propagation_policy="Background")


def _lease(cluster: Cluster, ns: str) -> dict[str, object]:
    api = client.CoordinationV1Api(cluster.api)
    (lease,) = api.list_namespaced_lease(ns).items
    return {"name": lease.metadata.name, "holder": lease.spec.holder_identity}


def _standing_by(op: OperatorProcess, holder: str) -> bool:
    ready = op.readiness()
    log = op.log_path.read_text(errors="replace") if op.log_path.exists() else ""
    return (
        ready.get("state") == "standby"
        and f"held by {holder}" in str(ready.get("message"))
        and f"held by {holder}" in log
        and "standing by: lease" in log
    )


def _chain(rb: Runbooks, steps: int, sleep: int) -> None:
    rb.runbook(
        "chain",
        [
            shell_step(f"s{i}", STEP.format(sleep=sleep, n=i), *([f"s{i - 1}"] if i else []))
            for i in range(steps)
        ],
    )


def _one_job_per_attempt(rb: Runbooks, uid: str, steps: int) -> None:
    keys = [
        (
            j.metadata.labels["runbook-operator.dev/step"],
            j.metadata.labels["runbook-operator.dev/attempt"],
        )
        for j in rb.jobs(uid)
    ]
    assert len(keys) == len(set(keys)) == steps, keys


def _verify(cluster: Cluster, ns: str, name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if cluster.kubeconfig:
        env["KUBECONFIG"] = cluster.kubeconfig
    return subprocess.run(
        [sys.executable, "-m", "runbookctl.cli", "verify", name, "-n", ns, "--key-namespace", ns],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_second_operator_for_the_same_scope_stands_by_and_creates_nothing(
    cluster: Cluster, pair: Pair
) -> None:
    holder = pair.leader.env["RUNBOOK_LEASE_IDENTITY"]
    wait_for(lambda: _standing_by(pair.standby, holder), 30, 0.5, "the second standing by")
    assert pair.leader.readiness()["state"] == "leading"
    rb = Runbooks(cluster, pair.namespace, pair.leader.tail)
    _chain(rb, steps=3, sleep=1)
    created = rb.execute("run-1", "chain")
    status = rb.wait_phase("run-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "COMPLETED", status
    _one_job_per_attempt(rb, created["metadata"]["uid"], 3)
    # The second never started kopf: no handler, no watch, no write of its own.
    log = pair.standby.log_path.read_text(errors="replace")
    assert "leading: lease" not in log and "runbook-operator started" not in log, log[-2000:]
    assert pair.standby.proc is not None and pair.standby.proc.poll() is None
    assert _lease(cluster, pair.namespace)["holder"] == holder
    assert pair.standby.readiness()["state"] == "standby"


def test_the_standby_takes_over_a_killed_leader_mid_run_without_a_duplicate_job(
    cluster: Cluster, pair: Pair
) -> None:
    first = pair.leader.env["RUNBOOK_LEASE_IDENTITY"]
    second = pair.standby.env["RUNBOOK_LEASE_IDENTITY"]
    wait_for(lambda: _standing_by(pair.standby, first), 30, 0.5, "the second standing by")
    rb = Runbooks(cluster, pair.namespace, pair.standby.tail)
    steps = 4
    _chain(rb, steps=steps, sleep=5)
    created = rb.execute("run-1", "chain")
    uid = created["metadata"]["uid"]

    def second_step_running() -> bool:
        return rb.steps("run-1").get("s1", {}).get("status") == "RUNNING"

    wait_for(second_step_running, 120, 0.3, "step s1 running under the first operator")
    pair.leader.kill()  # SIGKILL: no hand-back, the lease has to run out
    killed = time.monotonic()
    wait_for(
        lambda: pair.standby.readiness().get("state") == "leading",
        TAKEOVER_S + 10,
        0.2,
        "the standby leading",
    )
    took = time.monotonic() - killed
    assert took <= TAKEOVER_S, f"took over after {took:.1f} s (lease {DURATION} s)"
    status = rb.wait_phase("run-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "COMPLETED", status
    assert [s["attempt"] for s in status["steps"]] == [1] * steps
    _one_job_per_attempt(rb, uid, steps)
    lease = _lease(cluster, pair.namespace)
    assert lease["holder"] == second
    log = pair.standby.log_path.read_text(errors="replace")
    assert log.index("standing by: lease") < log.index("leading: lease")
    proc = _verify(cluster, pair.namespace, "run-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_operators_of_disjoint_scopes_both_lead(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another scope's operator in the same lease namespace is not held up (the e2e suite's
    own operators each watch their own namespaces and must not block each other)."""
    spaces = [f"e2e-lead-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    ops: list[OperatorProcess] = []
    try:
        for ns in spaces:
            cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        for i, ns in enumerate(spaces):
            folder = tmp_path_factory.mktemp(f"disjoint-{i}")
            op = OperatorProcess(operator_env(cluster, folder, ns, spaces[0]), folder / "op.log")
            ops.append(op)
            op.start()  # waits until it leads
        names = {json.dumps(op.readiness().get("lease")) for op in ops}
        assert len(names) == 2 and all(op.readiness()["state"] == "leading" for op in ops)
    finally:
        for op in ops:
            op.stop()
        for ns in spaces:
            with contextlib.suppress(ApiException):
                cluster.core.delete_namespace(ns, propagation_policy="Background")


def test_make_bench_refuses_while_an_operator_holds_an_overlapping_scope(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`make bench` (benchmarks/cluster.py) looks for live leadership Leases in every namespace:
    an operator watching a namespace of the benchmark's `bench-op-*` makes it refuse, with what
    to run; one watching other namespaces does not."""
    from benchmarks.cluster import other_operators, refuse_if_others_reconcile

    home = f"e2e-lead-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    ops: list[OperatorProcess] = []
    try:
        for i, watched in enumerate((f"bench-op-e2e-{uuid.uuid4().hex[:6]}", home)):
            folder = tmp_path_factory.mktemp(f"bench-probe-{i}")
            op = OperatorProcess(operator_env(cluster, folder, watched, home), folder / "op.log")
            ops.append(op)
            op.start()
        overlapping, disjoint = (str(op.readiness()["lease"]) for op in ops)
        found = "\n".join(other_operators(cluster.api))
        assert f"lease {overlapping} held by" in found, found
        assert disjoint not in found
        with pytest.raises(SystemExit, match="make undeploy") as refused:
            refuse_if_others_reconcile(cluster.api)
        assert overlapping in str(refused.value)
        ops[0].stop()  # hands its Lease back: the benchmark may start
        assert overlapping not in "\n".join(other_operators(cluster.api))
    finally:
        for op in ops:
            op.stop()
        with contextlib.suppress(ApiException):
            cluster.core.delete_namespace(home, propagation_policy="Background")
