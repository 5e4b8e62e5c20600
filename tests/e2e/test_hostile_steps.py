"""Steps and tenants that attack the operator's result hand-over, on the real cluster (issue 17).

A tenant writes step code and may create pods in its namespace. Here a step writes a gzip bomb
as its result, a tenant plants a pod that claims to be a step's, and three step ids clean to the
same text. The operator must fail the attempt with a reason, keep serving everyone else, and
never take a result the step did not produce.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from runbook_operator import names

from .conftest import IMAGE, Cluster, wait_for
from .operator_env import (
    OperatorProcess,
    Runbooks,
    operator_env,
    shell_step,
    transform,
    wait_authorized,
)

pytestmark = pytest.mark.e2e

OUTPUT_LIMIT = 1024 * 1024
BOMB_MIB = int(os.environ.get("RUNBOOK_E2E_BOMB_MIB", "700"))
"""~710 KB of gzip that inflates to 700 MiB: what put the operator into an OOM crash loop."""

BOMB_STEP = """
import base64, json, os, ssl, struct, urllib.request, zlib
env = os.environ
mib = int(env["BOMB_MIB"])
zeros = bytes(1 << 20)
packer = zlib.compressobj(9, zlib.DEFLATED, -15)
piece = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)  # the same bytes every MiB
crc = 0
for _ in range(mib):
    crc = zlib.crc32(zeros, crc)
header = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF])
bomb = header + piece * mib + packer.flush() + struct.pack("<II", crc, (mib << 20) & 0xFFFFFFFF)
name = env["RUNBOOK_RESULT_CONFIGMAP"]
owner = {
    "apiVersion": "runbook-operator.dev/v1alpha1",
    "kind": "RunbookExecution",
    "name": env["RUNBOOK_EXECUTION"],
    "uid": env["RUNBOOK_EXECUTION_UID"],
}
body = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": name, "ownerReferences": [owner]},
    "binaryData": {"result.json.gz": base64.b64encode(bomb).decode()},
}
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
host = env["KUBERNETES_SERVICE_HOST"]
host = f"[{host}]" if ":" in host else host
url = f"https://{host}:{env['KUBERNETES_SERVICE_PORT']}/api/v1/namespaces/{env['RUNBOOK_NAMESPACE']}/configmaps"
headers = {"Authorization": "Bearer " + open(sa + "token").read(), "Content-Type": "application/json"}
request = urllib.request.Request(url, json.dumps(body).encode(), headers)
urllib.request.urlopen(request, context=ssl.create_default_context(cafile=sa + "ca.crt")).read()
size = int(env.get("REPORTED_BYTES") or mib << 20)
pointer = {"resultConfigMap": name, "sha256": "0" * 64, "bytes": size}
open("/dev/termination-log", "w").write(json.dumps(pointer))
print(f"wrote {len(bomb)} bytes of gzip inflating to {mib} MiB, reported {size} bytes")
"""


def inline(output: dict[str, Any], sleep: float = 0) -> str:
    """Step code that sleeps, then writes `output` as its inline result."""
    result = json.dumps({"success": True, "output": output})
    return f"import time; time.sleep({sleep}); open('/dev/termination-log', 'w').write({result!r})"


# -- an operator of this module's own, so its process, memory and restarts are this test's ------
@dataclass
class Tenants:
    cluster: Cluster
    op: OperatorProcess
    prefix: str

    def namespace(self) -> str:
        name = f"{self.prefix}{uuid.uuid4().hex[:6]}"
        self.cluster.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"runbook-e2e": "1"}))
        )
        return name

    def runbooks(self, namespace: str) -> Runbooks:
        return Runbooks(self.cluster, namespace, self.op.tail)

    def as_tenant(self, namespace: str) -> client.CoreV1Api:
        """The core API as a user who holds only the built-in `admin` role in `namespace`."""
        user = f"tenant-admin@{namespace}"
        rbac = client.RbacAuthorizationV1Api(self.cluster.api)
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "tenant-admin"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "admin",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
        wait_authorized(self.cluster, namespace, user, verb="create", resource="pods")
        api = config.new_client_from_config(config_file=self.cluster.kubeconfig)
        api.set_default_header("Impersonate-User", user)
        return client.CoreV1Api(api)


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.fixture(scope="module")
def tenants(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tenants]:
    prefix = f"e2e-hostile-{uuid.uuid4().hex[:6]}-"
    home = f"{prefix}home"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    folder = tmp_path_factory.mktemp("hostile-operator")
    env = operator_env(cluster, folder, f"{prefix}*", home)
    env["RUNBOOK_MAX_OUTPUT_BYTES"] = str(OUTPUT_LIMIT)
    op = OperatorProcess(env, folder / "operator.log")
    op.start()
    made = Tenants(cluster, op, prefix)
    yield made
    op.stop()
    print(f"--- operator log (tail) ---\n{op.tail(150)}")
    for ns in cluster.core.list_namespace().items:
        if ns.metadata.name.startswith(prefix):
            with contextlib.suppress(ApiException):
                cluster.core.delete_namespace(ns.metadata.name, propagation_policy="Background")


def _step_message(rb: Runbooks, execution: str, step: str) -> str:
    return str(rb.steps(execution)[step].get("message") or "")


# -- (a) a gzip bomb -----------------------------------------------------------------------------
def test_a_gzip_bomb_result_fails_its_step_and_the_operator_serves_everyone_else(
    tenants: Tenants,
) -> None:
    op = tenants.op
    assert op.proc is not None
    pid, starts = op.proc.pid, op.starts
    peak_before = _peak_rss_kib(pid)
    hostile = tenants.runbooks(tenants.namespace())
    other = tenants.runbooks(tenants.namespace())
    env = {"BOMB_MIB": str(BOMB_MIB)}
    hostile.runbook(
        "bomb",
        [
            # the true size in the pointer: refused before anything is read
            shell_step("honest", BOMB_STEP, container={"env": env}),
            # a small size in the pointer: read, and stopped past that size
            shell_step("lying", BOMB_STEP, container={"env": {**env, "REPORTED_BYTES": "1000"}}),
        ],
        maxParallelSteps=2,
    )
    other.runbook(
        "chain",
        [
            transform("a", expressions={"n": "input.n"}),
            transform("b", "a", expressions={"n": "outputs.a.n"}),
            transform("c", "b", expressions={"n": "outputs.b.n"}),
        ],
    )
    hostile.execute("boom", "bomb")
    other.execute("calm", "chain", input={"n": 5})

    status = hostile.wait_phase("boom", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "FAILED", status
    honest, lying = (
        _step_message(hostile, "boom", "honest"),
        _step_message(hostile, "boom", "lying"),
    )
    assert (
        f"lost: result is {BOMB_MIB << 20} bytes, larger than the {2 * OUTPUT_LIMIT + (1 << 20)}"
        f"-byte result limit for the {OUTPUT_LIMIT}-byte output limit (" in honest
    ), honest
    assert re.search(
        r"lost: result ConfigMap \S+-result holds more than the 1000 bytes the pod reported: "
        r"written by someone else",
        lying,
    ), lying
    assert other.wait_phase("calm", "COMPLETED", "FAILED", timeout=240)["phase"] == "COMPLETED"
    assert other.output("calm", "c") == {"n": 5}

    # the same process all along, and it never held the inflated result
    assert op.proc.poll() is None, op.tail()
    assert (op.proc.pid, op.starts) == (pid, starts)
    grown_mib = (_peak_rss_kib(pid) - peak_before) / 1024
    assert grown_mib < 150, f"the operator's peak memory grew by {grown_mib:.0f} MiB"


# -- (b) pods that claim to be a step's ----------------------------------------------------------
FORGED = {"v": "forged"}
REAL = {"v": "real"}


def _forge(
    tenant: client.CoreV1Api, namespace: str, name: str, labels: dict[str, str]
) -> client.V1Pod:
    """A pod the tenant creates by hand: `labels`, and an inline success with FORGED output."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "step",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", inline(FORGED)],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    return tenant.create_namespaced_pod(namespace, body)


def _wait_terminated(rb: Runbooks, name: str) -> None:
    def done() -> bool:
        pod = rb.cluster.core.read_namespaced_pod(name, rb.namespace)
        return pod.status.phase in ("Succeeded", "Failed")

    wait_for(done, 120, 1, f"pod {name} to end")


def _real_pod(rb: Runbooks, uid: str) -> client.V1Pod:
    def found() -> client.V1Pod | None:
        pods = [p for p in rb.pods(uid) if p.metadata.owner_references]
        return pods[0] if pods else None

    return wait_for(found, 120, 0.5, "the step's pod")  # type: ignore[no-any-return]


def test_a_pod_with_the_steps_labels_is_ignored_and_the_real_result_counts(
    tenants: Tenants,
) -> None:
    namespace = tenants.namespace()
    rb, tenant = tenants.runbooks(namespace), tenants.as_tenant(namespace)
    rb.runbook("slow", [shell_step("work", inline(REAL, sleep=25))])
    uid = rb.execute("victim", "slow")["metadata"]["uid"]
    real = _real_pod(rb, uid)
    project = {
        k: v
        for k, v in real.metadata.labels.items()
        if k.startswith(("runbook-operator.dev/", "app.kubernetes.io/"))
    }
    time.sleep(2)  # the forged pod is the newer one (creationTimestamp has whole seconds)
    forged = _forge(tenant, namespace, f"{real.metadata.name}-forged", project)
    _wait_terminated(rb, forged.metadata.name)
    time.sleep(3)  # the operator has seen the forged pod end (its watch wakes the execution)
    assert rb.steps("victim")["work"]["status"] == "RUNNING", rb.steps("victim")
    status = rb.wait_phase("victim", "COMPLETED", "FAILED", timeout=180)
    assert status["phase"] == "COMPLETED", status
    assert rb.output("victim", "work") == REAL


def test_a_finished_pod_the_job_adopts_never_delivers_its_result(tenants: Tenants) -> None:
    """The Job controller adopts any orphan pod that carries its controller-uid label, even one
    that has already succeeded, and counts it: the Job completes and the real pod is deleted.
    The copy then holds a genuine controller reference and the last word, but it ran something
    else, so the attempt fails with that reason instead of taking its result."""
    namespace = tenants.namespace()
    rb, tenant = tenants.runbooks(namespace), tenants.as_tenant(namespace)
    rb.runbook("slow", [shell_step("work", inline(REAL, sleep=90))])
    uid = rb.execute("victim", "slow")["metadata"]["uid"]
    real = _real_pod(rb, uid)
    project = {
        k: v
        for k, v in real.metadata.labels.items()
        if k.startswith(("runbook-operator.dev/", "app.kubernetes.io/"))
    }
    time.sleep(2)  # the copy is the newer pod
    copy = _forge(tenant, namespace, f"{real.metadata.name}-copy", project)
    _wait_terminated(rb, copy.metadata.name)
    job_uid = real.metadata.labels["batch.kubernetes.io/controller-uid"]
    tenant.patch_namespaced_pod(
        copy.metadata.name,
        namespace,
        {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": job_uid}}},
    )

    def adopted() -> bool:
        pod = rb.cluster.core.read_namespaced_pod(copy.metadata.name, namespace)
        return any(
            ref.controller and ref.uid == job_uid for ref in pod.metadata.owner_references or []
        )

    wait_for(adopted, 60, 0.5, "the Job controller to adopt the copy")
    status = rb.wait_phase("victim", "COMPLETED", "FAILED", timeout=120)
    message = _step_message(rb, "victim", "work")
    assert status["phase"] == "FAILED", (status, rb.output("victim", "work"))
    # the real pod is killed when the adopted copy completes the Job, or gone already
    assert (
        f"pod {copy.metadata.name} claims to be Job {rb.steps('victim')['work']['jobName']}'s "
        "but does not run what the Job says (the container's command differs): its result is "
        "not trusted" in message
    ), message


# -- (c) step ids that clean to the same label text ----------------------------------------------
def test_steps_a_a_dash_and_a_underscore_each_get_their_own_result(tenants: Tenants) -> None:
    rb = tenants.runbooks(tenants.namespace())
    ids = ["a", "a-", "a_"]
    rb.runbook("near", [shell_step(sid, inline({"id": sid}, sleep=i)) for i, sid in enumerate(ids)])
    uid = rb.execute("same-ish", "near")["metadata"]["uid"]
    status = rb.wait_phase("same-ish", "COMPLETED", "FAILED", timeout=180)
    assert status["phase"] == "COMPLETED", status
    for sid in ids:
        assert rb.output("same-ish", sid) == {"id": sid}
    labels = {j.metadata.labels["runbook-operator.dev/step"] for j in rb.jobs(uid)}
    assert labels == {names.label_value(sid) for sid in ids}
    assert len(labels) == 3
