"""Ledgers left by older versions are still found after label values became one-to-one."""

from __future__ import annotations

from typing import Any

from runbook_operator import names
from runbook_operator.ledger import find
from runbook_operator.ledger.segments import segment_manifest, segment_meta
from runbook_operator.names import ExecutionRef


class Listing:
    """`Kube.list` over a fixed set of ConfigMaps, filtering `k=v,...` selectors as the
    apiserver does."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def list(self, _res: Any, _namespace: str, selector: str | None = None) -> list[Any]:
        wanted = dict(part.split("=", 1) for part in (selector or "").split(",") if part)
        return [
            cm
            for cm in self.items
            if all(cm["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        ]


def _segment(ref: ExecutionRef, *, legacy: bool) -> dict[str, Any]:
    cm = segment_manifest(ref, segment_meta(ref, 0, 0, None), [])
    if legacy:  # what versions before one-to-one label values wrote
        cm["metadata"]["labels"][names.EXECUTION_LABEL] = names.legacy_label_value(ref.name)
    return cm


def test_a_long_named_executions_old_and_new_ledgers_are_both_found() -> None:
    name = "nightly-" + "x" * 70
    old, new = ExecutionRef("ns", name, "uid-old"), ExecutionRef("ns", name, "uid-new")
    kube = Listing([_segment(old, legacy=True), _segment(new, legacy=False)])
    found = find.find_ledgers(kube, "ns", name)  # type: ignore[arg-type]
    assert sorted(f.lid.uid for f in found) == ["uid-new", "uid-old"]


def test_a_short_named_executions_label_is_unchanged() -> None:
    ref = ExecutionRef("ns", "demo", "u1")
    kube = Listing([_segment(ref, legacy=True)])
    assert [f.lid.uid for f in find.find_ledgers(kube, "ns", "demo")] == ["u1"]  # type: ignore[arg-type]
