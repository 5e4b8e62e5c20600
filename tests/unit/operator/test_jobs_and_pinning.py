"""Job manifests (restricted pods, owner, deadline backstop) and pinning a definition."""

from __future__ import annotations

import pytest

from runbook_engine.container_env import EnvVar, env_name_problem
from runbook_engine.model import ContainerSpec, ExecutionRequest, RunbookStep
from runbook_operator import names
from runbook_operator.config import OperatorConfig, SettingsError, load_config
from runbook_operator.execution import pinning
from runbook_operator.steps.jobs import AttemptJob, job_manifest

from .kubefakes import REF

CFG = OperatorConfig()


def _job(step: RunbookStep, upstream: list[tuple[str, str]] | None = None) -> dict:  # type: ignore[type-arg]
    return job_manifest(AttemptJob(REF, step, 2, "def-cm", upstream or [], 1024), CFG)


def test_a_job_is_one_attempt_owned_by_the_execution_with_no_retries_of_its_own() -> None:
    job = _job(RunbookStep(id="a", actionType="TRANSFORM", timeoutMs=90_500))
    assert job["metadata"]["name"] == names.job_name(REF.name, REF.uid, "a", 2)
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RunbookExecution", REF.uid, True)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 91 + 30  # the operator's timeout comes first
    assert spec["ttlSecondsAfterFinished"] == CFG.job_ttl_seconds
    labels = spec["template"]["metadata"]["labels"]
    assert labels[names.ATTEMPT_LABEL] == "2" and labels[names.EXECUTION_UID_LABEL] == REF.uid


def test_step_pods_run_with_the_restricted_profile() -> None:
    pod = _job(RunbookStep(id="a", actionType="TRANSFORM"))["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "runbook-executor"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["python3", "-m", "runbook_operator.steps.pod"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RUNBOOK_STEP_ID"] == "a" and env["RUNBOOK_ATTEMPT"] == "2"
    assert env["RUNBOOK_MAX_OUTPUT_BYTES"] == "1024"


def test_a_custom_step_brings_its_own_image_command_and_variables() -> None:
    step = RunbookStep.model_validate(
        {
            "id": "c",
            "actionType": "CUSTOM",
            "container": {
                "image": "example/tool:1",
                "command": ["/bin/tool"],
                "args": ["--fast"],
                "env": {"MODE": "x"},
            },
        }
    )
    (container,) = _job(step)["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["command"], container["args"]) == (
        "example/tool:1",
        ["/bin/tool"],
        ["--fast"],
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODE"] == "x" and env["RUNBOOK_STEP_ID"] == "c"
    assert "envFrom" not in container


SECRET_URL = {"secretKeyRef": {"name": "soc-webhook", "key": "url"}}


def _container(spec: dict) -> dict:  # type: ignore[type-arg]
    step = RunbookStep.model_validate({"id": "n", "actionType": "NOTIFY", "container": spec})
    (container,) = _job(step)["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_secret_and_configmap_references_are_passed_through_never_resolved() -> None:
    container = _container(
        {
            "env": [
                {"name": "SOC_URL", "valueFrom": SECRET_URL},
                {
                    "name": "LEVEL",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "settings", "key": "level", "optional": True}
                    },
                },
                {"name": "MODE", "value": "fast"},
            ],
            "envFrom": [
                {"secretRef": {"name": "soc-token"}},
                {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            ],
        }
    )
    own = [e for e in container["env"] if not e["name"].startswith("RUNBOOK_")]
    assert own[-3:] == [
        {"name": "SOC_URL", "valueFrom": SECRET_URL},
        {
            "name": "LEVEL",
            "valueFrom": {
                "configMapKeyRef": {"name": "settings", "key": "level", "optional": True}
            },
        },
        {"name": "MODE", "value": "fast"},
    ]
    assert container["envFrom"] == [
        {"secretRef": {"name": "soc-token"}},
        {"prefix": "CFG_", "configMapRef": {"name": "settings"}},
    ]
    # Only references: no entry of ours or the step's carries a value it read from a Secret.
    assert {e["name"] for e in container["env"] if "valueFrom" in e} == {
        "SOC_URL",
        "LEVEL",
        "RUNBOOK_NAMESPACE",
    }


def test_the_operators_variables_win_over_a_step_variable_of_the_same_name() -> None:
    """The model refuses such names; one that got past it (an object built in code, a model
    loosened later) is still dropped by the Job builder, so each name appears once, ours."""
    forged = [
        EnvVar.model_construct(name=name, value="forged", value_from=None)
        for name in ("RUNBOOK_STEP_ID", "RUNBOOK_RESULT_CONFIGMAP", "RUNBOOK_NAMESPACE", "HOME")
    ]
    spec = ContainerSpec.model_construct(
        image=None,
        command=None,
        args=None,
        env=[*forged, EnvVar(name="MODE", value="x")],
        env_from=[],
        resources=None,
    )
    step = RunbookStep(id="c", actionType="CUSTOM", container=spec)
    (container,) = _job(step)["spec"]["template"]["spec"]["containers"]
    names_seen = [e["name"] for e in container["env"]]
    assert len(names_seen) == len(set(names_seen))
    env = {e["name"]: e for e in container["env"]}
    assert env["RUNBOOK_STEP_ID"]["value"] == "c"
    assert env["RUNBOOK_RESULT_CONFIGMAP"]["value"].endswith("-result")
    assert env["RUNBOOK_NAMESPACE"] == {
        "name": "RUNBOOK_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    assert env["HOME"]["value"] == "/tmp"
    assert env["MODE"]["value"] == "x"


def test_every_name_the_operator_sets_is_reserved_for_steps() -> None:
    """What the Job sets, the model refuses as a step's variable (so the drop above is only
    a second line of defence, never a silent surprise)."""
    (container,) = _job(RunbookStep(id="a", actionType="TRANSFORM"))["spec"]["template"]["spec"][
        "containers"
    ]
    with_files = job_manifest(
        AttemptJob(REF, RunbookStep(id="a", actionType="TRANSFORM"), 1, "d", [], 1, "files"), CFG
    )
    ours = {e["name"] for e in container["env"]} | {
        e["name"] for e in with_files["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "RUNBOOK_BASE_DIR" in ours
    for name in ours:
        assert env_name_problem(name) is not None, name


def test_upstream_results_are_mounted_by_step_id() -> None:
    volumes = _job(RunbookStep(id="b", actionType="TRANSFORM"), [("a", "a-result")])["spec"][
        "template"
    ]["spec"]["volumes"]
    (source,) = volumes[1]["projected"]["sources"]
    assert source["configMap"] == {
        "name": "a-result",
        "items": [{"key": "result.json.gz", "path": "a.json.gz"}],
    }


RUNBOOK = {
    "apiVersion": "runbook-operator.dev/v1alpha1",
    "kind": "Runbook",
    "metadata": {"name": "rb"},
    "spec": {"steps": [{"id": "a", "actionType": "TRANSFORM"}]},
}
REQUEST = ExecutionRequest.model_validate({"runbookRef": {"name": "rb"}})


def test_pinning_copies_definition_and_request_and_reads_back() -> None:
    cm = pinning.pin(RUNBOOK, REQUEST, REF)
    assert isinstance(cm, dict)
    assert cm["immutable"] is True
    assert cm["metadata"]["ownerReferences"][0]["uid"] == REF.uid
    pinned = pinning.pinned_from_configmap(cm)
    assert pinned.plan.order == ("a",)
    assert pinned.request == REQUEST
    assert pinned.configmap == names.definition_configmap(REF.name, REF.uid)


def test_an_altered_pinned_definition_is_detected() -> None:
    cm = pinning.pin(RUNBOOK, REQUEST, REF)
    assert isinstance(cm, dict)
    cm["data"][pinning.DEFINITION_KEY] = cm["data"][pinning.DEFINITION_KEY].replace(
        "TRANSFORM", "CUSTOM"
    )
    with pytest.raises(ValueError, match="altered"):
        pinning.pinned_from_configmap(cm)


def test_a_missing_runbook_is_a_refusal_naming_the_field() -> None:
    refusal = pinning.pin(None, REQUEST, REF)
    assert isinstance(refusal, pinning.Refusal)
    assert refusal.reason == "RunbookNotFound"
    assert refusal.message == "spec.runbookRef.name: Runbook 'rb' not found in namespace ns1"


def test_a_cyclic_runbook_is_a_refusal_naming_the_steps() -> None:
    cyclic = {
        **RUNBOOK,
        "spec": {
            "steps": [
                {"id": "a", "actionType": "TRANSFORM", "dependsOn": ["b"]},
                {"id": "b", "actionType": "TRANSFORM", "dependsOn": ["a"]},
            ]
        },
    }
    refusal = pinning.pin(cyclic, REQUEST, REF)
    assert isinstance(refusal, pinning.Refusal) and refusal.reason == "InvalidRunbook"
    assert "cycle" in refusal.message


def test_a_bad_spec_is_a_refusal() -> None:
    refusal = pinning.parse_request({"runbookRef": {}})
    assert isinstance(refusal, pinning.Refusal) and refusal.reason == "InvalidSpec"
    assert refusal.problems[0].field.startswith("spec.runbookRef.name")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RUNBOOK_JOB_TTL_SECONDS": "soon"}, "RUNBOOK_JOB_TTL_SECONDS: expected an integer"),
        ({"RUNBOOK_MAX_OUTPUT_BYTES": "0"}, "RUNBOOK_MAX_OUTPUT_BYTES: must be >= 1"),
        ({"RUNBOOK_RECONCILE_WORKERS": "0"}, "RUNBOOK_RECONCILE_WORKERS: must be >= 1"),
        (
            {"RUNBOOK_MANAGE_EXECUTOR_RBAC": "perhaps"},
            "RUNBOOK_MANAGE_EXECUTOR_RBAC: expected true",
        ),
        ({"RUNBOOK_EXECUTOR_NODE_SELECTOR": "{pool"}, "RUNBOOK_EXECUTOR_NODE_SELECTOR: not valid"),
        (
            {"RUNBOOK_EXECUTOR_NODE_SELECTOR": "[]"},
            "RUNBOOK_EXECUTOR_NODE_SELECTOR: expected a JSON object",
        ),
        ({"RUNBOOK_EXECUTOR_NODE_SELECTOR": '{"pool": 1}'}, "label values must be strings"),
        (
            {"RUNBOOK_EXECUTOR_TOLERATIONS": "{}"},
            "RUNBOOK_EXECUTOR_TOLERATIONS: expected a JSON list",
        ),
        ({"RUNBOOK_EXECUTOR_TOLERATIONS": '["x"]'}, r"RUNBOOK_EXECUTOR_TOLERATIONS\[0\]: expected"),
        (
            {"RUNBOOK_EXECUTOR_TOLERATIONS": '[{"key": "a", "efect": "NoSchedule"}]'},
            r"RUNBOOK_EXECUTOR_TOLERATIONS\[0\]: unknown field 'efect'",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_config(env)


def test_step_pods_go_where_the_operator_is_told() -> None:
    env = {
        "RUNBOOK_EXECUTOR_NODE_SELECTOR": '{"pool": "runbooks"}',
        "RUNBOOK_EXECUTOR_TOLERATIONS": '[{"key": "dedicated", "operator": "Exists"}]',
    }
    step = RunbookStep(id="a", actionType="TRANSFORM")
    pod = job_manifest(AttemptJob(REF, step, 1, "def-cm", [], 1024), load_config(env))
    spec = pod["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "runbooks"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    plain = _job(step)["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain


def test_settings_defaults_and_namespaces() -> None:
    cfg = load_config({"RUNBOOK_NAMESPACES": "a, b,", "RUNBOOK_JOB_TTL_SECONDS": "60"})
    assert cfg.namespaces == ("a", "b")
    assert cfg.job_ttl_seconds == 60
    assert load_config({}).namespaces == ()
    assert load_config({}).reconcile_workers == 32
    assert load_config({"RUNBOOK_RECONCILE_WORKERS": "64"}).reconcile_workers == 64


def test_the_runbooks_files_configmap_is_where_relative_paths_resolve() -> None:
    step = RunbookStep(id="g", actionType="LOOKUP_GRAPH", config={"bundlePath": "b.json"})
    job = job_manifest(AttemptJob(REF, step, 1, "def-cm", [], 1024, "rb-files"), CFG)
    pod = job["spec"]["template"]["spec"]
    assert {"name": "files", "configMap": {"name": "rb-files"}} in pod["volumes"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RUNBOOK_BASE_DIR"] == "/var/run/runbook/files"
    assert {"name": "files", "mountPath": "/var/run/runbook/files", "readOnly": True} in container[
        "volumeMounts"
    ]


def test_a_step_may_set_its_own_resources() -> None:
    step = RunbookStep.model_validate(
        {
            "id": "m",
            "actionType": "CUSTOM",
            "container": {"resources": {"limits": {"memory": "64Mi"}}},
        }
    )
    (container,) = _job(step)["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"limits": {"memory": "64Mi"}}
    assert container["image"] == CFG.executor_image


def test_an_image_of_its_own_runs_its_own_entrypoint() -> None:
    step = RunbookStep.model_validate(
        {"id": "c", "actionType": "CUSTOM", "container": {"image": "word-count:1"}}
    )
    (container,) = _job(step)["spec"]["template"]["spec"]["containers"]
    assert "command" not in container and "args" not in container
