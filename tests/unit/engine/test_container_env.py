"""A step container's environment: the plain map, Kubernetes EnvVar entries with Secret and
ConfigMap references, envFrom; every refusal names the field and the reason."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_engine.canonical import canonical_sha256
from runbook_engine.container_env import (
    MAX_ENV_FROM,
    MAX_ENV_VALUE_CHARS,
    MAX_ENV_VARS,
    EnvVar,
)
from runbook_engine.loader import definition_from_document
from runbook_engine.model import ContainerSpec
from runbook_engine.problems import InvalidRunbook

SECRET_REF = {"secretKeyRef": {"name": "soc-webhook", "key": "url"}}


def runbook(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": "rb"},
        "spec": {"steps": [{"id": "a", "actionType": "NOTIFY", "container": container}]},
    }


def container_of(container: dict[str, Any]) -> ContainerSpec:
    step = definition_from_document(runbook(container)).steps[0]
    assert step.container is not None
    return step.container


def problems(container: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRunbook) as info:
        definition_from_document(runbook(container))
    return [(p.field, p.reason) for p in info.value.problems]


FIELD = "spec.steps[0].container"


# --- the shapes that work ------------------------------------------------------------------


def test_the_plain_map_keeps_working_and_keeps_its_shape() -> None:
    spec = container_of({"env": {"MODE": "fast", "RUNBOOK_MAX_FILE_BYTES": "1024"}})
    assert spec.env == {"MODE": "fast", "RUNBOOK_MAX_FILE_BYTES": "1024"}
    assert [(e.name, e.value, e.value_from) for e in spec.env_vars()] == [
        ("MODE", "fast", None),
        ("RUNBOOK_MAX_FILE_BYTES", "1024", None),
    ]


def test_envvar_entries_take_values_and_secret_and_configmap_references() -> None:
    spec = container_of(
        {
            "env": [
                {"name": "MODE", "value": "fast"},
                {"name": "EMPTY"},
                {"name": "SOC_URL", "valueFrom": SECRET_REF},
                {
                    "name": "LEVEL",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "settings", "key": "level", "optional": True}
                    },
                },
            ]
        }
    )
    assert [e.manifest() for e in spec.env_vars()] == [
        {"name": "MODE", "value": "fast"},
        {"name": "EMPTY"},
        {"name": "SOC_URL", "valueFrom": SECRET_REF},
        {
            "name": "LEVEL",
            "valueFrom": {
                "configMapKeyRef": {"name": "settings", "key": "level", "optional": True}
            },
        },
    ]
    secret = spec.env_vars()[2].secret_ref
    assert secret is not None and (secret.name, secret.key) == ("soc-webhook", "url")


def test_envfrom_takes_secrets_and_configmaps_with_a_prefix() -> None:
    spec = container_of(
        {
            "envFrom": [
                {"secretRef": {"name": "soc-token"}},
                {"configMapRef": {"name": "settings", "optional": True}, "prefix": "CFG_"},
            ]
        }
    )
    assert [s.wire() for s in spec.env_from] == [
        {"secretRef": {"name": "soc-token"}},
        {"prefix": "CFG_", "configMapRef": {"name": "settings", "optional": True}},
    ]
    assert [s.field for s in spec.env_from] == ["secretRef 'soc-token'", "configMapRef 'settings'"]


def test_a_definition_without_envfrom_dumps_and_hashes_as_before_the_field_existed() -> None:
    """Pinning re-hashes the dump of the pinned definition: a new key would make every
    execution pinned by an older operator look altered after an upgrade."""
    spec = ContainerSpec.model_validate({"image": "x:1", "env": {"A": "b"}})
    dumped = spec.model_dump(mode="json", by_alias=True)
    assert dumped == {
        "image": "x:1",
        "command": None,
        "args": None,
        "env": {"A": "b"},
        "resources": None,
    }
    assert canonical_sha256(dumped) == canonical_sha256(
        {"image": "x:1", "command": None, "args": None, "env": {"A": "b"}, "resources": None}
    )
    with_source = ContainerSpec.model_validate({"envFrom": [{"secretRef": {"name": "s"}}]})
    assert "envFrom" in with_source.model_dump(mode="json", by_alias=True)


# --- what is refused, naming the field -------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "field", "reason"),
    [
        (
            {
                "env": [
                    {
                        "name": "X",
                        "valueFrom": {
                            "secretKeyRef": {
                                **SECRET_REF["secretKeyRef"],
                                "namespace": "kube-system",
                            }
                        },
                    }
                ]
            },
            f"{FIELD}.env[0].valueFrom.secretKeyRef",
            "namespace cannot be given",
        ),
        (
            {"envFrom": [{"secretRef": {"name": "s", "namespace": "other"}}]},
            f"{FIELD}.envFrom[0].secretRef",
            "namespace cannot be given",
        ),
        (
            {"envFrom": [{"configMapRef": {"name": "c", "namespace": "other"}}]},
            f"{FIELD}.envFrom[0].configMapRef",
            "namespace cannot be given",
        ),
        (
            {
                "env": [
                    {
                        "name": "X",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "c", "key": "k", "namespace": "o"}
                        },
                    }
                ]
            },
            f"{FIELD}.env[0].valueFrom.configMapKeyRef",
            "namespace cannot be given",
        ),
        (
            {"env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
            f"{FIELD}.env[0].valueFrom",
            "fieldRef is not supported",
        ),
        (
            {
                "env": [
                    {
                        "name": "MEM",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}},
                    }
                ]
            },
            f"{FIELD}.env[0].valueFrom",
            "resourceFieldRef is not supported",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {}}]},
            f"{FIELD}.env[0].valueFrom",
            "exactly one of secretKeyRef or configMapKeyRef",
        ),
        (
            {
                "env": [
                    {
                        "name": "X",
                        "valueFrom": {**SECRET_REF, "configMapKeyRef": {"name": "c", "key": "k"}},
                    }
                ]
            },
            f"{FIELD}.env[0].valueFrom",
            "exactly one of secretKeyRef or configMapKeyRef",
        ),
        (
            {"env": [{"name": "X", "value": "v", "valueFrom": SECRET_REF}]},
            f"{FIELD}.env[0]",
            "X: give value or valueFrom, not both",
        ),
        (
            {"env": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}]},
            f"{FIELD}.env",
            "X: given twice",
        ),
        (
            {"env": [{"name": "1X", "value": "v"}]},
            f"{FIELD}.env[0].name",
            "'1X' is not a valid variable name",
        ),
        (
            {"env": [{"name": "A=B", "value": "v"}]},
            f"{FIELD}.env[0].name",
            "'A=B' is not a valid variable name",
        ),
        (
            {"env": {"HAS SPACE": "v"}},
            f"{FIELD}.env",
            "'HAS SPACE' is not a valid variable name",
        ),
        (
            {"env": [{"name": "RUNBOOK_STEP_ID", "value": "forged"}]},
            f"{FIELD}.env[0].name",
            "RUNBOOK_STEP_ID is set by the operator",
        ),
        (
            {"env": {"RUNBOOK_RESULT_CONFIGMAP": "elsewhere"}},
            f"{FIELD}.env",
            "RUNBOOK_RESULT_CONFIGMAP is set by the operator",
        ),
        ({"env": {"HOME": "/root"}}, f"{FIELD}.env", "HOME is set by the operator"),
        (
            {"env": {"TOKEN": {"secretKeyRef": {"name": "s", "key": "k"}}}},
            f"{FIELD}.env",
            "TOKEN: expected a string value (for a Secret use the list form",
        ),
        (
            {"env": "TOKEN=x"},
            f"{FIELD}.env",
            "expected a map of name: value, or a list of",
        ),
        (
            {
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "Not_A_Name", "key": "k"}}}
                ]
            },
            f"{FIELD}.env[0].valueFrom.secretKeyRef.name",
            "String should match pattern",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}]},
            f"{FIELD}.env[0].valueFrom.secretKeyRef.key",
            "String should match pattern",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
            f"{FIELD}.env[0].valueFrom.secretKeyRef.key",
            "Field required",
        ),
        (
            {"envFrom": [{"prefix": "X_"}]},
            f"{FIELD}.envFrom[0]",
            "exactly one of secretRef or configMapRef",
        ),
        (
            {"envFrom": [{"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}]},
            f"{FIELD}.envFrom[0]",
            "exactly one of secretRef or configMapRef",
        ),
        (
            {"envFrom": [{"secretRef": {"name": "s"}, "prefix": "RUNBOOK_"}]},
            f"{FIELD}.envFrom[0].prefix",
            "names starting with RUNBOOK_ are set by the operator",
        ),
        (
            {"envFrom": [{"secretRef": {"name": "s"}, "prefix": "9x"}]},
            f"{FIELD}.envFrom[0].prefix",
            "not a valid variable name prefix",
        ),
        (
            {"env": [{"name": "X", "value": "v" * (MAX_ENV_VALUE_CHARS + 1)}]},
            f"{FIELD}.env[0].value",
            f"at most {MAX_ENV_VALUE_CHARS} characters",
        ),
        (
            {"env": {"X": "v" * (MAX_ENV_VALUE_CHARS + 1)}},
            f"{FIELD}.env",
            f"X: value longer than {MAX_ENV_VALUE_CHARS} characters",
        ),
        (
            {"env": {f"V{i}": "x" for i in range(MAX_ENV_VARS + 1)}},
            f"{FIELD}.env",
            f"{MAX_ENV_VARS + 1} variables; at most {MAX_ENV_VARS}",
        ),
        (
            {"env": [{"name": f"V{i}"} for i in range(MAX_ENV_VARS + 1)]},
            f"{FIELD}.env",
            f"{MAX_ENV_VARS + 1} variables; at most {MAX_ENV_VARS}",
        ),
        (
            {"envFrom": [{"secretRef": {"name": f"s{i}"}} for i in range(MAX_ENV_FROM + 1)]},
            f"{FIELD}.envFrom",
            f"at most {MAX_ENV_FROM} items",
        ),
    ],
)
def test_refusals_name_the_field_and_the_reason(
    container: dict[str, Any], field: str, reason: str
) -> None:
    found = problems(container)
    assert any(f == field and reason in r for f, r in found), found


_NAMES = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,20}\Z").filter(
    lambda n: not n.startswith("RUNBOOK_") and n not in ("HOME", "TMPDIR")
)


@given(st.dictionaries(_NAMES, st.text(max_size=40), max_size=10))
def test_any_plain_map_of_valid_names_is_accepted_as_given(env: dict[str, str]) -> None:
    spec = ContainerSpec.model_validate({"env": env})
    assert spec.env == env
    assert spec.model_dump(mode="json", by_alias=True)["env"] == env
    assert [(e.name, e.value) for e in spec.env_vars()] == list(env.items())


@given(st.lists(_NAMES, unique=True, max_size=10), st.data())
def test_a_list_of_references_round_trips_through_its_wire_form(
    names: list[str], data: st.DataObject
) -> None:
    entries = [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": "s", "key": f"k{i}"}}}
        if data.draw(st.booleans())
        else {"name": n, "value": data.draw(st.text(max_size=20))}
        for i, n in enumerate(names)
    ]
    spec = ContainerSpec.model_validate({"env": entries})
    again = ContainerSpec.model_validate(spec.model_dump(mode="json", by_alias=True))
    assert again == spec
    assert [e.manifest() for e in again.env_vars()] == entries


def test_an_envvar_built_in_code_is_validated_too() -> None:
    with pytest.raises(ValueError, match="RUNBOOK_ATTEMPT is set by the operator"):
        EnvVar(name="RUNBOOK_ATTEMPT", value="9")
