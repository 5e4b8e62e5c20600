"""The residual-unknown rules and the statement never contradict what the graph found."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_executors.cti.report_rules import (
    RECOMMENDATIONS,
    RULES,
    VALIDATE_ADVICE,
    Findings,
    recommendations,
    residual_unknowns,
    statement,
)


def _candidate(kind: str, n: int, score: float, infra: float) -> dict[str, Any]:
    return {
        "id": f"{kind}--{n}",
        "name": f"{kind} {n}",
        "kind": kind,
        "score": score,
        "confidence": "low",
        "linkedIndicators": [f"ipv4:198.51.100.{n}"] if infra else [],
        "matchedTechniques": [],
        "contributions": [{"component": "infrastructure", "value": infra}],
    }


def _ranked(kind: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    one = st.tuples(st.floats(0.2, 1.0), st.sampled_from([0.0, 0.5]))
    return st.lists(one, max_size=3).map(
        lambda items: [
            _candidate(kind, n, s, i) for n, (s, i) in enumerate(sorted(items, key=lambda x: -x[0]))
        ]
    )


findings = st.builds(
    Findings,
    threshold=st.floats(0.3, 0.9),
    margin=st.just(0.1),
    min_techniques=st.just(3),
    candidates=_ranked("intrusion-set"),
    campaigns=_ranked("campaign"),
    summary=st.just({"techniques": []}),
    indicators=st.lists(st.just({"type": "ipv4", "value": "198.51.100.1"}), max_size=1),
    rejected=st.just([]),
    suppressed=st.just([]),
    unresolved=st.just([]),
    truncated=st.just([]),
    bundle=st.sampled_from([{}, {"sha256": "x", "validation": {"valid": True}}]),
    skipped_patterns=st.just([]),
    reached_actors=st.lists(st.just("intrusion-set--9"), max_size=1),
)


@settings(max_examples=200, deadline=None)
@given(findings)
def test_no_link_is_claimed_only_when_nothing_was_reached(f: Findings) -> None:
    codes = [u["code"] for u in residual_unknowns(f)]
    linked = bool(f.reached_actors) or any(
        c["contributions"][0]["value"] > 0 for c in [*f.candidates, *f.campaigns]
    )
    text = statement(f)
    if linked:
        assert "no_infrastructure_link" not in codes
        assert not text.startswith("No evidence linked")
    for campaign in f.linked_campaigns:
        if f.top is None or not f.attributed:
            assert campaign["name"] in text
    if f.attributed:
        assert f.top is not None and f.top["name"] in text
    assert codes == [code for code, _, _ in RULES if code in codes]  # table order
    advice = recommendations(f, residual_unknowns(f))
    assert advice[: len(codes)] == [RECOMMENDATIONS[c] for c in codes]
    assert (advice[len(codes) :] == [VALIDATE_ADVICE]) is f.attributed
