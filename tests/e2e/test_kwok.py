"""Scale smoke test on kwok's simulated nodes: 100 Jobs are scheduled onto fake nodes,
kwok's pod-complete stage marks their pods Succeeded, and the Job controller completes
them. Runs alongside the real kubelet: only pods that select and tolerate the fake nodes
land there."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from .conftest import IMAGE, KWOK_TOLERATION, Cluster, wait_for

pytestmark = pytest.mark.kwok

JOBS = 100


def _fake_job(name: str) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name, labels={"e2e": "kwok-scale"}),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"e2e": "kwok-scale"}),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    node_selector={"type": "kwok"},
                    tolerations=[client.V1Toleration(**KWOK_TOLERATION)],
                    containers=[client.V1Container(name="main", image=IMAGE, command=["true"])],
                ),
            ),
        ),
    )


@pytest.mark.timeout(600)
def test_hundred_jobs_complete_on_kwok_nodes(
    cluster: Cluster, namespace: str, kwok_nodes: list[str]
) -> None:
    batch = cluster.batch
    start = time.monotonic()
    for i in range(JOBS):
        batch.create_namespaced_job(namespace, _fake_job(f"fake-{i:03d}"))
    created = time.monotonic() - start

    def complete_count() -> int:
        jobs = batch.list_namespaced_job(namespace, label_selector="e2e=kwok-scale").items
        done = sum(
            1
            for j in jobs
            if any(c.type == "Complete" and c.status == "True" for c in (j.status.conditions or []))
        )
        return done if done == JOBS else 0

    wait_for(complete_count, 300, 2, f"{JOBS} Jobs to complete on kwok nodes")
    elapsed = time.monotonic() - start
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="e2e=kwok-scale").items
    assert {p.spec.node_name for p in pods} <= set(kwok_nodes), "a fake Job ran on a real node"
    print(f"\n{JOBS} Jobs: created in {created:.1f}s, all complete after {elapsed:.1f}s")
