"""Segments: rolling before the size limit, sealing, linking, and parsing back after any split."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_engine.audit import verify
from runbook_operator import names
from runbook_operator.ledger.segments import (
    CHECKPOINT_KEY,
    ENTRIES_KEY,
    SEGMENT_KEY,
    SEGMENT_MAX_BYTES,
    LedgerError,
    Write,
    all_entries,
    entry_line,
    ordered,
    plan_append,
    segment_manifest,
    segment_meta,
    structure_problems,
)

from .helpers import APISERVER_LIMIT, LID, Store, append_lines, chain_of, store_checkpoint


def _lines(n: int, pad: int = 0) -> list[str]:
    return [entry_line(e) for e in chain_of(n, pad).entries]


def test_one_segment_holds_a_small_chain() -> None:
    store = Store()
    assert append_lines(store, _lines(5), SEGMENT_MAX_BYTES) == 1
    (cm,) = store.configmaps()
    assert cm["metadata"]["name"] == names.ledger_configmap("demo", LID.uid, 0)
    assert "ownerReferences" not in cm["metadata"]
    labels = cm["metadata"]["labels"]
    assert labels[names.RETENTION_LABEL] == "true"
    assert labels[names.COMPONENT_LABEL] == "ledger"
    assert labels[names.EXECUTION_UID_LABEL] == LID.uid
    assert "immutable" not in cm
    meta = json.loads(cm["data"][SEGMENT_KEY])
    assert meta["firstSeq"] == 0 and meta["index"] == 0 and meta["previous"] is None
    assert cm["data"][ENTRIES_KEY].count("\n") == 5


def test_a_full_segment_is_sealed_and_the_next_records_it() -> None:
    store = Store()
    lines = _lines(40, pad=300)
    append_lines(store, lines, 4_000)
    segments = store.segments()
    assert len(segments) > 3
    for before, after in itertools.pairwise(segments):
        assert before.immutable and before.meta["sealed"] is True
        assert before.meta["count"] == len(before.lines)
        assert before.meta["finalHash"] == before.entries[-1]["hash"]
        assert after.meta["previous"] == {
            "name": before.name,
            "uid": before.uid,
            "finalHash": before.entries[-1]["hash"],
        }
        assert after.first_seq == before.first_seq + len(before.lines)
    assert not segments[-1].sealed
    assert all(s.size <= 4_000 for s in segments)
    assert structure_problems(LID, segments) == []
    assert verify(all_entries(segments), execution_id=LID.execution_id).valid


def test_default_segments_stay_under_the_apiserver_limit() -> None:
    store = Store()
    lines = _lines(2_500, pad=400)
    append_lines(store, lines, SEGMENT_MAX_BYTES)
    segments = store.segments()
    assert len(segments) >= 2
    assert max(s.size for s in segments) <= SEGMENT_MAX_BYTES < APISERVER_LIMIT
    assert [e["seq"] for e in all_entries(segments)] == list(range(2_500))


def test_an_entry_larger_than_a_segment_is_refused_before_any_write() -> None:
    store = Store()
    big = chain_of(3, pad=5_000)
    lines = [entry_line(e) for e in big.entries]
    with pytest.raises(LedgerError, match="does not fit in a ledger segment"):
        plan_append(LID, store.segments(), lines, 4_000)
    assert store.objects == {}


def test_nothing_pending_plans_nothing() -> None:
    assert plan_append(LID, [], [], 4_000) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 60),
    pad=st.integers(0, 400),
    max_bytes=st.integers(2_500, 12_000),
    cuts=st.lists(st.integers(0, 60), max_size=6),
)
def test_any_batching_stores_the_chain_exactly(
    n: int, pad: int, max_bytes: int, cuts: list[int]
) -> None:
    """However the appends are batched and wherever segments roll, reading back gives the
    same chain, one continuous sealed series, and no segment over the limit."""
    lines = _lines(n, pad)
    store = Store()
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    for lo, hi in itertools.pairwise(bounds):
        append_lines(store, lines[lo:hi], max_bytes)
    segments = store.segments()
    assert [entry_line(e) for e in all_entries(segments)] == lines
    assert structure_problems(LID, segments) == []
    assert all(s.size <= max_bytes for s in segments)
    assert all(s.sealed for s in segments[:-1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), splits=st.sets(st.integers(1, 29), max_size=5))
def test_parse_after_any_split(n: int, splits: set[int]) -> None:
    """Segments cut at arbitrary points (built directly) parse back in order, in any listing
    order, and verify."""
    lines = _lines(n, 50)
    bounds = sorted({0, n, *(s for s in splits if s < n)})
    store = Store()
    previous = None
    for index, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        meta = segment_meta(LID, index, lo, previous)
        last = hi == n
        body = segment_manifest(LID, meta, lines[lo:hi], sealed=not last)
        store.apply(Write(body, False, 0, True))
        previous = store.segments()[-1]
    listed = list(reversed(store.configmaps()))
    segments = ordered(listed)
    assert structure_problems(LID, segments) == []
    assert [entry_line(e) for e in all_entries(segments)] == lines


def test_reserialised_entries_and_metadata_still_parse_and_verify() -> None:
    """The apiserver keeps strings verbatim, but a human or tool may re-serialise: key order
    and whitespace in the stored JSON never matter."""
    store = Store()
    append_lines(store, _lines(12, 80), 3_000)
    for cm in store.objects.values():
        data = cm["data"]
        entries = [json.loads(line) for line in data[ENTRIES_KEY].splitlines()]
        data[ENTRIES_KEY] = "".join(
            json.dumps(dict(reversed(list(e.items()))), indent=None, separators=(", ", " : "))
            + "\n"
            for e in entries
        )
        data[SEGMENT_KEY] = json.dumps(json.loads(data[SEGMENT_KEY]), indent=3)
    segments = store.segments()
    assert structure_problems(LID, segments) == []
    assert verify(all_entries(segments), execution_id=LID.execution_id).valid


def test_checkpoint_goes_into_the_open_segment_or_a_new_one() -> None:
    store = Store()
    append_lines(store, _lines(3), 3_000)
    store_checkpoint(store, {"count": 3, "pad": ""}, 3_000)
    assert len(store.segments()) == 1
    assert json.loads(store.segments()[0].data[CHECKPOINT_KEY])["count"] == 3
    # A nearly full open segment is sealed and the checkpoint starts the next, empty one.
    store_checkpoint(store, {"count": 3, "pad": "p" * 1_500}, 3_000)
    segments = store.segments()
    assert len(segments) == 2 and segments[0].sealed and segments[1].lines == ()
    assert json.loads(segments[1].data[CHECKPOINT_KEY])["pad"] == "p" * 1_500
    assert json.loads(segments[0].data[CHECKPOINT_KEY])["count"] == 3  # kept when sealed
    append_lines(store, [entry_line(e) for e in chain_of(5).entries[3:]], 3_000)
    segments = store.segments()
    assert structure_problems(LID, segments) == []
    assert [e["seq"] for e in all_entries(segments)] == [0, 1, 2, 3, 4]
