"""The operator under test, run as a process on this machine against the real cluster.

Step Jobs run as real pods (the project image). The operator itself runs from this checkout so a
test can kill and restart it at will; tests/e2e/test_chart.py covers it installed by Helm.
Each operator watches namespaces by glob, so tests that own an operator never share objects
with the session-wide one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import IMAGE, REPO_ROOT, Cluster, apply_project_crds, wait_for

GROUP, VERSION = "runbook-operator.dev", "v1alpha1"
SHARED_PREFIX = "e2e-op-"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    proc = subprocess.run(
        [str(REPO_ROOT / "hack" / "cluster" / "bin-path.sh"), name],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return proc.stdout.strip().splitlines()[-1]


ADMISSION_RELEASE = "e2e"


def _install_admission_policies(cluster: Cluster) -> None:
    """The chart's admission policies (identity stamps, ledger writers), as `helm install`
    would create them (templates/admission-policies.yaml is their one home). Fails when the
    cluster lacks MutatingAdmissionPolicy: cluster-up enables it (docs/cluster.md)."""
    rendered = subprocess.run(
        [
            _tool("helm"),
            "template",
            ADMISSION_RELEASE,
            str(REPO_ROOT / "charts" / "runbook-operator"),
            "--namespace",
            "default",
            "--show-only",
            "templates/admission-policies.yaml",
            "--set",
            "admission.mutatingPolicy=true",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    env = {**os.environ, **({"KUBECONFIG": cluster.kubeconfig} if cluster.kubeconfig else {})}
    applied = subprocess.run(
        [_tool("kubectl"), "apply", "--server-side", "--force-conflicts", "-f", "-"],
        input=rendered,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert applied.returncode == 0, (
        "cannot install the admission policies (does the apiserver serve "
        "admissionregistration.k8s.io/v1beta1 MutatingAdmissionPolicy? restart the cluster with "
        f"hack/cluster/cluster-up.sh):\n{applied.stderr}"
    )


def _stamped_on_create(cluster: Cluster) -> bool:
    """A server-side dry-run create comes back stamped: the policies are in force."""
    probe = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookExecution",
        "metadata": {"name": f"admission-probe-{uuid.uuid4().hex[:8]}"},
        "spec": {"runbookRef": {"name": "probe"}},
    }
    try:
        made = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            GROUP, VERSION, "default", "runbookexecutions", probe, dry_run="All"
        )
    except ApiException as exc:
        if exc.status in (404, 503):  # a replaced CRD is served again a moment later
            return False
        raise
    return f"{GROUP}/created-by" in ((made.get("metadata") or {}).get("annotations") or {})


@pytest.fixture(scope="session")
def project_crds(cluster: Cluster) -> None:
    """The project's CRDs, applied from crds/ (replaced when they changed), and the chart's
    admission policies."""
    apply_project_crds(cluster)
    _install_admission_policies(cluster)
    wait_for(lambda: _stamped_on_create(cluster), 60, 0.5, "admission policies in force")


@dataclass
class OperatorProcess:
    """A running `python -m runbook_operator`; `restart()`/`kill()` for crash tests."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, *, leading: bool = True) -> None:
        """Start it and wait until it leads its scope (`leading=False`: until its health port
        answers, e.g. for a second operator that is to stand by)."""
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runbook_operator"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        port = self.env["RUNBOOK_HEALTH_PORT"]

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", int(port)), 0.5),
            ):
                return True
            return False

        wait_for(healthy, 60, 0.2, "the operator's health endpoint")
        if leading:
            wait_for(
                lambda: self.readiness().get("state") == "leading" or None,
                90,
                0.3,
                f"the operator leading its scope (log:\n{self.tail(5)})",
            )

    def readiness(self) -> dict[str, Any]:
        """The operator's /readyz answer (state: standby or leading, the lease, its holder);
        {} when it does not answer."""
        port = self.env["RUNBOOK_HEALTH_PORT"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read() or b"{}"))
        except (OSError, ValueError):
            return {}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _signing_key(folder: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path = folder / "ed25519.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def operator_env(cluster: Cluster, folder: Path, namespaces: str, home_ns: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KUBECONFIG=cluster.kubeconfig or os.path.expanduser("~/.kube/config"),
        RUNBOOK_NAMESPACES=namespaces,
        RUNBOOK_EXECUTOR_IMAGE=IMAGE,
        RUNBOOK_IMAGE_PULL_POLICY="IfNotPresent",
        RUNBOOK_SIGNING_KEY_FILE=str(_signing_key(folder)),
        RUNBOOK_OPERATOR_NAMESPACE=home_ns,
        RUNBOOK_METRICS_PORT=str(_free_port()),
        RUNBOOK_HEALTH_PORT=str(_free_port()),
        RUNBOOK_JOB_TTL_SECONDS="900",
        RUNBOOK_RESYNC_SECONDS="30",
        # One identity per operator, kept across its restarts (as a pod's name is): a killed
        # and restarted operator takes its own Lease back at once.
        RUNBOOK_LEASE_IDENTITY=f"e2e-{uuid.uuid4().hex[:10]}",
    )
    return env


def _create_namespace(cluster: Cluster, name: str) -> None:
    cluster.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"runbook-e2e": "1"}))
    )


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The session's operator, watching every `e2e-op-*` namespace."""
    folder = tmp_path_factory.mktemp("operator")
    home = f"{SHARED_PREFIX}home-{uuid.uuid4().hex[:6]}"
    _create_namespace(cluster, home)
    op = OperatorProcess(
        operator_env(cluster, folder, f"{SHARED_PREFIX}*", home), folder / "operator.log"
    )
    op.start()
    yield op
    op.stop()
    print(f"--- operator log (tail) ---\n{op.tail(200)}")
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(home)


def wait_authorized(
    cluster: Cluster,
    namespace: str,
    user: str,
    *,
    verb: str,
    resource: str,
    group: str = "",
    groups: tuple[str, ...] = (),
) -> None:
    """Wait until the apiserver's authorizer applies a binding just written for `user`: RBAC is
    served from a cache that can lag its write under load (a test acting at once gets 403)."""

    def allowed() -> bool:
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=[*groups, "system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb=verb, group=group, resource=resource
                ),
            )
        )
        made = client.AuthorizationV1Api(cluster.api).create_subject_access_review(review)
        return bool(made.status.allowed)

    wait_for(allowed, 60, 0.5, f"{user} may {verb} {resource} in {namespace}")


def impersonating(cluster: Cluster, user: str, group: str | None = None) -> client.ApiClient:
    """An API client whose requests the apiserver treats as `user`'s (Impersonate-User)."""
    api = client.ApiClient(configuration=cluster.api.configuration)
    api.set_default_header("Impersonate-User", user)
    if group:
        api.set_default_header("Impersonate-Group", group)
    return api


@dataclass
class Runbooks:
    """Create Runbooks and RunbookExecutions in one namespace and watch them converge."""

    cluster: Cluster
    namespace: str
    log_tail: Callable[[], str] | None = None
    """The operator's log, added to a timeout's message: what it did is the first question."""
    custom: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.cluster.api)

    def as_user(self, user: str, group: str | None = None) -> Runbooks:
        """The same namespace, every request made as `user` (impersonated; the apiserver
        authenticates it as that user, with `group` and system:authenticated)."""
        api = impersonating(self.cluster, user, group)
        other = Runbooks(self.cluster, self.namespace, self.log_tail)
        other.custom = client.CustomObjectsApi(api)
        return other

    def runbook(self, name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Runbook",
            "metadata": {"name": name},
            "spec": {"id": name, "steps": steps, **spec},
        }
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "runbooks", body
        )  # type: ignore[no-any-return]

    def execute(self, name: str, runbook: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RunbookExecution",
            "metadata": {"name": name},
            "spec": {"runbookRef": {"name": runbook}, **spec},
        }
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "runbookexecutions", body
        )  # type: ignore[no-any-return]

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "runbookexecutions", name
        )  # type: ignore[no-any-return]

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "runbookexecutions", name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "runbookexecutions", name
        )

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.status(name)
            return status if predicate(status) else None

        try:
            return wait_for(check, timeout, 0.5, f"{name}: {what}")  # type: ignore[no-any-return]
        except AssertionError as exc:
            if self.log_tail is None:
                raise
            raise AssertionError(f"{exc}\n--- operator log (tail) ---\n{self.log_tail()}") from None

    def wait_phase(self, name: str, *phases: str, timeout: float = 180) -> dict[str, Any]:
        return self.wait(name, lambda s: s.get("phase") in phases, timeout, f"phase in {phases}")

    def steps(self, name: str) -> dict[str, dict[str, Any]]:
        return {s["stepId"]: s for s in self.status(name).get("steps", [])}

    def jobs(self, uid: str) -> list[Any]:
        selector = f"runbook-operator.dev/execution-uid={uid}"
        return list(
            self.cluster.batch.list_namespaced_job(self.namespace, label_selector=selector).items
        )

    def pods(self, uid: str) -> list[Any]:
        selector = f"runbook-operator.dev/execution-uid={uid}"
        return list(
            self.cluster.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        )

    def events(self, name: str) -> list[tuple[str, str]]:
        items = self.cluster.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return [(e.reason, e.message) for e in items]

    def output(self, name: str, step: str) -> dict[str, Any]:
        from runbook_operator.steps import results

        job = self.steps(name)[step]["jobName"]
        cm = self.cluster.core.read_namespaced_config_map(f"{job}-result", self.namespace)
        body = {"metadata": {"name": cm.metadata.name}, "binaryData": cm.binary_data}
        return results.read_configmap(body).output


@pytest.fixture
def own_operator(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, str]]:
    """An operator of this test's own, watching only its namespace (the test kills it)."""
    ns = f"e2e-kill-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    folder = tmp_path_factory.mktemp("own-operator")
    op = OperatorProcess(operator_env(cluster, folder, ns, ns), folder / "operator.log")
    op.start()
    yield op, ns
    op.stop()
    print(f"--- own operator log (tail) ---\n{op.tail(120)}")
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(ns, propagation_policy="Background")


@pytest.fixture
def op_namespace(cluster: Cluster, operator: OperatorProcess) -> Iterator[str]:
    """A fresh namespace the session's operator watches; deleted afterwards."""
    name = f"{SHARED_PREFIX}{uuid.uuid4().hex[:8]}"
    _create_namespace(cluster, name)
    yield name
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def rb(cluster: Cluster, op_namespace: str, operator: OperatorProcess) -> Runbooks:
    return Runbooks(cluster, op_namespace, operator.tail)


def transform(sid: str, *deps: str, **config: Any) -> dict[str, Any]:
    return {"id": sid, "actionType": "TRANSFORM", "dependsOn": list(deps), "config": config}


def shell_step(sid: str, code: str, *deps: str, **extra: Any) -> dict[str, Any]:
    """A step running `python3 -c code` in the project image (no result: the pod's exit)."""
    return {
        "id": sid,
        "actionType": "CUSTOM",
        "dependsOn": list(deps),
        "container": {
            "image": IMAGE,
            "command": ["python3", "-c", code],
            **extra.pop("container", {}),
        },
        **extra,
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]


def now() -> float:
    return time.time()
