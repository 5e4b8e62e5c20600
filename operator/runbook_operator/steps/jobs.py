"""StartAttempt → Job manifest (pure). One Job per attempt, named deterministically.

The operator owns retries (backoffLimit 0) and timeouts (it deletes the Job at the deadline);
activeDeadlineSeconds is only a backstop for when the operator is down. Pods run with the
restricted Pod Security profile and a ServiceAccount that may only create ConfigMaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runbook_engine.model import ContainerSpec, RunbookStep
from runbook_operator import names
from runbook_operator.config import OperatorConfig
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import contract as c
from runbook_operator.steps import image_policy

DEADLINE_GRACE_SECONDS = 30
STEP_ID_ANNOTATION = f"{names.LABEL_PREFIX}/step-id"
DEFAULT_COMMAND = ("python3", "-m", "runbook_operator.steps.pod")


@dataclass(frozen=True, slots=True)
class AttemptJob:
    """What a Job needs beyond the step itself."""

    execution: ExecutionRef
    step: RunbookStep
    attempt: int
    definition_configmap: str
    upstream: Sequence[tuple[str, str]]
    """(step id, result ConfigMap) of every upstream output the step sees."""
    max_output_bytes: int
    files_configmap: str | None = None
    """The runbook's data files, mounted at contract.FILES_DIR (RUNBOOK_BASE_DIR of the executors)."""


def _env(job: AttemptJob, name: str) -> list[dict[str, Any]]:
    """The operator's variables, then the step's own (plain values and Secret/ConfigMap
    references, passed through: the kubelet injects the values, the operator never sees them).

    The model refuses a step variable named like one of ours; one that got past it anyway is
    dropped here, so ours always win (and no name appears twice). `env` also wins over every
    `envFrom` key in Kubernetes, so a Secret cannot override them either."""
    ex = job.execution
    plain = {
        c.ENV_EXECUTION: ex.name,
        c.ENV_EXECUTION_UID: ex.uid,
        c.ENV_EXECUTION_ID: ex.execution_id,
        c.ENV_STEP_ID: job.step.id,
        c.ENV_ATTEMPT: str(job.attempt),
        c.ENV_RESULT_CONFIGMAP: names.result_configmap(name),
        c.ENV_MAX_OUTPUT_BYTES: str(job.max_output_bytes),
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
    }
    if job.files_configmap:
        plain[c.ENV_BASE_DIR] = c.FILES_DIR
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    env.append(
        {
            "name": c.ENV_NAMESPACE,
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
    )
    ours = {entry["name"] for entry in env}
    own = job.step.container.env_vars() if job.step.container else []
    env.extend(entry.manifest() for entry in own if entry.name not in ours)
    return env


def _env_from(own: ContainerSpec | None) -> list[dict[str, Any]]:
    """Whole Secrets/ConfigMaps of the execution's namespace, by reference."""
    if own is None:
        return []
    return [
        source.model_dump(mode="json", by_alias=True, exclude_none=True) for source in own.env_from
    ]


def _volumes(job: AttemptJob) -> list[dict[str, Any]]:
    upstream: dict[str, Any]
    if job.upstream:
        upstream = {
            "projected": {
                "sources": [
                    {
                        "configMap": {
                            "name": cm,
                            "items": [{"key": c.RESULT_KEY, "path": f"{sid}{c.UPSTREAM_SUFFIX}"}],
                        }
                    }
                    for sid, cm in job.upstream
                ]
            }
        }
    else:
        upstream = {"emptyDir": {"sizeLimit": "1Mi"}}
    volumes = [
        {"name": "definition", "configMap": {"name": job.definition_configmap}},
        {"name": "upstream", **upstream},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    if job.files_configmap:
        volumes.append({"name": "files", "configMap": {"name": job.files_configmap}})
    return volumes


def _command(own: ContainerSpec | None) -> list[str] | None:
    """The step's command; an image of its own runs its own entrypoint; ours runs the pod."""
    if own and own.command:
        return list(own.command)
    if own and own.image:
        return None
    return list(DEFAULT_COMMAND)


def _container(job: AttemptJob, name: str, cfg: OperatorConfig) -> dict[str, Any]:
    own = job.step.container
    image = own.image if own and own.image else cfg.executor_image
    container: dict[str, Any] = {
        "name": "step",
        "image": image,
        "imagePullPolicy": image_policy.pull_policy(
            image,
            own_image=cfg.executor_image,
            own_policy=cfg.image_pull_policy,
            step_policy=cfg.step_image_pull_policy,
        ),
        "env": _env(job, name),
        "resources": {
            k: dict(v)
            for k, v in (own.resources if own and own.resources else cfg.executor_resources).items()
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"name": "definition", "mountPath": c.DEFINITION_DIR, "readOnly": True},
            {"name": "upstream", "mountPath": c.UPSTREAM_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    env_from = _env_from(own)
    if env_from:
        container["envFrom"] = env_from
    command = _command(own)
    if command is not None:
        container["command"] = command
    if own and own.args:
        container["args"] = list(own.args)
    if job.files_configmap:
        container["volumeMounts"].append(
            {"name": "files", "mountPath": c.FILES_DIR, "readOnly": True}
        )
    return container


def _placement(cfg: OperatorConfig) -> dict[str, Any]:
    """nodeSelector and tolerations of step pods, only when the operator is configured so."""
    out: dict[str, Any] = {}
    if cfg.executor_node_selector:
        out["nodeSelector"] = dict(cfg.executor_node_selector)
    if cfg.executor_tolerations:
        out["tolerations"] = [dict(t) for t in cfg.executor_tolerations]
    return out


def job_manifest(job: AttemptJob, cfg: OperatorConfig) -> dict[str, Any]:
    """The Job for one attempt of one step."""
    ex = job.execution
    name = names.job_name(ex.name, ex.uid, job.step.id, job.attempt)
    labels = names.labels(ex.name, ex.uid, "step", step_id=job.step.id, attempt=job.attempt)
    deadline = math.ceil(job.step.timeout_ms / 1000) + DEADLINE_GRACE_SECONDS
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": ex.namespace,
            "labels": labels,
            "annotations": {STEP_ID_ANNOTATION: job.step.id},
            "ownerReferences": [ex.owner()],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": cfg.job_ttl_seconds,
            "template": {
                "metadata": {"labels": labels, "annotations": {STEP_ID_ANNOTATION: job.step.id}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": cfg.executor_service_account,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container(job, name, cfg)],
                    "volumes": _volumes(job),
                }
                | _placement(cfg),
            },
        },
    }
