"""Tamper tests for the audit chain, in the spirit of transparency-dev/merkle's test suites.

The chain under test holds real entries from a simulated execution (retries, a skip, a pause).
Every single-field edit of every entry must be caught at exactly that entry; structural edits
(delete, insert, swap, reorder) must be caught; re-serialisation must not matter; and truncation
is documented as undetectable by the chain alone, but caught against a checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_engine.audit import (
    ENTRY_FIELDS,
    GENESIS_HASH,
    AuditChain,
    AuditEvent,
    entry_hash,
    verify,
)
from runbook_engine.enums import LogEventType

from .sim import HANG, fail, make_plan, ok, pause, resume, run, step

Entry = dict[str, Any]


def _chain() -> list[Entry]:
    plan = make_plan(
        step("ingest"),
        step("enrich", "ingest", retry={"maxAttempts": 2, "backoffSeconds": 1}),
        step("lookup", "ingest", skipOnFailure=True, timeoutMs=1000),
        step("mine", "enrich", "lookup"),
        step("report", "mine"),
    )
    res = run(
        plan,
        {
            "ingest": ok(1, {"records": [1, 2, {"deep": {"x": "ü"}}]}, {"ingested": 3}),
            "enrich": [fail(1), ok(2, {"n": 1.5})],
            "lookup": HANG,
            "mine": ok(1, kpis={"confidence": 0.75}),
            "report": ok(1, {"title": "Rapport 𝔸"}, {"confidence": 0.9}),
        },
        controls=[pause(2.5), resume(4)],
    )
    entries = res.chain.entries
    assert verify(entries).valid
    return entries


ENTRIES = _chain()
N = len(ENTRIES)


def fresh() -> list[Entry]:
    return copy.deepcopy(ENTRIES)


def test_the_fixture_is_a_rich_chain() -> None:
    assert 18 <= N <= 40
    types = {e["eventType"] for e in ENTRIES}
    assert {
        "STEP_ATTEMPT_FAILED",
        "STEP_SKIPPED",
        "EXECUTION_PAUSED",
        "EXECUTION_RESUMED",
        "EXECUTION_COMPLETED",
    } <= types
    assert any(e["stepId"] is None for e in ENTRIES)
    assert any(e["details"] for e in ENTRIES)
    assert ENTRIES[0]["previousHash"] == GENESIS_HASH
    assert [e["seq"] for e in ENTRIES] == list(range(N))
    v = verify(ENTRIES, expected_count=N, expected_head=ENTRIES[-1]["hash"])
    assert v.valid and v.count == N and v.head == ENTRIES[-1]["hash"]
    assert str(v).startswith(f"OK: {N} entries")


# --- single-field edits -----------------------------------------------------------------------


def _deep_edit(value: Any) -> Any:
    """A different value of the same shape: change one nested leaf (or add a key if empty)."""
    if isinstance(value, dict):
        if not value:
            return {"forged": True}
        key = sorted(value)[-1]
        return {**value, key: _deep_edit(value[key])}
    if isinstance(value, list):
        return [*value[:-1], _deep_edit(value[-1])] if value else ["forged"]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x" if value else "x"
    return "forged"


MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "seq": lambda v: v + 1,
    "logId": lambda v: v + "x",
    "executionId": lambda v: "other-execution",
    "timestamp": lambda v: v.replace("2024", "2023"),
    "actorId": lambda v: "mallory",
    "eventType": lambda v: "STEP_SUCCEEDED" if v != "STEP_SUCCEEDED" else "STEP_FAILED",
    "stepId": lambda v: "forged-step" if v is not None else "ingest",
    "details": _deep_edit,
    "previousHash": lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),
    "hash": lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),
}


def test_mutations_cover_every_field() -> None:
    assert set(MUTATIONS) == set(ENTRY_FIELDS)


@pytest.mark.parametrize("field", ENTRY_FIELDS)
def test_every_field_edit_of_every_entry_is_caught_at_that_entry(field: str) -> None:
    for i in range(N):
        entries = fresh()
        before = entries[i][field]
        entries[i][field] = MUTATIONS[field](before)
        assert entries[i][field] != before
        v = verify(entries)
        assert not v.valid, f"edit of {field} in entry {i} not detected"
        assert v.bad_index == i, (field, i, v.error)
        assert v.error
        assert str(v).startswith(f"TAMPERED at entry {i}:")


@pytest.mark.parametrize("index", range(N))
def test_nested_details_edits_are_caught(index: int) -> None:
    entries = fresh()
    details = entries[index]["details"]
    if not details:
        pytest.skip("no details")
    entries[index]["details"] = _deep_edit(details)
    v = verify(entries)
    assert (v.valid, v.bad_index) == (False, index)
    assert "hash mismatch" in (v.error or "")


def test_type_only_edits_are_caught() -> None:
    """1 vs 1.0 vs "1" vs true: canonical JSON keeps them apart."""
    i = next(k for k, e in enumerate(ENTRIES) if isinstance(e["details"].get("attempt"), int))
    for forged in (1.5, "1", True, [1]):
        entries = fresh()
        entries[i]["details"]["attempt"] = forged
        v = verify(entries)
        assert (v.valid, v.bad_index) == (False, i), forged


def test_re_hashed_edit_is_caught_at_the_next_entry() -> None:
    """An attacker who recomputes the edited entry's hash breaks the next link instead."""
    for i in range(N - 1):
        entries = fresh()
        entries[i]["actorId"] = "mallory"
        entries[i]["hash"] = entry_hash(entries[i])
        v = verify(entries)
        assert (v.valid, v.bad_index) == (False, i + 1)


def test_added_and_removed_fields_are_caught() -> None:
    for i in (0, N // 2, N - 1):
        entries = fresh()
        entries[i]["signature"] = "x"
        assert verify(entries).bad_index == i
        entries = fresh()
        del entries[i]["actorId"]
        v = verify(entries)
        assert (v.bad_index, v.error) == (i, "missing field(s) actorId")


def test_entry_of_another_execution_is_caught() -> None:
    entries = fresh()
    assert verify(entries, execution_id="exec-2").bad_index == 0
    assert verify(entries, execution_id="exec-1").valid


# --- structural edits -------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(N - 1))
def test_deleting_an_entry_is_caught(index: int) -> None:
    entries = fresh()
    del entries[index]
    v = verify(entries)
    assert (v.valid, v.bad_index) == (False, index)


@pytest.mark.parametrize("index", range(N + 1))
def test_inserting_a_copied_entry_is_caught(index: int) -> None:
    entries = fresh()
    entries.insert(index, copy.deepcopy(ENTRIES[(index + 3) % N]))
    v = verify(entries)
    assert not v.valid
    assert v.bad_index == index


def _forge(entries: list[Entry], at: int, **fields: Any) -> Entry:
    """A perfectly formed entry for position `at` (right seq, link and hash)."""
    forged = copy.deepcopy(ENTRIES[1])
    forged.update(
        seq=at,
        logId=f"exec-1/forged/{at}",
        previousHash=entries[at - 1]["hash"] if at else GENESIS_HASH,
        **fields,
    )
    forged["hash"] = entry_hash(forged)
    return forged


@pytest.mark.parametrize("index", range(N))
def test_inserting_a_well_formed_forged_entry_is_caught_after_it(index: int) -> None:
    entries = fresh()
    entries.insert(index, _forge(entries, index))
    v = verify(entries)
    assert (v.valid, v.bad_index) == (False, index + 1)


def test_appending_a_forged_entry_passes_even_against_a_checkpoint() -> None:
    """Documented limit: a chain proves its prefix; extensions are checked by later checkpoints."""
    entries = fresh()
    entries.append(_forge(entries, N))
    assert verify(entries).valid
    assert verify(entries, expected_count=N, expected_head=ENTRIES[-1]["hash"]).valid


def test_appending_a_replayed_log_id_is_caught() -> None:
    entries = fresh()
    replay = copy.deepcopy(ENTRIES[4])
    replay.update(seq=N, previousHash=entries[-1]["hash"])
    replay["hash"] = entry_hash(replay)
    entries.append(replay)
    v = verify(entries)
    assert (v.valid, v.bad_index) == (False, N)
    assert "duplicate logId" in (v.error or "")


@pytest.mark.parametrize("index", range(N - 1))
def test_swapping_adjacent_entries_is_caught(index: int) -> None:
    entries = fresh()
    entries[index], entries[index + 1] = entries[index + 1], entries[index]
    v = verify(entries)
    assert (v.valid, v.bad_index) == (False, index)


@pytest.mark.parametrize("seed", range(20))
def test_reordering_is_caught(seed: int) -> None:
    entries = fresh()
    order = list(range(N))
    rng = random.Random(seed)
    while order == list(range(N)):
        rng.shuffle(order)
    shuffled = [entries[k] for k in order]
    v = verify(shuffled)
    assert not v.valid
    assert v.bad_index == next(i for i, k in enumerate(order) if k != i)


def test_reversed_chain_is_caught() -> None:
    assert verify(fresh()[::-1]).bad_index == 0


# --- serialisation does not matter ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_reserialised_json_with_shuffled_keys_and_whitespace_verifies(seed: int) -> None:
    rng = random.Random(seed)

    def shuffle(value: Any) -> Any:
        if isinstance(value, dict):
            keys = list(value)
            rng.shuffle(keys)
            return {k: shuffle(value[k]) for k in keys}
        if isinstance(value, list):
            return [shuffle(v) for v in value]
        return value

    indent = rng.choice([None, 1, 4, "\t"])
    separators = rng.choice([(",", ":"), (", ", ": "), (" ,  ", " :\n ")])
    text = json.dumps(
        [shuffle(e) for e in ENTRIES],
        indent=indent,
        separators=separators,
        ensure_ascii=rng.random() < 0.5,
    )
    loaded = json.loads(text)
    assert loaded == ENTRIES
    assert [list(e) for e in loaded] != [list(e) for e in ENTRIES] or seed == 0
    v = verify(loaded, expected_count=N, expected_head=ENTRIES[-1]["hash"])
    assert v.valid, str(v)
    # JSON Lines, as the ledger stores it
    lines = "\n".join(json.dumps(shuffle(e), indent=None) for e in ENTRIES)
    assert verify([json.loads(x) for x in lines.splitlines()]).valid


# --- truncation and checkpoints ---------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 1, N // 2, N - 1])
def test_truncation_passes_plain_verify_but_not_a_checkpoint(keep: int) -> None:
    """A hash chain alone cannot tell that its tail was cut off: that needs a checkpoint."""
    truncated = fresh()[:keep]
    assert verify(truncated).valid  # documented limitation
    size, head = N, ENTRIES[-1]["hash"]
    v = verify(truncated, expected_count=size, expected_head=head)
    assert not v.valid
    assert v.bad_index == keep
    assert "truncated" in (v.error or "")
    assert not verify(truncated, expected_count=size).valid
    assert not verify(truncated, expected_head=head).valid


def test_checkpoint_of_a_prefix_still_verifies_the_grown_chain() -> None:
    k = N // 2
    assert verify(ENTRIES, expected_count=k, expected_head=ENTRIES[k - 1]["hash"]).valid
    assert verify(ENTRIES, expected_count=0, expected_head=GENESIS_HASH).valid


def test_rollback_to_a_different_history_fails_the_checkpoint() -> None:
    """Same length, different content (a re-written valid chain): the head gives it away."""
    rewritten = AuditChain("exec-1")
    for e in ENTRIES:
        event = AuditEvent(e["logId"].split("/", 1)[1], LogEventType(e["eventType"]), e["stepId"])
        rewritten.append(
            event, actor_id="mallory", timestamp=datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
        )
    assert verify(rewritten.entries).valid
    v = verify(rewritten.entries, expected_count=N, expected_head=ENTRIES[-1]["hash"])
    assert (v.valid, v.bad_index) == (False, N - 1)
    assert not verify(rewritten.entries, expected_head=ENTRIES[-1]["hash"]).valid


# --- append semantics -------------------------------------------------------------------------


def test_replaying_an_event_does_not_append_twice() -> None:
    chain = AuditChain("exec-9")
    t = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
    ev = AuditEvent("step/a/1/started", LogEventType.STEP_STARTED, "a", {"attempt": 1})
    first = chain.append(ev, actor_id="op", timestamp=t)
    assert first is not None and first["logId"] == "exec-9/step/a/1/started"
    assert chain.append(ev, actor_id="op", timestamp=t) is None
    same_key = AuditEvent("step/a/1/started", LogEventType.STEP_FAILED, "a", {"attempt": 2})
    assert chain.append(same_key, actor_id="other", timestamp=t) is None
    assert len(chain.entries) == 1
    second = chain.append(
        AuditEvent("step/a/1/succeeded", LogEventType.STEP_SUCCEEDED, "a"),
        actor_id="op",
        timestamp=t,
    )
    assert second is not None
    assert (second["seq"], second["previousHash"]) == (1, first["hash"])
    assert chain.head == second["hash"]
    # a chain re-opened from stored entries still deduplicates
    reopened = AuditChain("exec-9", json.loads(json.dumps(chain.entries)))
    assert reopened.append(ev, actor_id="op", timestamp=t) is None
    assert reopened.head == chain.head
    assert verify(reopened.entries).valid


def test_none_details_are_dropped_and_the_entry_round_trips() -> None:
    chain = AuditChain("e")
    entry = chain.append(
        AuditEvent(
            "k", LogEventType.EXECUTION_STARTED, None, {"a": None, "b": {"c": None, "d": 1}}
        ),
        actor_id="op",
        timestamp=datetime(2024, 1, 15, 10, 0, 0, 123456, tzinfo=UTC),
    )
    assert entry is not None
    assert entry["details"] == {"b": {"d": 1}}
    assert entry["timestamp"] == "2024-01-15T10:00:00.123Z"
    assert verify(json.loads(json.dumps(chain.entries))).valid


def test_empty_chain() -> None:
    assert AuditChain("e").head == GENESIS_HASH
    v = verify([])
    assert v.valid and v.count == 0 and v.head == GENESIS_HASH
    assert not verify([], expected_count=1).valid


# --- fuzz: any JSON in any field ----------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**60), 2**60),
        st.floats(allow_nan=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, N - 1),
    field=st.sampled_from(ENTRY_FIELDS),
    value=json_values,
    rehash=st.booleans(),
)
def test_any_json_in_any_field_is_reported_not_raised(
    index: int, field: str, value: Any, rehash: bool
) -> None:
    """verify() is a checker: malformed input is a failed verification, never an exception."""
    entries = fresh()
    same = entries[index][field] == value and type(entries[index][field]) is type(value)
    entries[index][field] = value
    if rehash and field != "hash":
        with contextlib.suppress(ValueError):  # not canonicalisable (an int beyond 2^53)
            entries[index]["hash"] = entry_hash(entries[index])
    v = verify(entries, expected_count=N, expected_head=ENTRIES[-1]["hash"])
    if same:
        assert v.valid
    else:
        assert not v.valid
        assert v.bad_index in (index, index + 1, N - 1)


# --- the fast entry hash (verification's hot path) ---------------------------------------------

entry_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53) + 1, 2**53 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=4), inner, max_size=3
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from([f for f in ENTRY_FIELDS if f != "hash"]), value=entry_values)
def test_the_stored_entry_hash_is_sha256_of_the_rfc8785_bytes(field: str, value: Any) -> None:
    """Whatever a field holds, the hash verification computes is SHA-256 over the reference
    RFC 8785 bytes of the entry without `hash` (the fast path changes the cost, not the bytes)."""
    entry = dict(ENTRIES[3])
    entry[field] = value
    body = {k: v for k, v in entry.items() if k != "hash"}
    assert entry_hash(entry) == hashlib.sha256(rfc8785.dumps(body)).hexdigest()


@pytest.mark.parametrize("where", [0, 1, 3_217, 9_998, 9_999])
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda e: e["details"].update(attempt=2), id="details-value"),
        pytest.param(lambda e: e["details"].update(extra="x"), id="details-key-added"),
        pytest.param(lambda e: e.update(actorId="mallory"), id="actor"),
        pytest.param(lambda e: e["details"].update(attempt=1.5), id="int-to-float"),
        pytest.param(lambda e: e["details"].update(attempt="1"), id="int-to-string"),
        pytest.param(lambda e: e.update(stepId="s\u00e9"), id="non-ascii"),
    ],
)
def test_one_tampered_entry_among_many_is_caught_at_its_index(
    where: int, tamper: Callable[[Entry], None]
) -> None:
    chain = AuditChain("long")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(10_000):
        chain.append(
            AuditEvent(f"e{i}", LogEventType.STEP_SUCCEEDED, f"s{i % 7}", {"attempt": 1}),
            actor_id="runner",
            timestamp=t0,
        )
    entries = json.loads(json.dumps(chain.entries))  # as read back from a store
    assert verify(entries).valid
    tamper(entries[where])
    result = verify(entries)
    assert not result.valid
    assert result.bad_index == where
    assert "hash mismatch" in (result.error or "")
