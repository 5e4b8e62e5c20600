"""LedgerStore's write protocol against an in-memory apiserver double (helpers.Store):
idempotent appends, Conflict for a second writer, and no loss or duplicate after reload+retry
under any interleaving. tests/e2e/test_ledger.py runs the same protocol on the real apiserver."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_engine.audit import AuditChain, AuditEvent, verify
from runbook_engine.enums import LogEventType
from runbook_operator.kube import AlreadyExists, Conflict, Invalid
from runbook_operator.ledger.checkpoint import Signer, load_public_pem
from runbook_operator.ledger.segments import LedgerError, Write, all_entries, ordered
from runbook_operator.ledger.store import LedgerStore
from runbook_operator.ledger.verify import verify_ledger

from .helpers import LID, T0, Refused, Store, chain_of


class FakeKube:
    """list/create/replace of ConfigMaps over helpers.Store, raising kube's typed errors."""

    def __init__(self) -> None:
        self.store = Store()
        self.writes = 0
        self.lists = 0

    def list(self, res: Any, namespace: str | None, selector: str | None = None) -> list[Any]:
        self.lists += 1
        return self.store.configmaps()

    def _apply(self, body: Mapping[str, Any], replace: bool) -> dict[str, Any]:
        self.writes += 1
        try:
            return self.store.apply(Write(dict(body), replace, 0, True))
        except Refused as exc:
            text = str(exc)
            if "already exists" in text:
                raise AlreadyExists(409, "AlreadyExists", text) from None
            if "conflict" in text:
                raise Conflict(409, "Conflict", text) from None
            raise Invalid(422, "Invalid", text) from None

    def create(self, res: Any, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._apply(body, False)

    def replace(
        self, res: Any, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._apply(body, True)


def _store(kube: FakeKube, max_bytes: int = 3_000) -> LedgerStore:
    return LedgerStore(kube, LID, max_bytes=max_bytes)  # type: ignore[arg-type]


def test_append_is_idempotent_and_load_rebuilds_the_chain() -> None:
    kube = FakeKube()
    chain = chain_of(30, pad=120)
    store = _store(kube)
    assert store.load().entries == []
    store.append(chain.entries[:10])
    store.append(chain.entries[:20])  # the first 10 again: skipped
    writes = kube.writes
    store.append(chain.entries[:20])
    assert kube.writes == writes  # nothing new, nothing written
    store.append(chain.entries)
    loaded = _store(kube).load()
    assert loaded.entries == chain.entries and loaded.head == chain.head
    assert len(ordered(kube.store.configmaps())) > 1


def test_load_reads_once_and_again_only_after_a_conflict() -> None:
    kube = FakeKube()
    chain = chain_of(4)
    a, b = _store(kube), _store(kube)
    a.append(chain.entries[:2])
    assert a.load().entries == chain.entries[:2] and kube.lists == 1
    b.append(chain.entries[:3])
    assert a.load().entries == chain.entries[:2]  # cached: a has not met b's write yet
    with pytest.raises(Conflict):
        a.append(chain.entries)
    assert a.load().entries == chain.entries[:3] and kube.lists == 3
    a.append(chain.entries)
    assert _store(kube).load().entries == chain.entries


def test_a_second_writer_gets_conflict_and_a_retry_loses_nothing() -> None:
    kube = FakeKube()
    chain = chain_of(6)
    a, b = _store(kube), _store(kube)
    a.load(), b.load()
    a.append(chain.entries[:3])
    with pytest.raises(Conflict):
        b.append(chain.entries[:4])  # B's view is stale: its guarded write is refused
    b.load()
    b.append(chain.entries[:4])  # the first three are already there
    assert [e["seq"] for e in _store(kube).load().entries] == [0, 1, 2, 3]


def test_an_entry_that_does_not_extend_the_stored_chain_is_a_conflict() -> None:
    kube = FakeKube()
    store = _store(kube)
    store.append(chain_of(3).entries)
    other = AuditChain(LID.execution_id, chain_of(2).entries)
    other.append(AuditEvent("elsewhere", LogEventType.EXECUTION_PAUSED), actor_id="x", timestamp=T0)
    with pytest.raises(Conflict, match="does not extend the stored ledger"):
        store.append(other.entries)


def test_a_damaged_ledger_refuses_to_load() -> None:
    kube = FakeKube()
    _store(kube).append(chain_of(4).entries)
    (cm,) = kube.store.objects.values()
    cm["data"]["entries.jsonl"] = cm["data"]["entries.jsonl"].replace("s2", "s9", 1)
    with pytest.raises(LedgerError, match="is damaged: entry 2"):
        _store(kube).load()


def test_write_checkpoint_stores_the_chain_then_signs_it() -> None:
    kube = FakeKube()
    signer = Signer.generate()
    chain = chain_of(12, pad=100)
    store = _store(kube)
    cp = store.write_checkpoint(chain, signer, T0)
    assert cp["count"] == 12 and cp["head"] == chain.head
    keys = {signer.key_id: load_public_pem(signer.public_pem)}.get
    report = verify_ledger(
        LID, ordered(kube.store.configmaps()), keys=keys, require_checkpoint=True
    )
    assert report.ok and report.checkpoint == cp


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    schedule=st.lists(st.tuples(st.booleans(), st.integers(1, 8)), min_size=1, max_size=30),
)
def test_two_writers_any_interleaving_no_loss_no_duplicate(
    n: int, schedule: list[tuple[bool, int]]
) -> None:
    """Two stores replay the same chain (as two operator pods after at-least-once delivery
    would), each in its own batches, reloading on Conflict: the ledger ends up exactly the
    chain, in one valid sealed series."""
    kube = FakeKube()
    chain = chain_of(n, pad=200)
    writers = [_store(kube, 2_500), _store(kube, 2_500)]
    done = [0, 0]
    steps = itertools.cycle(schedule)
    while min(done) < n:
        second, size = next(steps)
        w = int(second)
        if done[w] >= n:
            w = 1 - w
        upto = min(n, done[w] + size)
        try:
            writers[w].append(chain.entries[:upto])
            done[w] = upto
        except Conflict:
            writers[w].load()
    segments = ordered(kube.store.configmaps())
    entries = all_entries(segments)
    assert entries == chain.entries
    assert verify(entries, execution_id=LID.execution_id).valid
    assert verify_ledger(LID, segments, keys=lambda _: None).ok
