"""Identity stamped at admission, read back; and the check that the stored ledger is the one
the operator wrote (status and checkpoint marks)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_operator.execution import stamps
from runbook_operator.execution.stamps import Stamps, control_annotations, control_of
from runbook_operator.execution.view import ExecutionView
from runbook_operator.ledger.continuity import rewritten
from tests.unit.ledger.helpers import chain_of

from .kubefakes import execution

CREATED = {
    stamps.CREATED_BY: "alice",
    stamps.CREATED_BY_UID: "u-1",
    stamps.CREATED_BY_GROUPS: "tenant-a,system:authenticated",
}


def test_the_creator_is_read_from_the_stamps() -> None:
    found = Stamps.of(CREATED, paused=False, cancel=False)
    assert found.creator is not None and found.creator.username == "alice"
    assert found.creator.groups == ("tenant-a", "system:authenticated")
    assert found.creator.uid == "u-1"
    assert found.controller is None


def test_no_stamp_no_creator() -> None:
    assert Stamps.of({}, paused=False, cancel=False).creator is None


def test_a_control_stamp_counts_only_for_the_controls_it_set() -> None:
    from runbook_engine.identity import Identity

    bob = Identity("bob", ("sre",), "u-2")
    annotations = {**CREATED, **control_annotations(bob, paused=True, cancel=False)}
    assert annotations[stamps.CONTROL_OF] == "paused=true,cancel=false"
    assert Stamps.of(annotations, paused=True, cancel=False).controller == bob
    # The spec moved on without a new stamp (impossible through admission): not bob's doing.
    assert Stamps.of(annotations, paused=False, cancel=False).controller is None


def test_the_view_carries_the_stamps() -> None:
    body = execution(spec={"paused": True})
    body["metadata"]["annotations"] = {
        **CREATED,
        stamps.CONTROL_BY: "bob",
        stamps.CONTROL_OF: control_of(True, False),
    }
    view = ExecutionView.of(body)
    assert view.stamps.creator is not None and view.stamps.creator.username == "alice"
    assert view.stamps.controller is not None and view.stamps.controller.username == "bob"


def _audit(
    entries: list[dict[str, Any]], count: int, checkpoint: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"count": count, "head": entries[count - 1]["hash"]}
    if checkpoint is not None:
        out["checkpoint"] = {"count": checkpoint, "head": entries[checkpoint - 1]["hash"]}
    return out


def test_a_chain_that_extends_what_was_recorded_is_ours() -> None:
    entries = chain_of(6).entries
    assert rewritten(entries, _audit(entries, 4, checkpoint=3)) is None
    assert rewritten(entries, {}) is None  # nothing recorded yet (a new execution)


def test_a_truncated_chain_is_caught() -> None:
    entries = chain_of(6).entries
    problem = rewritten(entries[:3], _audit(entries, 5))
    assert problem is not None and "fewer than the 5" in problem


@given(st.integers(min_value=0, max_value=5))
def test_a_chain_rewritten_with_recomputed_hashes_is_caught(edited: int) -> None:
    """A tenant edits one entry and recomputes every hash after it: consistent with itself, but
    not the chain the status and the checkpoint recorded."""
    entries = chain_of(6).entries
    forged = chain_of(6, actor="mallory").entries  # same shape, other content, valid hashes
    mixed = entries[:edited] + forged[edited:]
    problem = rewritten(mixed, _audit(entries, 6, checkpoint=6))
    assert problem is not None and "rewritten" in problem


@pytest.mark.parametrize("where", ["status", "checkpoint"])
def test_each_mark_is_checked(where: str) -> None:
    entries = chain_of(6).entries
    other = chain_of(6, actor="mallory").entries
    audit = _audit(entries, 6, checkpoint=6)
    if where == "status":
        audit["checkpoint"] = {"count": 6, "head": other[5]["hash"]}
        audit["head"] = other[5]["hash"]
        assert rewritten(other, audit) is None  # both marks agree with the forgery…
        audit["checkpoint"]["head"] = entries[5]["hash"]  # …until the signed one disagrees
    else:
        audit["head"] = other[5]["hash"]
    assert rewritten(other, audit) is not None
