"""Tamper tests for a stored ledger (after transparency-dev/merkle): corrupt every entry field,
every segment field, the seal, the listing, the checkpoint and the status, and expect a failure
naming the first bad entry each time; re-serialised JSON must still verify."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from runbook_engine.audit import ENTRY_FIELDS
from runbook_operator.ledger.checkpoint import KeyRef, Signer, load_public_pem, make_checkpoint
from runbook_operator.ledger.segments import (
    CHECKPOINT_KEY,
    ENTRIES_KEY,
    SEGMENT_KEY,
    all_entries,
    entry_line,
    ordered,
)
from runbook_operator.ledger.verify import Report, locate, verify_ledger

from .helpers import LID, T0, Store, append_lines, chain_of, store_checkpoint

SIGNER = Signer.generate(KeyRef("ops", "key"))
KEYS = {SIGNER.key_id: load_public_pem(SIGNER.public_pem)}.get
MAX = 3_000
N = 24

CM = dict[str, Any]


def _ledger(n: int = N, checkpoint: bool = True) -> list[CM]:
    store = Store()
    chain = chain_of(n, pad=150)
    append_lines(store, [entry_line(e) for e in chain.entries], MAX)
    if checkpoint:
        cp = make_checkpoint(
            execution_id=LID.execution_id, count=n, head=chain.head, now=T0, signer=SIGNER
        )
        store_checkpoint(store, cp, MAX)
    return store.configmaps()


LEDGER = _ledger()


def _verify(cms: list[CM], **kw: Any) -> Report:
    return verify_ledger(LID, ordered(cms), keys=KEYS, **kw)


def _entries_of(cm: CM) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cm["data"][ENTRIES_KEY].splitlines()]


def _set_entries(cm: CM, entries: list[Any]) -> None:
    cm["data"][ENTRIES_KEY] = "".join(
        (e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries
    )


def _meta(cm: CM) -> dict[str, Any]:
    return dict(json.loads(cm["data"][SEGMENT_KEY]))


def _set_meta(cm: CM, meta: dict[str, Any]) -> None:
    cm["data"][SEGMENT_KEY] = json.dumps(meta)


def test_the_untouched_ledger_verifies() -> None:
    report = _verify(LEDGER)
    assert report.ok, report.problems
    assert report.count == N and report.segments >= 4
    assert report.checkpoint is not None and report.checkpoint["count"] == N
    assert report.headline().startswith(f"OK {LID.execution_id}: {N} entries")
    assert report.notes == []


def test_reserialised_json_everywhere_still_verifies() -> None:
    cms = copy.deepcopy(LEDGER)
    for cm in cms:
        entries = _entries_of(cm)
        cm["data"][ENTRIES_KEY] = "".join(
            json.dumps(dict(reversed(list(e.items()))), separators=(" ,", ":  ")) + "\n"
            for e in entries
        )
        _set_meta(cm, dict(reversed(list(_meta(cm).items()))))
        if CHECKPOINT_KEY in cm["data"]:
            cp = json.loads(cm["data"][CHECKPOINT_KEY])
            cm["data"][CHECKPOINT_KEY] = json.dumps(dict(reversed(list(cp.items()))), indent=2)
    assert _verify(cms).ok


def _field_changes(value: Any) -> list[Any]:
    if isinstance(value, bool) or value is None:
        return ["x", 1]
    if isinstance(value, int):
        return [value + 1, str(value), None]
    if isinstance(value, str):
        return [value[:-1] + ("0" if value[-1:] != "0" else "1"), value + " ", None]
    return [{**value, "tampered": True}, None]


def test_every_entry_field_edit_is_caught_at_that_entry() -> None:
    cases = 0
    for k, cm in enumerate(LEDGER):
        for i, entry in enumerate(_entries_of(cm)):
            for field in ENTRY_FIELDS:
                for change in _field_changes(entry[field]):
                    cms = copy.deepcopy(LEDGER)
                    entries = _entries_of(cms[k])
                    entries[i][field] = change
                    _set_entries(cms[k], entries)
                    report = _verify(cms)
                    seq = entry["seq"]
                    assert not report.ok, (field, change)
                    assert report.problems[0].seq == seq, (field, change, report.problems[0])
                    assert report.headline().startswith(f"TAMPERED at entry {seq} ")
                    assert cm["metadata"]["name"] in report.headline()
                    cases += 1
    assert cases > N * len(ENTRY_FIELDS) * 2


def _structural_edits() -> list[tuple[str, Callable[[list[CM]], list[CM]]]]:
    edits: list[tuple[str, Callable[[list[CM]], list[CM]]]] = []

    def meta_edit(k: int, key: str, value: Any) -> Callable[[list[CM]], list[CM]]:
        def edit(cms: list[CM]) -> list[CM]:
            meta = _meta(cms[k])
            if isinstance(value, tuple):  # nested key of `previous`
                meta["previous"] = {**(meta["previous"] or {}), value[0]: value[1]}
            else:
                meta[key] = value
            _set_meta(cms[k], meta)
            return cms

        return edit

    n = len(LEDGER)
    for k in range(n):
        meta = _meta(LEDGER[k])
        edits += [
            (f"seg{k} index", meta_edit(k, "index", meta["index"] + 7)),
            (f"seg{k} firstSeq", meta_edit(k, "firstSeq", meta["firstSeq"] + 1)),
            (f"seg{k} executionId", meta_edit(k, "executionId", "ns/other/01234567")),
            (f"seg{k} executionUid", meta_edit(k, "executionUid", "other")),
            (f"seg{k} previous name", meta_edit(k, "previous", ("name", "x"))),
            (f"seg{k} previous uid", meta_edit(k, "previous", ("uid", "x"))),
            (f"seg{k} previous finalHash", meta_edit(k, "previous", ("finalHash", "0" * 64))),
            (f"seg{k} sealed flag", meta_edit(k, "sealed", not meta.get("sealed", False))),
        ]
        if meta.get("sealed"):
            edits += [
                (f"seg{k} count", meta_edit(k, "count", meta["count"] - 1)),
                (f"seg{k} finalHash", meta_edit(k, "finalHash", "f" * 64)),
                (
                    f"seg{k} not immutable",
                    lambda c, k=k: [*c[:k], {**c[k], "immutable": False}, *c[k + 1 :]],
                ),
            ]
        last = k == n - 1
        if not _entries_of(LEDGER[k]) or last:
            continue  # see test_losing_the_newest_segment
        edits += [
            (f"seg{k} no segment.json", lambda c, k=k: (c[k]["data"].pop(SEGMENT_KEY), c)[1]),
            (f"seg{k} segment.json not JSON", meta_edit(k, "index", float("nan"))),
            (f"seg{k} renamed", lambda c, k=k: (c[k]["metadata"].__setitem__("name", "x"), c)[1]),
            (
                f"seg{k} recreated (new uid)",
                lambda c, k=k: (c[k]["metadata"].__setitem__("uid", "u2"), c)[1],
            ),
            (f"seg{k} deleted", lambda c, k=k: c[:k] + c[k + 1 :]),
            (
                f"seg{k} last line dropped",
                lambda c, k=k: (_set_entries(c[k], _entries_of(c[k])[:-1]), c)[1],
            ),
            (
                f"seg{k} line duplicated",
                lambda c, k=k: (_set_entries(c[k], _entries_of(c[k]) * 2), c)[1],
            ),
            (
                f"seg{k} blank line",
                lambda c, k=k: (_set_entries(c[k], ["", *_entries_of(c[k])]), c)[1],
            ),
            (f"seg{k} emptied", lambda c, k=k: (_set_entries(c[k], []), c)[1]),
        ]
    for k in range(n - 1):

        def swap(c: list[CM], k: int = k) -> list[CM]:
            c[k]["data"], c[k + 1]["data"] = c[k + 1]["data"], c[k]["data"]
            return c

        edits.append((f"seg{k}<->seg{k + 1} contents swapped", swap))
    return edits


@pytest.mark.parametrize("name_edit", _structural_edits(), ids=lambda ne: ne[0])
def test_every_segment_edit_is_caught(
    name_edit: tuple[str, Callable[[list[CM]], list[CM]]],
) -> None:
    _, edit = name_edit
    report = _verify(edit(copy.deepcopy(LEDGER)))
    assert not report.ok
    assert report.headline().startswith("TAMPERED at ")


def _with_checkpoint(mutate: Callable[[dict[str, Any]], Any]) -> list[CM]:
    cms = copy.deepcopy(LEDGER)
    for cm in cms:
        if CHECKPOINT_KEY in cm["data"]:
            cp = json.loads(cm["data"][CHECKPOINT_KEY])
            mutate(cp)
            cm["data"][CHECKPOINT_KEY] = json.dumps(cp)
    return cms


@pytest.mark.parametrize(
    "field", ["type", "executionId", "count", "head", "time", "keyId", "keyRef", "signature"]
)
def test_every_checkpoint_field_edit_is_caught(field: str) -> None:
    def mutate(cp: dict[str, Any]) -> None:
        value = cp[field]
        cp[field] = (
            value - 1
            if isinstance(value, int)
            else ({**value, "name": "y"} if isinstance(value, dict) else "A" + value[1:])
        )

    report = _verify(_with_checkpoint(mutate))
    assert not report.ok and "checkpoint" in report.problems[0].reason


def test_truncated_tail_is_caught_by_the_checkpoint() -> None:
    for drop in (1, 2):
        cms = copy.deepcopy(LEDGER)
        last = next(cm for cm in reversed(cms) if _entries_of(cm))
        _set_entries(last, _entries_of(last)[:-drop])
        report = _verify(cms)
        assert not report.ok
        assert "tail was cut off" in str(report.problems[0]) or "sealed" in str(report.problems[0])


def test_without_a_checkpoint_a_cut_tail_is_only_a_note_unless_required() -> None:
    cms = _ledger(checkpoint=False)
    report = _verify(cms)
    assert report.ok and "no signed checkpoint" in report.notes[0]
    required = _verify(cms, require_checkpoint=True)
    assert not required.ok and "no valid signed checkpoint" in required.headline()


def test_a_checkpoint_by_an_unknown_key_fails() -> None:
    report = verify_ledger(LID, ordered(LEDGER), keys=lambda _: None)
    assert not report.ok and "not a trusted public key" in report.headline()


def _status(count: int = N, **over: Any) -> dict[str, Any]:
    entries = all_entries(ordered(LEDGER))
    head = entries[min(count, N) - 1]["hash"]
    audit = {"count": count, "head": head, "recent": entries[max(0, count - 5) : count]}
    audit.update(over)
    return audit


def test_status_agrees_or_lags() -> None:
    assert _verify(LEDGER, status_audit=_status()).ok
    behind = _verify(LEDGER, status_audit=_status(N - 3))
    assert behind.ok and "3 entries ahead of the status" in behind.notes[-1]


@pytest.mark.parametrize(
    "audit",
    [
        _status(N + 1, head="1" * 64),
        _status(head="2" * 64),
        _status(recent=[{**e, "hash": "3" * 64} for e in _status()["recent"]]),
    ],
    ids=["count beyond the ledger", "other head", "recent entry differs"],
)
def test_status_disagreement_is_caught(audit: dict[str, Any]) -> None:
    report = _verify(LEDGER, status_audit=audit)
    assert not report.ok and "status.audit" in report.headline()


def test_rollback_with_its_own_older_checkpoint_is_caught_only_by_a_newer_record() -> None:
    """The documented limit: a whole store rolled back to an older valid state, checkpoint
    included, verifies on its own; the live status (or any copy kept elsewhere) catches it."""
    older = _ledger(n=N - 4)
    assert _verify(older).ok
    report = _verify(older, status_audit=_status())
    assert not report.ok and "fewer" in report.headline()


def test_locate_names_segment_and_line() -> None:
    segments = ordered(LEDGER)
    first = segments[1]
    assert locate(segments, first.first_seq) == (first.name, 1)
    assert locate(segments, 10_000)[1] is None


def test_losing_the_newest_segment() -> None:
    """Deleting the newest segment takes its checkpoint along: the rest is a valid shorter
    ledger (docs/audit.md). The live status, a required checkpoint, or a checkpoint kept
    elsewhere catches it; recreating it unchanged (a new uid) changes nothing that matters."""
    cut = copy.deepcopy(LEDGER)[:-2]  # the checkpoint's segment and the newest entries
    assert _verify(cut).ok
    assert not _verify(cut, status_audit=_status()).ok
    assert not _verify(cut, require_checkpoint=True).ok
    recreated = copy.deepcopy(LEDGER)
    recreated[-1]["metadata"]["uid"] = "u2"
    assert _verify(recreated).ok
