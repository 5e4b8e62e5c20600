"""`runbookctl` (and `kubectl runbook`) against RunbookExecution objects made by hand on a real
kube-apiserver: no operator runs, so the tests write the status an operator would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_operator.kube import EXECUTIONS, Kube
from runbook_operator.ledger.store import LedgerStore
from runbook_operator.names import ExecutionRef, execution_id
from tests.unit.ledger.helpers import chain_of

from .conftest import Cluster, wait_for
from .test_project_crds import project_crds  # noqa: F401  (fixture)

# The project's CRDs, applied by the same fixture as the CRD tests.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("project_crds")]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kube(cluster: Cluster) -> Kube:
    return Kube.connect(cluster.kubeconfig)


def _env(cluster: Cluster) -> dict[str, str]:
    env = dict(os.environ)
    if cluster.kubeconfig:
        env["KUBECONFIG"] = cluster.kubeconfig
    env["COLUMNS"] = "200"
    return env


def ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbookctl.cli", *args],
        capture_output=True,
        text=True,
        env=_env(cluster),
        timeout=120,
        check=False,
    )


def _make(kube: Kube, namespace: str, name: str, status: dict[str, Any] | None) -> dict[str, Any]:
    body = {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "RunbookExecution",
        "metadata": {"name": name},
        "spec": {"runbookRef": {"name": "demo-runbook"}, "input": {"n": 1}},
    }
    obj = kube.create(EXECUTIONS, namespace, body)
    if status is not None:
        obj = kube.patch(EXECUTIONS, namespace, name, {"status": status}, subresource="status")
    return obj


def _status(phase: str, audit: dict[str, Any] | None = None) -> dict[str, Any]:
    t = "2026-01-15T10:00:0{}.000Z"
    out: dict[str, Any] = {
        "phase": phase,
        "progress": "1/3",
        "steps": [
            {
                "stepId": "ingest",
                "status": "SUCCEEDED",
                "attempt": 1,
                "startedAt": t.format(0),
                "finishedAt": t.format(2),
                "jobName": "x-ingest-abc123-1",
            },
            {
                "stepId": "enrich",
                "status": "RUNNING",
                "attempt": 2,
                "startedAt": t.format(3),
                "message": "attempt 1 failed: exit code 3",
                "jobName": "x-enrich-def456-2",
            },
            {"stepId": "report", "status": "PENDING", "attempt": 0},
        ],
    }
    if audit is not None:
        out["audit"] = audit
    return out


def test_get_and_status(cluster: Cluster, kube: Kube, namespace: str) -> None:
    _make(kube, namespace, "alpha", _status("RUNNING"))
    _make(kube, namespace, "beta", None)
    listing = ctl(cluster, "get", "-n", namespace)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RUNBOOK", "PHASE", "PROGRESS", "PAUSED", "AGE"]
    assert lines[1].split()[:4] == ["alpha", "demo-runbook", "RUNNING", "1/3"]
    assert lines[2].split()[:4] == ["beta", "demo-runbook", "PENDING", "-"]
    as_json = json.loads(ctl(cluster, "get", "-n", namespace, "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in as_json["items"]] == ["alpha", "beta"]
    one = yaml.safe_load(ctl(cluster, "get", "alpha", "-n", namespace, "-o", "yaml").stdout)
    assert one["status"]["phase"] == "RUNNING"
    status = ctl(cluster, "status", "alpha", "-n", namespace)
    assert status.returncode == 0, status.stderr
    assert "alpha · demo-runbook · RUNNING · 1/3" in status.stdout
    row = next(line for line in status.stdout.splitlines() if "ingest" in line)
    assert "SUCCEEDED" in row and "2.0s" in row and "x-ingest-abc123-1" in row
    assert "attempt 1 failed: exit code 3" in status.stdout
    as_json = json.loads(ctl(cluster, "status", "alpha", "-n", namespace, "-o", "json").stdout)
    assert as_json["steps"][1]["attempt"] == 2
    missing = ctl(cluster, "status", "nope", "-n", namespace)
    assert missing.returncode == 1 and "not found" in missing.stderr


def _spec(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(kube.get(EXECUTIONS, namespace, name)["spec"])


def test_pause_resume_cancel_patch_the_spec(cluster: Cluster, kube: Kube, namespace: str) -> None:
    _make(kube, namespace, "gamma", _status("RUNNING"))
    assert ctl(cluster, "pause", "gamma", "-n", namespace).returncode == 0
    assert _spec(kube, namespace, "gamma")["paused"] is True
    assert ctl(cluster, "resume", "gamma", "-n", namespace).returncode == 0
    assert _spec(kube, namespace, "gamma")["paused"] is False
    proc = ctl(cluster, "cancel", "gamma", "-n", namespace)
    assert proc.returncode == 0 and "spec.cancel=true" in proc.stdout
    assert _spec(kube, namespace, "gamma")["cancel"] is True


def test_control_of_a_finished_execution_is_refused(
    cluster: Cluster, kube: Kube, namespace: str
) -> None:
    obj = _make(kube, namespace, "done", _status("COMPLETED"))
    exec_id = execution_id(namespace, "done", obj["metadata"]["uid"])
    for action in ("pause", "resume", "cancel"):
        proc = ctl(cluster, action, "done", "-n", namespace)
        assert proc.returncode == 1
        assert f"cannot {action}: execution {exec_id} is already COMPLETED" in proc.stderr
    spec = _spec(kube, namespace, "done")
    assert "paused" not in spec and "cancel" not in spec


def test_logs_and_verify_follow_the_object_and_survive_its_deletion(
    cluster: Cluster, kube: Kube, namespace: str
) -> None:
    obj = _make(kube, namespace, "delta", None)
    uid = obj["metadata"]["uid"]
    exec_id = execution_id(namespace, "delta", uid)
    store = LedgerStore(kube, ExecutionRef(namespace, "delta", uid))
    chain = chain_of(8, lid=ExecutionRef(namespace, "delta", uid))
    store.append(chain.entries)
    audit = {"count": 8, "head": chain.head, "recent": chain.entries[-3:]}
    kube.patch(
        EXECUTIONS, namespace, "delta", {"status": _status("RUNNING", audit)}, subresource="status"
    )
    logs = ctl(cluster, "logs", "delta", "-n", namespace)
    assert logs.returncode == 0, logs.stderr
    assert "STEP_STARTED s7" in logs.stdout and f"{exec_id} · 8 entries" in logs.stdout
    ok = ctl(cluster, "verify", "delta", "-n", namespace, "-o", "json")
    report = json.loads(ok.stdout)
    assert ok.returncode == 0 and report["valid"] and report["statusChecked"]
    # A status that claims more than the ledger holds is caught.
    bad_audit = {**audit, "count": 9}
    kube.patch(
        EXECUTIONS, namespace, "delta", {"status": {"audit": bad_audit}}, subresource="status"
    )
    bad = ctl(cluster, "verify", "delta", "-n", namespace)
    assert bad.returncode == 1 and "TAMPERED at entry 8" in bad.stdout
    # The object goes (cancelled first: admission refuses deleting a running one unrecorded);
    # its ledger stays and still verifies.
    kube.patch(EXECUTIONS, namespace, "delta", {"spec": {"cancel": True}})
    kube.delete(EXECUTIONS, namespace, "delta")
    wait_for(lambda: ctl(cluster, "get", "delta", "-n", namespace).returncode == 1, 30)
    after = ctl(cluster, "verify", "delta", "-n", namespace)
    assert after.returncode == 0 and after.stdout.startswith(f"OK {exec_id}: 8 entries")
    assert "no signed checkpoint" in after.stdout
    assert (
        json.loads(ctl(cluster, "logs", "delta", "-n", namespace, "-o", "json").stdout)
        == chain.entries
    )


def test_output_prints_a_steps_result_checked_against_the_status(
    cluster: Cluster, kube: Kube, namespace: str
) -> None:
    from runbook_engine.canonical import canonical_sha256
    from runbook_engine.contract import StepExecutorResult
    from runbook_operator import names
    from runbook_operator.kube import CONFIGMAPS
    from runbook_operator.steps import results

    status = _status("RUNNING")
    ingest = status["steps"][0]
    produced = {"records": [1, 2, {"deep": "ü"}], "count": 3}
    raw, sha = results.encode(StepExecutorResult(success=True, output=produced))
    cm = results.configmap(names.result_configmap(ingest["jobName"]), raw, sha, {}, None)
    kube.create(CONFIGMAPS, namespace, cm)
    ingest["outputHash"] = canonical_sha256(produced)
    _make(kube, namespace, "zeta", status)
    proc = ctl(cluster, "output", "zeta", "ingest", "-n", namespace)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == produced
    as_yaml = ctl(cluster, "output", "zeta", "ingest", "-n", namespace, "-o", "yaml")
    assert yaml.safe_load(as_yaml.stdout) == produced
    running = ctl(cluster, "output", "zeta", "enrich", "-n", namespace)
    assert running.returncode == 1 and "'enrich' is RUNNING: it has no output" in running.stderr
    ingest["outputHash"] = "0" * 64
    kube.patch(EXECUTIONS, namespace, "zeta", {"status": status}, subresource="status")
    forged = ctl(cluster, "output", "zeta", "ingest", "-n", namespace)
    assert forged.returncode == 1 and "does not match status outputHash" in forged.stderr


def _kubectl() -> str | None:
    try:
        out = subprocess.run(
            [str(REPO / "hack" / "cluster" / "bin-path.sh"), "kubectl"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.strip() or None
    except (subprocess.SubprocessError, OSError):
        return shutil.which("kubectl")


def test_kubectl_plugin(cluster: Cluster, kube: Kube, namespace: str) -> None:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no kubectl binary")
    plugin = Path(sys.executable).with_name("kubectl-runbook")
    assert plugin.exists(), "the kubectl-runbook console script is not installed"
    _make(kube, namespace, "epsilon", _status("PAUSED"))
    env = _env(cluster)
    env["PATH"] = f"{plugin.parent}:{env.get('PATH', '')}"
    proc = subprocess.run(
        [kubectl, "runbook", "get", "epsilon", "-n", namespace],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epsilon" in proc.stdout and "PAUSED" in proc.stdout
