"""RunbookTrigger on the real cluster with real Alertmanagers (issue 20).

Alerts are posted to Alertmanager's own API (/api/v2/alerts); Alertmanager calls the receiver
(run from this checkout) with the bearer token of its `http_config.authorization`; the
session's operator runs what the receiver creates. The limits are checked by posting to the
receiver directly and concurrently, where they are easiest to break.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Cluster, wait_for
from .operator_env import (
    GROUP,
    VERSION,
    OperatorProcess,
    Runbooks,
    _create_namespace,
    _install_admission_policies,
    operator_env,
    shell_step,
    wait_authorized,
)
from .test_gitops_health import Judge, judged
from .test_gitops_health import judge as judge  # the fixture (kstatus and gopher-lua)
from .test_runbookctl_cluster import ctl
from .trigger_env import Process, http, post_alerts, rfc3339, start_alertmanager, start_receiver

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-" + uuid.uuid4().hex
TRIGGER_LABEL = f"{GROUP}/trigger"


@pytest.fixture(scope="module")
def trigger_operator(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, str]]:
    """An operator of this module's own, watching only `e2e-trg-<id>-*`: on a shared cluster
    the session operators of other checkouts watch `e2e-op-*` and would run these executions
    with their code."""
    prefix = f"e2e-trg-{uuid.uuid4().hex[:6]}-"
    home = f"{prefix}home"
    _create_namespace(cluster, home)
    folder = tmp_path_factory.mktemp("trigger-operator")
    op = OperatorProcess(operator_env(cluster, folder, f"{prefix}*", home), folder / "operator.log")
    op.start()
    yield op, prefix
    op.stop()
    print(f"--- trigger operator log (tail) ---\n{op.tail(120)}")
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(home)


@pytest.fixture
def rb(cluster: Cluster, trigger_operator: tuple[OperatorProcess, str]) -> Iterator[Runbooks]:
    """A fresh namespace the module's operator watches; deleted afterwards."""
    op, prefix = trigger_operator
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    _create_namespace(cluster, name)
    yield Runbooks(cluster, name, op.tail)
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def receiver(cluster: Cluster, project_crds: None, tmp_path: Path) -> Iterator[str]:
    proc, base = start_receiver(cluster, tmp_path)
    yield base
    proc.stop()
    print(f"--- receiver log (tail) ---\n{proc.tail(80)}")


def _trigger_stamped(cluster: Cluster) -> bool:
    probe = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookTrigger",
        "metadata": {"name": f"probe-{uuid.uuid4().hex[:8]}"},
        "spec": {"runbookRef": {"name": "x"}, "schedule": {"cron": "* * * * *"}},
    }
    try:
        made = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            GROUP, VERSION, "default", "runbooktriggers", probe, dry_run="All"
        )
    except ApiException:
        return False
    return f"{GROUP}/created-by" in ((made.get("metadata") or {}).get("annotations") or {})


@pytest.fixture
def armed(cluster: Cluster, rb: Runbooks) -> Runbooks:
    """A long-running runbook and the token Secret in the test's namespace; this checkout's
    admission policies applied again (on a shared cluster another checkout's may be in force)."""
    _install_admission_policies(cluster)
    wait_for(lambda: _trigger_stamped(cluster), 60, 0.5, "triggers stamped at admission")
    rb.runbook("answer-alert", [shell_step("long", "import time; time.sleep(600)")])
    cluster.core.create_namespaced_secret(
        rb.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="am-token"),
            data={"token": base64.b64encode(TOKEN.encode()).decode()},
        ),
    )
    return rb


def make_trigger(rb: Runbooks, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookTrigger",
        "metadata": {"name": name},
        "spec": {
            "runbookRef": {"name": "answer-alert"},
            "alertmanager": {
                "match": {"alertname": "HighErrorRate"},
                "onResolved": "cancel",
                "tokenSecretRef": {"name": "am-token", "key": "token"},
            },
            "input": {"alertName": "commonLabels.alertname", "service": "alerts[0].labels.service"},
            **spec,
        },
    }
    for _ in range(3):
        try:
            return rb.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
                GROUP, VERSION, rb.namespace, "runbooktriggers", body
            )
        except ApiException as exc:
            # On a shared cluster another checkout may have applied its older policies (no
            # stamp for triggers) meanwhile: apply ours again.
            if exc.status != 403 or "created-by" not in str(exc.body):
                raise
            _install_admission_policies(rb.cluster)
            wait_for(lambda: _trigger_stamped(rb.cluster), 60, 0.5, "triggers stamped")
    raise AssertionError("the trigger admission stamp keeps being replaced")


def trigger_status(rb: Runbooks, name: str) -> dict[str, Any]:
    body = rb.custom.get_namespaced_custom_object(
        GROUP, VERSION, rb.namespace, "runbooktriggers", name
    )
    return dict(body.get("status") or {})


def executions_of(rb: Runbooks, trigger: str) -> list[dict[str, Any]]:
    listed = rb.custom.list_namespaced_custom_object(
        GROUP,
        VERSION,
        rb.namespace,
        "runbookexecutions",
        label_selector=f"{TRIGGER_LABEL}={trigger}",
    )
    return list(listed["items"])


def alert(service: str, starts: float, *, ends: float | None = None) -> dict[str, Any]:
    out = {
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": service},
        "annotations": {"summary": f"errors on {service}"},
        "startsAt": rfc3339(starts),
        "generatorURL": f"http://prometheus.example/graph?g0.expr=errors%7Bservice%3D%22{service}%22%7D",
    }
    if ends is not None:
        out["endsAt"] = rfc3339(ends)
    return out


def webhook_message(rb: Runbooks, *services: str, status: str = "firing") -> dict[str, Any]:
    """A version-4 message as Alertmanager sends it (for posting to the receiver directly)."""
    starts = "2026-12-03T10:00:00Z"
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "runbooks",
        "groupLabels": {},
        "commonLabels": {"alertname": "HighErrorRate"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "HighErrorRate", "service": s},
                "annotations": {},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example/graph",
                "fingerprint": uuid.uuid5(uuid.NAMESPACE_URL, s).hex[:16],
            }
            for s in services
        ],
    }


def test_an_alert_through_two_alertmanagers_starts_one_execution_and_resolving_cancels_it(
    armed: Runbooks, receiver: str, tmp_path: Path
) -> None:
    rb = armed
    trigger = make_trigger(rb, "high-error-rate")
    creator = trigger["metadata"]["annotations"][f"{GROUP}/created-by"]
    url = f"{receiver}/alertmanager/{rb.namespace}/high-error-rate"
    ams: list[Process] = []
    try:
        bases = []
        for i in range(2):
            proc, base = start_alertmanager(tmp_path, i, url, TOKEN)
            ams.append(proc)
            bases.append(base)
        starts = time.time() - 5
        for base in bases:  # Prometheus sends the same alert (same startsAt) to each
            post_alerts(base, [alert("checkout", starts)])

        def both_delivered() -> dict[str, Any] | None:
            counts = trigger_status(rb, "high-error-rate").get("counts") or {}
            return counts if counts.get("received", 0) >= 2 else None

        counts = wait_for(both_delivered, 60, 0.5, "both Alertmanagers' notifications")
        made = executions_of(rb, "high-error-rate")
        assert len(made) == 1, json.dumps([m["metadata"]["name"] for m in made])
        assert counts["started"] == 1 and counts["duplicates"] >= 1, counts
        name = made[0]["metadata"]["name"]
        ann = made[0]["metadata"]["annotations"]
        assert ann[f"{GROUP}/triggered-by"] == "high-error-rate"
        assert ann[f"{GROUP}/trigger-created-by"] == creator
        event = json.loads(ann[f"{GROUP}/trigger-event"])
        assert event["labels"]["service"] == "checkout" and event["generatorURL"].startswith(
            "http://prometheus"
        )
        assert made[0]["spec"]["input"] == {"alertName": "HighErrorRate", "service": "checkout"}

        # The same alert posted again to one of them: Alertmanager does not notify an unchanged
        # group again before repeat_interval; the receiver would answer a re-send as a duplicate.
        post_alerts(bases[0], [alert("checkout", starts)])

        # The ledger's first entry names the trigger, its creator and the alert.
        status = rb.wait(
            name, lambda s: bool((s.get("audit") or {}).get("recent")), 120, "a ledger"
        )
        first = status["audit"]["recent"][0]
        assert first["eventType"] == "EXECUTION_STARTED", first
        recorded = first["details"]["trigger"]
        assert recorded["name"] == "high-error-rate" and recorded["createdBy"] == creator
        assert recorded["event"]["fingerprint"] == event["fingerprint"]
        assert recorded["event"]["labels"]["service"] == "checkout"
        assert recorded["event"]["generatorURL"] == event["generatorURL"]

        # Resolved (endsAt in the past), through one Alertmanager: onResolved: cancel.
        post_alerts(bases[0], [alert("checkout", starts, ends=time.time() - 1)])
        rb.wait_phase(name, "CANCELLED", timeout=120)
        cancelled = rb.get(name)
        assert cancelled["spec"]["cancel"] is True
        assert (
            cancelled["metadata"]["annotations"][f"{GROUP}/control-of"]
            == "paused=false,cancel=true"
        )
        assert len(executions_of(rb, "high-error-rate")) == 1
        # `kubectl runbook triggers` shows its last firing.
        listed = ctl(rb.cluster, "triggers", "-n", rb.namespace)
        assert listed.returncode == 0, listed.stderr
        (row,) = [line for line in listed.stdout.splitlines() if "high-error-rate" in line]
        assert "alertmanager" in row and " ago" in row, listed.stdout
        wait_for(
            lambda: (
                (trigger_status(rb, "high-error-rate").get("counts") or {}).get("cancelled") == 1
            ),
            30,
            0.5,
            "the cancel counted",
        )
    finally:
        for proc in ams:
            proc.stop()
            print(f"--- {proc.name} log (tail) ---\n{proc.tail(30)}")


def test_a_wrong_token_or_a_bad_message_is_refused_and_creates_nothing(
    armed: Runbooks, receiver: str
) -> None:
    rb = armed
    make_trigger(rb, "guarded")
    url = f"{receiver}/alertmanager/{rb.namespace}/guarded"
    message = webhook_message(rb, "api")
    status, body = http("POST", url, message, {"Authorization": "Bearer wrong"})
    assert status == 401 and "token" in body["error"], body
    status, body = http("POST", url, message)
    assert status == 401, body
    status, body = http(
        "POST", url, {"version": "4", "status": "firing"}, {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 422 and "alerts" in body["error"], body
    status, body = http("POST", url, raw=b"{" * 100, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 400, body
    big = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    status, body = http("POST", url, raw=big, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 413, body
    status, body = http(
        "POST",
        f"{receiver}/alertmanager/{rb.namespace}/nope",
        message,
        {"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 404, body
    assert executions_of(rb, "guarded") == []
    # The right token, the same message: one execution; sent again: a duplicate, answered 200.
    assert http("POST", url, message, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    status, body = http("POST", url, message, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and len(body["duplicates"]) == 1, body
    assert len(executions_of(rb, "guarded")) == 1


def _post_concurrently(url: str, messages: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    with ThreadPoolExecutor(len(messages)) as pool:
        return list(
            pool.map(lambda m: http("POST", url, m, {"Authorization": f"Bearer {TOKEN}"}), messages)
        )


def test_rate_limit_and_max_concurrent_hold_exactly(armed: Runbooks, receiver: str) -> None:
    rb = armed
    make_trigger(rb, "rated", rateLimit={"perMinute": 3})
    make_trigger(rb, "capped", maxConcurrent=2)
    services = [f"svc-{i}" for i in range(7)]
    for trigger, allowed, reason in (("rated", 3, "rateLimit"), ("capped", 2, "maxConcurrent")):
        url = f"{receiver}/alertmanager/{rb.namespace}/{trigger}"
        answers = _post_concurrently(url, [webhook_message(rb, s) for s in services])
        assert all(status == 200 for status, _ in answers), answers
        started = sum(len(body["started"]) for _, body in answers)
        skipped = sum(len(body["skipped"].get(reason, [])) for _, body in answers)
        assert (started, skipped) == (allowed, len(services) - allowed), answers
        assert len(executions_of(rb, trigger)) == allowed
        expected = len(services) - allowed

        def counted(t: str = trigger, r: str = reason, n: int = expected) -> bool:
            return (trigger_status(rb, t).get("skipped") or {}).get(r) == n

        wait_for(counted, 30, 0.5, f"{trigger}: skipped counted")


def test_only_the_receiver_may_create_an_execution_naming_a_trigger(
    armed: Runbooks, cluster: Cluster
) -> None:
    rb = armed
    make_trigger(rb, "high-error-rate")
    tenant = f"tenant-{uuid.uuid4().hex[:6]}"
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    # `admin` in the namespace plus every verb on the runbook kinds, as the chart's aggregated
    # roles give it: everything but the custom verb `fire`.
    rbac.create_namespaced_role(
        rb.namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="runbooks"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[GROUP],
                    resources=["runbooks", "runbookexecutions", "runbooktriggers"],
                    verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                )
            ],
        ),
    )
    for kind, role in (("ClusterRole", "admin"), ("Role", "runbooks")):
        rbac.create_namespaced_role_binding(
            rb.namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name=f"tenant-{role}"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind=kind, name=role
                ),
                subjects=[
                    client.RbacV1Subject(
                        kind="User", name=tenant, api_group="rbac.authorization.k8s.io"
                    )
                ],
            ),
        )
    wait_authorized(
        cluster, rb.namespace, tenant, verb="create", resource="runbookexecutions", group=GROUP
    )
    as_tenant = rb.as_user(tenant)
    forged = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookExecution",
        "metadata": {
            "name": "forged",
            "annotations": {
                f"{GROUP}/triggered-by": "high-error-rate",
                f"{GROUP}/trigger-created-by": "ceo",
            },
        },
        "spec": {"runbookRef": {"name": "answer-alert"}},
    }
    with pytest.raises(ApiException) as refused:
        as_tenant.custom.create_namespaced_custom_object(
            GROUP, VERSION, rb.namespace, "runbookexecutions", forged
        )
    assert refused.value.status in (403, 422) and "triggered-by" in str(refused.value.body), (
        refused.value.body
    )
    labelled = {
        **forged,
        "metadata": {"name": "forged-2", "labels": {TRIGGER_LABEL: "high-error-rate"}},
    }
    with pytest.raises(ApiException) as refused:
        as_tenant.custom.create_namespaced_custom_object(
            GROUP, VERSION, rb.namespace, "runbookexecutions", labelled
        )
    assert refused.value.status in (403, 422), refused.value.body
    # Without those, the tenant still starts executions as before.
    plain = {**forged, "metadata": {"name": "plain"}}
    as_tenant.custom.create_namespaced_custom_object(
        GROUP, VERSION, rb.namespace, "runbookexecutions", plain
    )


def _armed_status(rb: Runbooks, name: str) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        obj = rb.custom.get_namespaced_custom_object(
            GROUP, VERSION, rb.namespace, "runbooktriggers", name
        )
        status = obj.get("status") or {}
        done = status.get("observedGeneration") == obj["metadata"]["generation"] and status.get(
            "conditions"
        )
        return obj if done else None

    return wait_for(settled, 60, 0.5, f"trigger {name}: status of its generation")  # type: ignore[no-any-return]


def test_trigger_health_on_live_objects(
    armed: Runbooks, cluster: Cluster, namespace: str, judge: Judge
) -> None:
    """kstatus (the real library) and Argo CD's health.lua (gopher-lua, and lupa) on triggers
    as the operator left them; RUNBOOK_CAPTURE_ARGOCD_FIXTURES=1 records them as fixtures."""
    rb = armed
    make_trigger(rb, "armed")
    make_trigger(rb, "suspended", suspend=True)
    make_trigger(rb, "no-runbook", runbookRef={"name": "missing"})
    make_trigger(
        rb,
        "invalid",
        alertmanager={"matchRegex": {"severity": "(("}, "tokenSecretRef": {"name": "am-token"}},
    )
    cases = {
        "armed": ("Current", "Healthy"),
        "suspended": ("Current", "Suspended"),
        "no-runbook": ("InProgress", "Progressing"),
        "invalid": ("Failed", "Degraded"),
    }
    for case, (kstatus, health) in cases.items():
        obj = _armed_status(rb, case)
        judged(judge, "RunbookTrigger", case, obj, kstatus, health)
    # Where no operator watches: no status at all.
    unseen = Runbooks(cluster, namespace)
    made = make_trigger(unseen, "unseen")
    judged(judge, "RunbookTrigger", "no-status", made, "Current", "Progressing")
