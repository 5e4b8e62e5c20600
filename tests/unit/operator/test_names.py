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


@given(st.text(max_size=300), st.text(max_size=300))
def test_label_values_are_one_to_one(one: str, other: str) -> None:
    if one != other:
        assert names.label_value(one) != names.label_value(other)


@given(step_ids, step_ids)
def test_step_ids_get_label_values_of_their_own(one: str, other: str) -> None:
    if one != other:
        assert names.label_value(one) != names.label_value(other)


@given(st.text(alphabet="a-_.0123456789abcdef", max_size=80))
def test_label_values_of_texts_that_look_hashed_stay_apart(text: str) -> None:
    """A text that ends like a hashed value is hashed too: no valid text can imitate one."""
    value = names.label_value(text)
    assert LABEL_VALUE.match(value) and len(value) <= 63
    for suffix in ("-", "_", ".", "_0123456789"):
        assert names.label_value(text + suffix) != value


def test_a_a_dash_and_a_underscore_get_three_label_values() -> None:
    values = {names.label_value(sid) for sid in ("a", "a-", "a_", "a.")}
    assert len(values) == 4
    assert names.label_value("a") == "a"
    assert all(v.startswith("a_") for v in values - {"a"})


@given(st.from_regex(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$", fullmatch=True))
def test_execution_names_up_to_63_keep_their_label_value(name: str) -> None:
    """Existing ledgers are found by the execution label: its value must not change."""
    assert names.label_value(name) == name == names.legacy_label_value(name)


def test_long_execution_names_are_also_found_by_their_old_label_value() -> None:
    name = "x" * 70
    assert names.label_value(name) != names.legacy_label_value(name)
    assert len(names.legacy_label_value(name)) <= 63
