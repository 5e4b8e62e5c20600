"""Which Job is an attempt's and which pod is that Job's, from what labels cannot fake (pure).

Anyone who may create pods in a namespace can copy the project's labels, and even the Job's own
`batch.kubernetes.io/controller-uid` label: the Job controller then *adopts* the copy (it claims
every orphan pod its selector matches, kubernetes pkg/controller/job getPodsForJob), giving it a
genuine controller reference. So a pod counts for a Job only when

1. its controller reference and controller-uid label both name the Job's uid, and
2. it runs what the Job says: the step container equals the Job template's in everything that
   decides what runs (image, command, args, environment, working directory, security context,
   termination message, mounts), the volumes it mounts are the template's, nothing else in the
   pod mounts them, and the pod-level settings that change what the step sees or can be reached
   by (service account, host namespaces, process-namespace sharing, DNS, host aliases, security
   context) are the template's.

A copy that passes both runs the step exactly as the Job would and produces the same result.
What is ignored on purpose: resources (the apiserver copies limits into requests on pods only),
containers other than the step's (a service mesh injects some), tolerations, node and priority
(the scheduler and admission set them), and the service-account token mount that admission adds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

JOB_CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
"""Set by the Job controller on the pods it makes (the Job's own selector); the second name is
the one Kubernetes before 1.27 set alone."""
STEP_CONTAINER = "step"
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where the ServiceAccount admission plugin mounts the token into every container of a pod."""

CONTAINER_FIELDS = (
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "workingDir",
    "securityContext",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "volumeDevices",
)
POD_FIELDS = (
    "serviceAccountName",
    "automountServiceAccountToken",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "hostUsers",
    "shareProcessNamespace",
    "hostAliases",
    "dnsPolicy",
    "dnsConfig",
    "securityContext",
    "runtimeClassName",
)


def controller_uid(obj: Mapping[str, Any], kind: str) -> str | None:
    """The uid of `obj`'s controller when that controller is a `kind` (the ownerReference with
    `controller: true`: the apiserver allows at most one)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind and ref.get("uid"):
            return str(ref["uid"])
    return None


def job_of_pod(pod: Mapping[str, Any]) -> str | None:
    """The uid of the Job that controls this pod, as the Job controller marks its pods: a
    controller reference to a batch Job with `blockOwnerDeletion`, and the controller-uid label
    naming the same uid. None for a pod that only copies labels."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for ref in meta.get("ownerReferences") or []:
        uid = ref.get("uid")
        if (
            uid
            and ref.get("controller")
            and ref.get("blockOwnerDeletion")
            and ref.get("kind") == "Job"
            and str(ref.get("apiVersion", "")).startswith("batch/")
            and any(labels.get(label) == uid for label in JOB_CONTROLLER_UID_LABELS)
        ):
            return str(uid)
    return None


def _step_container(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    containers = spec.get("containers") or []
    named = [c for c in containers if c.get("name") == STEP_CONTAINER]
    if named:
        return named[0]  # type: ignore[no-any-return]
    return containers[0] if len(containers) == 1 else None


def _mounts(container: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    mounts = container.get("volumeMounts") or []
    return [m for m in mounts if m.get("mountPath") != SERVICE_ACCOUNT_MOUNT]


def _other_mounts(spec: Mapping[str, Any], step: Mapping[str, Any]) -> set[str]:
    """Volumes mounted by any container of the pod but the step's (token mounts aside)."""
    others: list[Mapping[str, Any]] = [
        *(c for c in spec.get("containers") or [] if c is not step),
        *(spec.get("initContainers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]
    return {str(m.get("name")) for c in others for m in _mounts(c)}


def _canonical(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(json.dumps(i, sort_keys=True) for i in items)


def _by_name(items: Sequence[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    return {str(i.get("name")): i for i in items or []}


def differs_from_template(pod: Mapping[str, Any], job: Mapping[str, Any]) -> str | None:
    """What in `pod` differs from what `job` runs (None: it runs the Job's step as written)."""
    template = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    spec = pod.get("spec") or {}
    want, have = _step_container(template), _step_container(spec)
    if want is None or have is None:
        return "it has no step container"
    for field in CONTAINER_FIELDS:
        if want.get(field) != have.get(field):
            return f"the container's {field} differs"
    if _canonical(_mounts(want)) != _canonical(_mounts(have)):
        return "the container's volumeMounts differ"
    for field in POD_FIELDS:
        if template.get(field) != spec.get(field):
            return f"the pod's {field} differs"
    want_volumes, have_volumes = _by_name(template.get("volumes")), _by_name(spec.get("volumes"))
    mounted = {str(m.get("name")) for m in _mounts(want)}
    for name in sorted(mounted):
        if want_volumes.get(name) != have_volumes.get(name):
            return f"volume {name} differs"
    shared = mounted & _other_mounts(spec, have)
    if shared:
        return f"another container mounts {', '.join(sorted(shared))}"
    if spec.get("ephemeralContainers"):
        return "ephemeral containers were added to it"
    return None
