"""The attribution score: bands, explainability, tie-breaks and monotonicity (hypothesis)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_executors.cti.attack import Actor, attack_knowledge
from runbook_executors.cti.scoring import (
    WEIGHTS,
    EvidenceSet,
    GraphLink,
    confidence_band,
    rank_actors,
    score_actor,
    software_users,
    technique_weights,
)

TECHS = ["T1001", "T1027", "T1059", "T1059.001", "T1059.003", "T1071.001", "T1105", "T1566.001"]
SOFT = ["S0001", "S0002", "S0003", "name:lanternloader"]


def actor(actor_id: str, techniques: set[str], software: set[str]) -> Actor:
    return Actor(
        id=actor_id,
        stix_id=f"intrusion-set--{actor_id}",
        kind="intrusion-set",
        name=actor_id,
        aliases=(),
        sources=("test",),
        techniques=frozenset(techniques),
        software=frozenset(software),
    )


UNIVERSE = {
    "A": actor("A", {"T1027", "T1059.001", "T1071.001", "T1105"}, {"S0001", "name:lanternloader"}),
    "B": actor("B", {"T1059.001", "T1566.001"}, {"S0001"}),
    "C": actor("C", {"T1001", "T1059.003"}, {"S0002"}),
}


def score_of(actors: dict[str, Actor], evidence: EvidenceSet, actor_id: str) -> float:
    weights = technique_weights(actors, list(evidence.techniques))
    users = software_users(actors, list(evidence.software), actors[actor_id].kind)
    return float(score_actor(actors[actor_id], evidence, weights, users)["score"])


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (1.0, "very_high"),
        (0.85, "very_high"),
        (0.8499, "high"),
        (0.7, "high"),
        (0.6999, "medium"),
        (0.5, "medium"),
        (0.4999, "low"),
        (0.0, "low"),
    ],
)
def test_confidence_bands_match_the_reference(score: float, band: str) -> None:
    assert confidence_band(score) == band


def test_weighted_contributions_add_up_to_the_score() -> None:
    evidence = EvidenceSet(
        techniques={"T1027": ["input"], "T1059.001": ["input"], "T1566.001": ["input"]},
        software={"S0001": ["graph"]},
        links={"A": [GraphLink("ipv4:192.0.2.1", 2), GraphLink("domain:a.example", 1)]},
    )
    ranked = rank_actors(UNIVERSE, evidence)
    top = ranked[0]
    assert top["id"] == "A"
    assert sum(c["weighted"] for c in top["contributions"]) == pytest.approx(top["score"], abs=1e-5)
    assert [c["component"] for c in top["contributions"]] == list(WEIGHTS)
    infra = top["contributions"][0]
    # two links: 1 - (1 - 0.5) * (1 - 0.5 * 0.85) = 0.7125
    assert infra["value"] == pytest.approx(0.7125)
    assert {d["indicator"] for d in infra["details"]} == {"ipv4:192.0.2.1", "domain:a.example"}


def test_family_match_gets_partial_credit() -> None:
    evidence = EvidenceSet(techniques={"T1059.005": ["input"]})
    ranked = {r["id"]: r for r in rank_actors(UNIVERSE, evidence)}
    # A and B use T1059.001, C uses T1059.003: all are family matches only
    assert set(ranked) == {"A", "B", "C"}
    assert all(r["familyMatchedTechniques"] == ["T1059.005"] for r in ranked.values())
    assert all(r["matchedTechniques"] == [] for r in ranked.values())


def test_unrelated_evidence_scores_nobody() -> None:
    assert rank_actors(UNIVERSE, EvidenceSet(techniques={"T1490": ["input"]})) == []
    assert rank_actors(UNIVERSE, EvidenceSet()) == []


def test_ties_are_broken_by_candidate_id() -> None:
    twins = {
        "Z": actor("Z", {"T1105"}, set()),
        "M": actor("M", {"T1105"}, set()),
        "A": actor("A", {"T1105"}, set()),
    }
    ranked = rank_actors(twins, EvidenceSet(techniques={"T1105": ["input"]}))
    assert [r["id"] for r in ranked] == ["A", "M", "Z"]
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    assert len({r["score"] for r in ranked}) == 1


def test_technique_evidence_alone_cannot_reach_medium() -> None:
    """Behavioural overlap is supporting evidence: even a perfect match stays below 0.5."""
    techs = {t: ["input"] for t in UNIVERSE["A"].techniques}
    ranked = rank_actors(UNIVERSE, EvidenceSet(techniques=techs))
    assert ranked[0]["id"] == "A"
    assert ranked[0]["score"] < 0.5


evidence_strategy = st.builds(
    lambda techs, soft, links: EvidenceSet(
        techniques={t: ["x"] for t in techs},
        software={s: ["x"] for s in soft},
        links={"A": [GraphLink(f"ipv4:192.0.2.{i}", h) for i, h in links]},
    ),
    st.sets(st.sampled_from(TECHS)),
    st.sets(st.sampled_from(SOFT)),
    st.lists(st.tuples(st.integers(1, 200), st.integers(1, 5)), max_size=4),
)

addition_strategy = st.one_of(
    st.tuples(st.just("technique"), st.sampled_from(sorted(UNIVERSE["A"].techniques))),
    st.tuples(st.just("family"), st.sampled_from(["T1059.004", "T1071", "T1027.002"])),
    st.tuples(st.just("software"), st.sampled_from(sorted(UNIVERSE["A"].software))),
    st.tuples(st.just("link"), st.integers(1, 6).map(str)),
)


def add(evidence: EvidenceSet, kind: str, value: str, candidate: str) -> EvidenceSet:
    more = copy.deepcopy(evidence)
    if kind in ("technique", "family"):
        more.techniques.setdefault(value, []).append("added")
    elif kind == "software":
        more.software.setdefault(value, []).append("added")
    else:
        more.links.setdefault(candidate, []).append(
            GraphLink(f"domain:new{len(more.links.get(candidate, []))}.example", int(value))
        )
    return more


@settings(max_examples=300, deadline=None)
@given(evidence_strategy, addition_strategy)
def test_adding_matching_evidence_never_lowers_the_score(
    evidence: EvidenceSet, addition: tuple[str, str]
) -> None:
    kind, value = addition
    before = score_of(UNIVERSE, evidence, "A")
    after = score_of(UNIVERSE, add(evidence, kind, value, "A"), "A")
    assert after >= before - 1e-9


@settings(max_examples=40, deadline=None)
@given(
    st.sets(
        st.sampled_from(
            ["T1566.001", "T1059.001", "T1071.001", "T1105", "T1027", "T1490", "T1486", "T1003.001"]
        ),
        max_size=6,
    ),
    st.sampled_from(
        ["T1566.001", "T1059.001", "T1071.001", "T1105", "T1027", "T1053.005", "T1082", "T1059.005"]
    ),
)
def test_monotonic_on_real_attack_data(base: set[str], extra: str) -> None:
    """APT29 (G0016) against the real ATT&CK v18.1 universe."""
    kb = attack_knowledge()
    target = kb.actors["G0016"]
    if extra not in target.techniques and not any(
        t.split(".")[0] == extra.split(".")[0] for t in target.techniques
    ):
        return  # only matching (exact or family) additions are claimed to be monotone
    evidence = EvidenceSet(techniques={t: ["x"] for t in base})
    before = score_of(kb.actors, evidence, "G0016")
    more = add(evidence, "technique", extra, "G0016")
    assert score_of(kb.actors, more, "G0016") >= before - 1e-9


def test_non_matching_technique_lowers_the_score() -> None:
    """The counterpart of monotonicity: contradicting evidence must cost something."""
    base = EvidenceSet(techniques={"T1027": ["x"], "T1105": ["x"]})
    worse = add(base, "technique", "T1566.001", "A")  # A does not use T1566.001
    assert score_of(UNIVERSE, worse, "A") < score_of(UNIVERSE, base, "A")
