"""The operator killed at random points mid-run, and a webhook reached by its DNS name."""

from __future__ import annotations

import json
import random
import time
import urllib.request

import pytest
from kubernetes import client

from .conftest import IMAGE, Cluster
from .operator_env import OperatorProcess, Runbooks, shell_step, transform

pytestmark = pytest.mark.e2e

STEP = (
    "import json,time; time.sleep({sleep}); "
    "open('/dev/termination-log','w').write(json.dumps({{'success': True, 'output': {{'n': {n}}}}}))"
)


def test_killing_the_operator_at_random_points_loses_and_duplicates_nothing(
    cluster: Cluster, own_operator: tuple[OperatorProcess, str]
) -> None:
    op, ns = own_operator
    rb = Runbooks(cluster, ns, op.tail)
    fan = [shell_step(f"w{i}", STEP.format(sleep=1 + i % 3, n=i), "start") for i in range(6)]
    rb.runbook(
        "fanout",
        [
            shell_step("start", STEP.format(sleep=1, n=0)),
            *fan,
            transform("join", *[f"w{i}" for i in range(6)], expressions={"n": "outputs.w5.n"}),
        ],
        maxParallelSteps=3,
    )
    created = rb.execute("k-1", "fanout")
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        phase = rb.status("k-1").get("phase")
        if phase in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(rng.uniform(0.5, 3.0))
        op.kill()
        kills += 1
        time.sleep(rng.uniform(0.0, 2.0))  # Jobs finish while nobody watches
        op.start()
    status = rb.wait_phase("k-1", "COMPLETED", "FAILED", timeout=240)
    assert kills >= 3, "the run ended before the operator could be killed three times"
    assert status["phase"] == "COMPLETED", status
    assert [s["attempt"] for s in status["steps"]] == [1] * 8
    jobs = rb.jobs(created["metadata"]["uid"])
    keys = [
        (
            j.metadata.labels["runbook-operator.dev/step"],
            j.metadata.labels["runbook-operator.dev/attempt"],
        )
        for j in jobs
    ]
    assert len(keys) == len(set(keys)) == 8  # one Job per step, none twice
    assert status["audit"]["count"] == status["audit"]["checkpoint"]["count"]
    entries = status["audit"]["recent"]
    assert entries[-1]["eventType"] == "EXECUTION_COMPLETED"


RECEIVER = """
import json, http.server
got = []
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        got.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
        self.send_response(200); self.end_headers()
    def do_GET(self):
        body = json.dumps(got).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()
"""


def test_a_notify_step_reaches_a_webhook_service_by_dns_name(
    rb: Runbooks, cluster: Cluster
) -> None:
    labels = {"app": "receiver"}
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="receiver", labels=labels),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="receiver",
                    image=IMAGE,
                    image_pull_policy="IfNotPresent",
                    command=["python3", "-c", RECEIVER],
                    ports=[client.V1ContainerPort(container_port=8080)],
                )
            ]
        ),
    )
    cluster.core.create_namespaced_pod(rb.namespace, pod)
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="receiver"),
        spec=client.V1ServiceSpec(
            selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]
        ),
    )
    cluster.core.create_namespaced_service(rb.namespace, service)
    rb.runbook(
        "notifier",
        [
            transform("a", expressions={"case": "input.caseId"}),
            {
                "id": "tell",
                "actionType": "NOTIFY",
                "dependsOn": ["a"],
                "config": {
                    "url": f"http://receiver.{rb.namespace}.svc.cluster.local/hook",
                    "message": "execution {executionId} step {stepId}",
                    "retries": 5,
                },
            },
        ],
    )
    rb.execute("n-1", "notifier", input={"caseId": "C-1"})
    status = rb.wait_phase("n-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "COMPLETED", rb.steps("n-1")
    assert rb.output("n-1", "tell")["delivered"] is True
    ip = cluster.core.read_namespaced_pod("receiver", rb.namespace).status.pod_ip
    with urllib.request.urlopen(f"http://{ip}:8080/received", timeout=10) as resp:
        got = json.loads(resp.read())
    assert len(got) == 1 and got[0]["stepId"] == "tell"
    assert got[0]["upstream"] == {"a": ["case"]}
