"""A step container's environment in the Kubernetes shapes: `EnvVar` and `EnvFromSource`.

A credential must never be written into a runbook: the runbook is stored in a custom resource,
pinned into a ConfigMap, copied into the Job spec and hashed into the ledger. So `container.env`
also takes Kubernetes `EnvVar` entries whose value comes from a Secret or ConfigMap key
(`valueFrom.secretKeyRef` / `configMapKeyRef`), and `container.envFrom` takes whole Secrets or
ConfigMaps (`secretRef` / `configMapRef`). Only the reference travels; on a cluster the kubelet
injects the value into the step's container. References name objects of the execution's own
namespace: there is no namespace field, and one given is refused.

`fieldRef` and `resourceFieldRef` are refused: what they could tell (the namespace) the operator
already sets (RUNBOOK_NAMESPACE), and `runbookctl` could not resolve them.

Names starting with RUNBOOK_ (and HOME, TMPDIR) belong to the operator and the local runner: a
step may not set them, so a step cannot pose as another one or write its result elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, TypeAdapter, field_validator, model_validator

from runbook_engine.wire import CamelModel

ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
"""Kubernetes' environment variable name rule (accepted by every apiserver version)."""
OBJECT_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Secret's or ConfigMap's name: a DNS subdomain."""
KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
"""A key of a Secret or ConfigMap."""

MAX_NAME_CHARS: Final = 253
MAX_ENV_VARS: Final = 100
"""Entries of `container.env` (either shape)."""
MAX_ENV_FROM: Final = 20
"""Entries of `container.envFrom`."""
MAX_ENV_VALUE_CHARS: Final = 32 * 1024
"""A plain value; anything larger is data, which belongs in the files ConfigMap."""

RESERVED_ENV_PREFIX: Final = "RUNBOOK_"
STEP_SETTABLE_ENV: Final = frozenset({"RUNBOOK_MAX_FILE_BYTES"})
"""RUNBOOK_* names a step may set after all: knobs the executors read (docs/limits.md)."""
RESERVED_ENV_NAMES: Final = frozenset({"HOME", "TMPDIR"})
"""Set by the operator in every step pod (the only writable directory, /tmp)."""

_ENV_NAME = re.compile(ENV_NAME_PATTERN)


def env_name_problem(name: str) -> str | None:
    """Why `name` cannot be a step's variable, or None."""
    if not name or len(name) > MAX_NAME_CHARS or not _ENV_NAME.match(name):
        return (
            f"{name[:64]!r} is not a valid variable name (letters, digits, '_', '-', '.'; "
            f"not starting with a digit; at most {MAX_NAME_CHARS} characters)"
        )
    if name in RESERVED_ENV_NAMES or (
        name.startswith(RESERVED_ENV_PREFIX) and name not in STEP_SETTABLE_ENV
    ):
        return (
            f"{name} is set by the operator and the local runner: names starting with "
            f"{RESERVED_ENV_PREFIX} (except {', '.join(sorted(STEP_SETTABLE_ENV))}), HOME and "
            "TMPDIR are reserved"
        )
    return None


def _refuse_namespace(data: Any) -> Any:
    if isinstance(data, Mapping) and "namespace" in data:
        raise ValueError(
            "namespace cannot be given: a step reads Secrets and ConfigMaps of its own "
            "namespace only"
        )
    return data


class _KeyRef(CamelModel):
    name: str = Field(
        max_length=MAX_NAME_CHARS, pattern=OBJECT_NAME_PATTERN, description="Object name"
    )
    key: str = Field(max_length=MAX_NAME_CHARS, pattern=KEY_PATTERN, description="Key in it")
    optional: bool | None = Field(default=None, description="true: a missing key is no error")

    _same_namespace = model_validator(mode="before")(_refuse_namespace)


class SecretKeySelector(_KeyRef):
    """One key of a Secret in the execution's namespace."""


class ConfigMapKeySelector(_KeyRef):
    """One key of a ConfigMap in the execution's namespace."""


class _ObjectRef(CamelModel):
    name: str = Field(
        max_length=MAX_NAME_CHARS, pattern=OBJECT_NAME_PATTERN, description="Object name"
    )
    optional: bool | None = Field(default=None, description="true: a missing object is no error")

    _same_namespace = model_validator(mode="before")(_refuse_namespace)


class SecretEnvSource(_ObjectRef):
    """Every key of a Secret in the execution's namespace."""


class ConfigMapEnvSource(_ObjectRef):
    """Every key of a ConfigMap in the execution's namespace."""


_UNSUPPORTED_SOURCES = ("fieldRef", "resourceFieldRef", "fileKeyRef")


class EnvVarSource(CamelModel):
    """Where a variable's value comes from: exactly one Secret or ConfigMap key."""

    secret_key_ref: SecretKeySelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None

    @model_validator(mode="before")
    @classmethod
    def _supported_only(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for kind in _UNSUPPORTED_SOURCES:
                if kind in data:
                    raise ValueError(
                        f"{kind} is not supported: a value may come from a secretKeyRef or a "
                        "configMapKeyRef (the namespace is in RUNBOOK_NAMESPACE already)"
                    )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("expected exactly one of secretKeyRef or configMapKeyRef")
        return self


class EnvVar(CamelModel):
    """Kubernetes' `EnvVar`: a plain `value`, or `valueFrom` a Secret or ConfigMap key."""

    name: str = Field(max_length=MAX_NAME_CHARS, description="Variable name")
    value: str | None = Field(default=None, max_length=MAX_ENV_VALUE_CHARS)
    value_from: EnvVarSource | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        problem = env_name_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name

    @model_validator(mode="after")
    def _value_or_reference(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"{self.name}: give value or valueFrom, not both")
        return self

    @property
    def secret_ref(self) -> SecretKeySelector | None:
        return self.value_from.secret_key_ref if self.value_from else None

    def manifest(self) -> dict[str, Any]:
        """The entry as a container's `env` item (references only, never a Secret's value)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class EnvFromSource(CamelModel):
    """Kubernetes' `EnvFromSource`: every key of a Secret or ConfigMap, optionally prefixed."""

    prefix: str | None = Field(
        default=None,
        max_length=MAX_NAME_CHARS,
        description="Prepended to every key (must itself be a valid name)",
    )
    secret_ref: SecretEnvSource | None = None
    config_map_ref: ConfigMapEnvSource | None = None

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str | None) -> str | None:
        if prefix is None:
            return None
        if not _ENV_NAME.match(prefix):
            raise ValueError(f"{prefix[:64]!r} is not a valid variable name prefix")
        if prefix.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(
                f"{prefix}: names starting with {RESERVED_ENV_PREFIX} are set by the operator"
            )
        return prefix

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("expected exactly one of secretRef or configMapRef")
        return self

    @property
    def field(self) -> str:
        """`secretRef 'name'` or `configMapRef 'name'`, for messages."""
        if self.secret_ref is not None:
            return f"secretRef {self.secret_ref.name!r}"
        assert self.config_map_ref is not None
        return f"configMapRef {self.config_map_ref.name!r}"


_ENV_LIST: Final = TypeAdapter(list[EnvVar])


def _env_entries(value: Any) -> Any:
    """Either shape, checked with a message naming the entry: a `name: value` map (plain values
    only, as before) or a list of `EnvVar`."""
    if isinstance(value, Mapping):
        if len(value) > MAX_ENV_VARS:
            raise ValueError(f"{len(value)} variables; at most {MAX_ENV_VARS}")
        for name, item in value.items():
            if not isinstance(name, str):
                raise ValueError(f"{name!r}: a variable name must be a string")
            problem = env_name_problem(name)
            if problem is not None:
                raise ValueError(problem)
            if not isinstance(item, str):
                raise ValueError(
                    f"{name}: expected a string value (for a Secret use the list form: "
                    "- name: X, valueFrom: {secretKeyRef: {name, key}})"
                )
            if len(item) > MAX_ENV_VALUE_CHARS:
                raise ValueError(f"{name}: value longer than {MAX_ENV_VALUE_CHARS} characters")
        return value
    if isinstance(value, list):
        if len(value) > MAX_ENV_VARS:
            raise ValueError(f"{len(value)} variables; at most {MAX_ENV_VARS}")
        entries = _ENV_LIST.validate_python(value)
        seen: set[str] = set()
        for entry in entries:
            if entry.name in seen:
                raise ValueError(f"{entry.name}: given twice")
            seen.add(entry.name)
        return entries
    raise ValueError(
        "expected a map of name: value, or a list of {name, value} / {name, valueFrom}"
    )


EnvEntries = Annotated[dict[str, str] | list[EnvVar], BeforeValidator(_env_entries)]
"""`container.env`: the plain map (kept as given, so pinned definitions hash as before) or a
list of EnvVar."""


def env_vars(entries: dict[str, str] | list[EnvVar]) -> list[EnvVar]:
    """Either shape as a list of EnvVar."""
    if isinstance(entries, dict):
        return [EnvVar(name=k, value=v) for k, v in entries.items()]
    return list(entries)
