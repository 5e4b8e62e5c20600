"""Secrets for steps, the Kubernetes way (issue 17, item 4), on the real cluster.

A step gets a Secret through `container.envFrom` or `container.env[].valueFrom.secretKeyRef`;
the kubelet injects the value. Afterwards the value is searched for in every object of the
namespace the operator or a step could have written it to: the Runbook and the execution
(spec and status), every ConfigMap (the pinned definition, the ledger segments, the result
ConfigMaps: gzip-decoded), every Event, the Jobs and pods (which carry only the reference), and
the operator's log. It must appear nowhere.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import secrets
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import IMAGE, Cluster, apply_project_crds, wait_for
from .operator_env import OperatorProcess, Runbooks, operator_env, shell_step, transform
from .test_operator_resilience import RECEIVER

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def prefix() -> str:
    """Namespaces of this module: `e2e-sec-<id>-*`."""
    return f"e2e-sec-{uuid.uuid4().hex[:6]}-"


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, project_crds: None, tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> Iterator[OperatorProcess]:
    """This module's own operator, from this checkout, watching only its namespaces: on a
    shared cluster another checkout's session operator also watches `e2e-op-*`, and an older
    one would refuse the new fields."""
    home = f"{prefix}home"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=home)))
    folder = tmp_path_factory.mktemp("secrets-operator")
    op = OperatorProcess(operator_env(cluster, folder, f"{prefix}*", home), folder / "operator.log")
    op.start()
    yield op
    op.stop()
    print(f"--- operator log (tail) ---\n{op.tail(200)}")
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(home)


@pytest.fixture
def op_namespace(cluster: Cluster, operator: OperatorProcess, prefix: str) -> Iterator[str]:
    """A fresh namespace this module's operator watches; deleted afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"runbook-e2e": "1"}))
    )
    yield name
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(name, propagation_policy="Background")


def _crds_of_this_checkout(cluster: Cluster) -> None:
    """Apply crds/ again: the shared cluster's CRDs are replaced by every e2e session, also by
    checkouts whose schema types `env` as a map and has no `envFrom`."""
    apply_project_crds(cluster, only_if_changed=True)


@pytest.fixture
def rb(cluster: Cluster, op_namespace: str, operator: OperatorProcess) -> Runbooks:
    _crds_of_this_checkout(cluster)
    return Runbooks(cluster, op_namespace, operator.tail)


# The step checks the variable and reports only that it is there and how long it is.
CHECK_VAR = (
    "import json, os, sys; v = os.environ.get(sys.argv[1]); "
    "open('/dev/termination-log', 'w').write(json.dumps({'success': v is not None, "
    "'output': {'present': v is not None, 'length': len(v or '')}, "
    "'error': None if v is not None else sys.argv[1] + ' is not set'}))"
)


def check_step(sid: str, var: str, **container: Any) -> dict[str, Any]:
    step = shell_step(sid, CHECK_VAR, container=container)
    step["container"]["args"] = [var]
    return step


def create_secret(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> None:
    cluster.core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
    )


def _decoded(data: dict[str, str] | None) -> list[str]:
    """binaryData values as text: gzip (results, segments) decompressed."""
    out = []
    for value in (data or {}).values():
        raw = base64.b64decode(value)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        out.append(raw.decode("utf-8", errors="replace"))
    return out


def everything_written(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> dict[str, str]:
    """Where-it-was-found → text, for every place a leaked value could sit."""
    api = cluster.api
    custom = client.CustomObjectsApi(api)
    found: dict[str, str] = {}
    for plural in ("runbooks", "runbookexecutions"):
        items = custom.list_namespaced_custom_object(
            "runbook-operator.dev", "v1alpha1", namespace, plural
        )["items"]
        for obj in items:
            found[f"{plural}/{obj['metadata']['name']}"] = json.dumps(obj)
    for cm in cluster.core.list_namespaced_config_map(namespace).items:
        text = json.dumps(api.sanitize_for_serialization(cm))
        found[f"configmaps/{cm.metadata.name}"] = "\n".join([text, *_decoded(cm.binary_data)])
    for event in cluster.core.list_namespaced_event(namespace).items:
        found[f"events/{event.metadata.name}"] = json.dumps(api.sanitize_for_serialization(event))
    for job in cluster.batch.list_namespaced_job(namespace).items:
        found[f"jobs/{job.metadata.name}"] = json.dumps(api.sanitize_for_serialization(job))
    for pod in cluster.core.list_namespaced_pod(namespace).items:
        found[f"pods/{pod.metadata.name}"] = json.dumps(api.sanitize_for_serialization(pod))
    found["operator log"] = operator.log_path.read_text(errors="replace")
    return found


def assert_nowhere(values: list[str], written: dict[str, str]) -> None:
    leaks = [
        (where, i) for where, text in written.items() for i, v in enumerate(values) if v in text
    ]
    assert not leaks, f"secret value(s) found in: {leaks}"


@pytest.fixture
def image_knows_step_secrets(cluster: Cluster, op_namespace: str) -> Iterator[None]:
    """Steps on the project's own entrypoint parse the pinned definition inside the image: an
    image built before this change refuses the new env shapes, so such a test needs a fresh
    one (`make image`)."""
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="probe-image"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="probe",
                    image=IMAGE,
                    image_pull_policy="IfNotPresent",
                    command=["python3", "-c", "import runbook_engine.container_env"],
                )
            ],
        ),
    )
    cluster.core.create_namespaced_pod(op_namespace, pod)

    def done() -> str | None:
        phase = cluster.core.read_namespaced_pod("probe-image", op_namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(done, 120, 1, "the image probe pod")
    cluster.core.delete_namespaced_pod("probe-image", op_namespace)
    if phase != "Succeeded":
        pytest.skip(f"{IMAGE} predates step secrets (runbook_engine.container_env): make image")
    yield


def test_a_secret_reaches_steps_by_reference_and_its_value_appears_nowhere(
    rb: Runbooks, cluster: Cluster, operator: OperatorProcess
) -> None:
    whole, single = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    create_secret(cluster, rb.namespace, "soc", {"SOC_TOKEN": whole, "token": single})
    rb.runbook(
        "secret-steps",
        [
            check_step("via-envfrom", "SOC_TOKEN", envFrom=[{"secretRef": {"name": "soc"}}]),
            check_step(
                "via-prefix",
                "X_SOC_TOKEN",
                envFrom=[{"secretRef": {"name": "soc"}, "prefix": "X_"}],
            ),
            check_step(
                "via-keyref",
                "TOKEN",
                env=[
                    {
                        "name": "TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": "soc", "key": "token"}},
                    },
                    {"name": "MODE", "value": "plain"},
                ],
            ),
        ],
    )
    created = rb.execute("s-1", "secret-steps")
    status = rb.wait_phase("s-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "COMPLETED", rb.steps("s-1")
    for step, length in (
        ("via-envfrom", len(whole)),
        ("via-prefix", len(whole)),
        ("via-keyref", len(single)),
    ):
        assert rb.output("s-1", step) == {"present": True, "length": length}

    # The Jobs carry the references, never the values.
    jobs = {
        j.metadata.labels["runbook-operator.dev/step"]: j
        for j in rb.jobs(created["metadata"]["uid"])
    }
    keyref = jobs["via-keyref"].spec.template.spec.containers[0]
    (token,) = [e for e in keyref.env if e.name == "TOKEN"]
    assert (
        token.value,
        token.value_from.secret_key_ref.name,
        token.value_from.secret_key_ref.key,
    ) == (
        None,
        "soc",
        "token",
    )
    envfrom = jobs["via-prefix"].spec.template.spec.containers[0].env_from
    assert [(s.prefix, s.secret_ref.name) for s in envfrom] == [("X_", "soc")]

    written = everything_written(cluster, rb.namespace, operator)
    assert any(k.startswith("configmaps/") and "ledger" in k for k in written), sorted(written)
    assert_nowhere([whole, single], written)


def test_notify_reads_its_webhook_from_a_secret_key_and_never_shows_it(
    rb: Runbooks, cluster: Cluster, operator: OperatorProcess
) -> None:
    """NOTIFY's secret source on a cluster: `urlFrom: {env: X}` with X injected from a Secret
    key. NOTIFY runs here from a step's own command (the image's executor, as the project's
    entrypoint runs it), so this holds for an image built before the change too."""
    labels = {"app": "receiver"}
    cluster.core.create_namespaced_pod(
        rb.namespace,
        client.V1Pod(
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
        ),
    )
    cluster.core.create_namespaced_service(
        rb.namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="receiver"),
            spec=client.V1ServiceSpec(
                selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    path_secret = secrets.token_urlsafe(24)
    url = f"http://receiver.{rb.namespace}.svc.cluster.local/hooks/{path_secret}"
    header_secret = secrets.token_urlsafe(24)
    create_secret(cluster, rb.namespace, "soc-webhook", {"url": url, "token": header_secret})
    notify = (
        "import asyncio, json\n"
        "from runbook_engine.contract import StepExecutorContext\n"
        "from runbook_executors.base import invoke\n"
        "from runbook_executors.generic.notify import NotifyStepExecutor\n"
        "config = {'urlFrom': {'env': 'SOC_URL'}, 'retries': 8, 'message': 'hello',\n"
        "          'headers': {'Authorization': {'secretFrom': {'env': 'SOC_TOKEN'}}}}\n"
        "ctx = StepExecutorContext(execution_id='e', runbook_id='r', step_id='tell',\n"
        "                          action_type='NOTIFY', attempt=1, config=config)\n"
        "result = asyncio.run(invoke(NotifyStepExecutor(), ctx))\n"
        "open('/dev/termination-log', 'w').write(result.model_dump_json(by_alias=True))\n"
    )
    step = shell_step(
        "tell",
        notify,
        container={
            "env": [
                {
                    "name": "SOC_URL",
                    "valueFrom": {"secretKeyRef": {"name": "soc-webhook", "key": "url"}},
                },
                {
                    "name": "SOC_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "soc-webhook", "key": "token"}},
                },
            ]
        },
    )
    step["actionType"] = "NOTIFY"
    rb.runbook("notifier", [step])
    rb.execute("n-1", "notifier")
    status = rb.wait_phase("n-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "COMPLETED", rb.steps("n-1")
    output = rb.output("n-1", "tell")
    assert output["delivered"] is True
    assert output["url"] == f"http://receiver.{rb.namespace}.svc.cluster.local"
    ip = cluster.core.read_namespaced_pod("receiver", rb.namespace).status.pod_ip
    with urllib.request.urlopen(f"http://{ip}:8080/received", timeout=10) as resp:
        got = json.loads(resp.read())
    assert [m["message"] for m in got] == ["hello"]
    assert_nowhere(
        [path_secret, header_secret], everything_written(cluster, rb.namespace, operator)
    )


def test_steps_on_the_projects_entrypoint_get_secrets_and_scrub_them(
    rb: Runbooks, cluster: Cluster, operator: OperatorProcess, image_knows_step_secrets: None
) -> None:
    """The default command parses the pinned definition (with references) and scrubs a value
    injected from a Secret key even from what the step returns."""
    value = secrets.token_urlsafe(24)
    create_secret(cluster, rb.namespace, "soc", {"token": value})
    careless = transform("careless", expressions={"n": "input.n"})
    careless["container"] = {
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "soc", "key": "token"}}}],
        "envFrom": [{"secretRef": {"name": "soc"}, "prefix": "S_"}],
    }
    rb.runbook("entrypoint", [careless])
    rb.execute("e-1", "entrypoint", input={"n": 3})
    status = rb.wait_phase("e-1", "COMPLETED", "FAILED", timeout=240)
    assert status["phase"] == "COMPLETED", rb.steps("e-1")
    assert rb.output("e-1", "careless") == {"n": 3}
    assert_nowhere([value], everything_written(cluster, rb.namespace, operator))


def test_a_missing_secret_fails_the_step_with_a_clear_reason(rb: Runbooks) -> None:
    rb.runbook(
        "missing",
        [
            check_step(
                "keyref",
                "TOKEN",
                env=[
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}
                ],
            ),
            check_step("envfrom", "X", envFrom=[{"secretRef": {"name": "nope-either"}}]),
            check_step(
                "optional",
                "TOKEN",
                env=[
                    {
                        "name": "TOKEN",
                        "valueFrom": {
                            "secretKeyRef": {"name": "nope", "key": "k", "optional": True}
                        },
                    }
                ],
            ),
        ],
        maxParallelSteps=3,
    )
    rb.execute("m-1", "missing")
    status = rb.wait_phase("m-1", "COMPLETED", "FAILED", timeout=180)
    assert status["phase"] == "FAILED"
    steps = rb.steps("m-1")
    for sid, name in (("keyref", "nope"), ("envfrom", "nope-either")):
        assert steps[sid]["status"] == "FAILED", steps[sid]
        message = steps[sid].get("message", "")
        assert (
            "CreateContainerConfigError" in message and f'secret "{name}" not found' in message
        ), message
    # optional: the pod starts without the variable; the step itself says it is missing.
    assert steps["optional"]["status"] == "FAILED"
    assert "TOKEN is not set" in steps["optional"].get("message", ""), steps["optional"]


def test_a_secret_of_another_namespace_cannot_be_named(
    rb: Runbooks, cluster: Cluster, operator: OperatorProcess
) -> None:
    """A tenant naming another namespace's Secret: refused with the field named (env is kept
    as written by the apiserver, so the operator sees the namespace and refuses the Runbook),
    and no step of it runs."""
    other = f"{rb.namespace}-other"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        value = secrets.token_urlsafe(24)
        create_secret(cluster, other, "cross", {"k": value})
        step = check_step(
            "steal",
            "TOKEN",
            env=[
                {
                    "name": "TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {"name": "cross", "key": "k", "namespace": other}
                    },
                }
            ],
        )
        rb.runbook("thief", [step])

        def invalid() -> dict[str, Any] | None:
            obj = rb.custom.get_namespaced_custom_object(
                "runbook-operator.dev", "v1alpha1", rb.namespace, "runbooks", "thief"
            )
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            return conds.get("Valid") if conds.get("Valid", {}).get("status") == "False" else None

        valid = wait_for(invalid, 60, 1, "the Runbook's Valid condition to be False")
        assert "spec.steps[0].container.env[0].valueFrom.secretKeyRef" in valid["message"]
        assert "namespace cannot be given" in valid["message"]
        created = rb.execute("t-1", "thief")
        status = rb.wait_phase("t-1", "FAILED", timeout=60)
        assert "namespace cannot be given" in status["message"], status["message"]
        assert not rb.jobs(created["metadata"]["uid"])
        assert_nowhere([value], everything_written(cluster, rb.namespace, operator))
    finally:
        with contextlib.suppress(ApiException):
            cluster.core.delete_namespace(other, propagation_policy="Background")
