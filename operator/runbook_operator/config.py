"""Operator settings, read once from the environment (the Helm chart sets them).

Every setting has a sane default so `python -m runbook_operator` runs against a dev cluster
as is; a bad value is a start-up error naming the variable, never a crash mid-reconcile.
"""

from __future__ import annotations

import json
import os
import socket
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook_engine.model import ContainerSpec
from runbook_operator.leadership import Timing, valid_identity
from runbook_operator.steps.image_policy import PULL_POLICIES, ImagePolicy

DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
DEFAULT_IMAGE = "runbook-operator:dev"
DEFAULT_SIGNING_KEY_FILE = "/var/run/runbook-operator/signing/ed25519.pem"
DEFAULT_PUBLIC_KEY_CONFIGMAP = "runbook-operator-ledger-key"


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty: the whole cluster."""
    executor_image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    """Pull policy of the executor image (steps without an image of their own)."""
    step_image_pull_policy: str = "Always"
    """Pull policy of every other step image: `Always` makes the kubelet check that the pod
    may pull it, so a private image cached on the node by another tenant does not run."""
    image_allow_prefixes: tuple[str, ...] = ()
    """Registry/repository prefixes step images must be under; empty: any image."""
    image_require_digest: bool = False
    """Step images must name a digest (`@sha256:...`); the executor image is exempt."""
    executor_service_account: str = "runbook-executor"
    manage_executor_rbac: bool = True
    """Create the executor ServiceAccount/Role/RoleBinding in a namespace on first use."""
    job_ttl_seconds: int = 3600
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    signing_key_file: str = DEFAULT_SIGNING_KEY_FILE
    public_key_configmap: str = DEFAULT_PUBLIC_KEY_CONFIGMAP
    operator_namespace: str = "default"
    metrics_port: int = 8080
    health_port: int = 8081
    resync_seconds: float = 60.0
    """Safety net: an execution is re-examined at least this often even without events."""
    reconcile_workers: int = 32
    """Reconciles at once (each blocks on API calls). 16 made the 100th execution in line wait:
    p99 transition 5 s at 100 concurrent executions, 1.8 s with 32 (docs/benchmarks.md)."""
    executor_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        }
    )
    actor: str = "system:runbook-operator"
    executor_node_selector: Mapping[str, str] = field(default_factory=dict)
    """Where step pods may run (e.g. a node pool for runbooks); from a JSON object."""
    executor_tolerations: tuple[Mapping[str, Any], ...] = ()
    """Taints step pods tolerate; from a JSON list of Kubernetes tolerations."""
    require_identity: bool = True
    """Refuse to start an execution without the creator stamped at admission (fail closed:
    without the chart's admission policies nobody could tell who started it)."""
    max_running_jobs_per_namespace: int = 100
    """Step Jobs running at once in one namespace (all its executions together); 0: no cap.
    One operator serves every namespace: this keeps one tenant from taking all of it."""
    checkpoint_every: int = 50
    """Sign a checkpoint at least every this many ledger entries (and at every segment seal and
    terminal transition), so a rollback of the ledger is caught between two of them."""
    lease_namespace: str = "default"
    """Where the scope's Lease lives (default: the operator's namespace). Operators whose scopes
    could overlap must share it (docs/operator.md, "One active operator per scope")."""
    lease_timing: Timing = field(default_factory=Timing)
    lease_identity: str = "runbook-operator"
    """The holder name in the Lease: the pod's name in the chart, else host_pid."""

    @property
    def image_policy(self) -> ImagePolicy:
        """What step images may be (the executor image is always allowed)."""
        return ImagePolicy(
            allow_prefixes=self.image_allow_prefixes,
            require_digest=self.image_require_digest,
            own_image=self.executor_image,
        )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _json(env: Mapping[str, str], name: str, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise SettingsError(f"{name}: expected a JSON {'object' if kind is dict else 'list'}")
    return value


def _node_selector(env: Mapping[str, str]) -> dict[str, str]:
    name = "RUNBOOK_EXECUTOR_NODE_SELECTOR"
    value: dict[str, Any] = _json(env, name, dict)
    bad = [k for k, v in value.items() if not isinstance(v, str)]
    if bad:
        raise SettingsError(f"{name}: label values must be strings (key {bad[0]!r})")
    return value


def _tolerations(env: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    name = "RUNBOOK_EXECUTOR_TOLERATIONS"
    value: list[Any] = _json(env, name, list)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise SettingsError(f"{name}[{i}]: expected a toleration object")
        unknown = set(item) - {"key", "operator", "value", "effect", "tolerationSeconds"}
        if unknown:
            raise SettingsError(f"{name}[{i}]: unknown field {sorted(unknown)[0]!r}")
    return tuple(value)


def _pull_policy(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if value not in PULL_POLICIES:
        raise SettingsError(f"{name}: expected one of {', '.join(PULL_POLICIES)}, got {value!r}")
    return value


MAX_PREFIX_LENGTH = 255
_PREFIX_CHARS = frozenset(string.ascii_letters + string.digits + "._-:/@[]")


def _allow_prefixes(env: Mapping[str, str]) -> tuple[str, ...]:
    """A JSON list (what the chart passes) or a comma-separated list; blanks are dropped."""
    name = "RUNBOOK_IMAGE_ALLOW_PREFIXES"
    raw = env.get(name, "").strip()
    items: list[Any] = _json(env, name, list) if raw.startswith("[") else raw.split(",")
    prefixes: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise SettingsError(f"{name}[{i}]: expected a string, got {item!r}")
        prefix = item.strip()
        if not prefix:
            continue
        if len(prefix) > MAX_PREFIX_LENGTH or not set(prefix) <= _PREFIX_CHARS:
            raise SettingsError(f"{name}[{i}]: {prefix[:80]!r} is not an image name prefix")
        prefixes.append(prefix)
    return tuple(prefixes)


def _timing(env: Mapping[str, str]) -> Timing:
    timing = Timing(
        duration_s=_int(env, "RUNBOOK_LEASE_DURATION_SECONDS", 15, 4),
        renew_s=_int(env, "RUNBOOK_LEASE_RENEW_SECONDS", 5, 1),
        retry_s=_int(env, "RUNBOOK_LEASE_RETRY_SECONDS", 2, 1),
        skew_s=_int(env, "RUNBOOK_LEASE_SKEW_SECONDS", 2, 1),
    )
    problems = timing.problems()
    if problems:
        raise SettingsError("; ".join(problems))
    return timing


def _identity(env: Mapping[str, str]) -> str:
    name = "RUNBOOK_LEASE_IDENTITY"
    identity = env.get(name, "").strip() or f"{socket.gethostname()}_{os.getpid()}"
    if not valid_identity(identity):
        raise SettingsError(f"{name}: 1 to 128 printable characters, got {identity[:80]!r}")
    return identity


def load_config(env: Mapping[str, str] | None = None) -> OperatorConfig:
    """Settings from RUNBOOK_* variables (documented in docs/operator.md)."""
    env = os.environ if env is None else env
    namespaces = tuple(n.strip() for n in env.get("RUNBOOK_NAMESPACES", "").split(",") if n.strip())
    image = env.get("RUNBOOK_EXECUTOR_IMAGE") or DEFAULT_IMAGE
    ContainerSpec(image=image)  # same rule as a step's own image
    operator_namespace = env.get("RUNBOOK_OPERATOR_NAMESPACE") or "default"
    return OperatorConfig(
        namespaces=namespaces,
        executor_image=image,
        image_pull_policy=_pull_policy(env, "RUNBOOK_IMAGE_PULL_POLICY", "IfNotPresent"),
        step_image_pull_policy=_pull_policy(env, "RUNBOOK_STEP_IMAGE_PULL_POLICY", "Always"),
        image_allow_prefixes=_allow_prefixes(env),
        image_require_digest=_bool(env, "RUNBOOK_IMAGE_REQUIRE_DIGEST", False),
        executor_service_account=env.get("RUNBOOK_EXECUTOR_SERVICE_ACCOUNT") or "runbook-executor",
        manage_executor_rbac=_bool(env, "RUNBOOK_MANAGE_EXECUTOR_RBAC", True),
        job_ttl_seconds=_int(env, "RUNBOOK_JOB_TTL_SECONDS", 3600),
        max_output_bytes=_int(env, "RUNBOOK_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES, 1),
        signing_key_file=env.get("RUNBOOK_SIGNING_KEY_FILE") or DEFAULT_SIGNING_KEY_FILE,
        public_key_configmap=env.get("RUNBOOK_PUBLIC_KEY_CONFIGMAP")
        or DEFAULT_PUBLIC_KEY_CONFIGMAP,
        operator_namespace=operator_namespace,
        lease_namespace=env.get("RUNBOOK_LEASE_NAMESPACE", "").strip() or operator_namespace,
        lease_timing=_timing(env),
        lease_identity=_identity(env),
        metrics_port=_int(env, "RUNBOOK_METRICS_PORT", 8080, 1),
        health_port=_int(env, "RUNBOOK_HEALTH_PORT", 8081, 1),
        resync_seconds=float(_int(env, "RUNBOOK_RESYNC_SECONDS", 60, 1)),
        reconcile_workers=_int(env, "RUNBOOK_RECONCILE_WORKERS", 32, 1),
        executor_node_selector=_node_selector(env),
        executor_tolerations=_tolerations(env),
        require_identity=_bool(env, "RUNBOOK_REQUIRE_IDENTITY", True),
        checkpoint_every=_int(env, "RUNBOOK_CHECKPOINT_EVERY", 50, 1),
        max_running_jobs_per_namespace=_int(env, "RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE", 100),
    )
