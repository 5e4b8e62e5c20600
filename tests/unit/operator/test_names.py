"""Child names are deterministic, valid and distinct per (execution uid, step, attempt)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from runbook_engine.model import STEP_ID_PATTERN
from runbook_operator import names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
step_ids = st.from_regex(STEP_ID_PATTERN, fullmatch=True)
execution_names = st.from_regex(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", fullmatch=True)


@given(execution_names, st.uuids().map(str), step_ids, st.integers(1, 100))
def test_job_names_are_valid_dns_labels_that_leave_room_for_pod_suffixes(
    execution: str, uid: str, step: str, attempt: int
) -> None:
    name = names.job_name(execution, uid, step, attempt)
    assert DNS_LABEL.match(name), name
    assert len(name) <= names.JOB_NAME_MAX
    assert name == names.job_name(execution, uid, step, attempt)


@given(execution_names, st.uuids().map(str), step_ids, step_ids)
def test_different_steps_or_attempts_never_share_a_job(
    execution: str, uid: str, one: str, other: str
) -> None:
    assert names.job_name(execution, uid, one, 1) != names.job_name(execution, uid, one, 2)
    if one != other:
        assert names.job_name(execution, uid, one, 1) != names.job_name(execution, uid, other, 1)


def test_a_recreated_execution_gets_new_children() -> None:
    assert names.job_name("x", "uid-1", "a", 1) != names.job_name("x", "uid-2", "a", 1)
    assert names.ledger_configmap("x", "uid-1aaaaaa", 0) != names.ledger_configmap(
        "x", "uid-2aaaaaa", 0
    )


@given(st.text(min_size=1, max_size=300))
def test_label_values_are_always_valid(text: str) -> None:
    value = names.label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value


def test_labels_carry_app_kubernetes_io_and_the_execution() -> None:
    labels = names.labels("demo", "u-1", "step", step_id="s1", attempt=2)
    assert labels["app.kubernetes.io/managed-by"] == "runbook-operator"
    assert labels["app.kubernetes.io/instance"] == "demo"
    assert labels[names.EXECUTION_UID_LABEL] == "u-1"
    assert (labels[names.STEP_LABEL], labels[names.ATTEMPT_LABEL]) == ("s1", "2")
