"""Explainable, deterministic attribution scoring (pure functions).

score(candidate) = 0.45 * infrastructure + 0.35 * techniques + 0.20 * software, each in [0, 1]:

* infrastructure: indicators with a graph path to the candidate. Each linked indicator i with a
  shortest path of h_i hops contributes s_i = 0.5 * 0.85 ** (h_i - 1);
  value = 1 - prod(1 - s_i). One direct link gives 0.5, four two-hop links give ~0.89.
  Indirect seed matches count extra hops (MATCH_HOP_PENALTY: e-mail domain +1, registered
  domain only +2).
* techniques: observed ATT&CK techniques weighted by rarity, w_t = 1 + ln((1 + N) / (1 + n_t))
  (N candidates, n_t of them use t). Match m_t = 1 if the candidate uses t, 0.5 if it uses
  only a technique of the same family (parent/sub-technique), else 0.
  value = M / (M + U + PRIOR) with M = sum(w_t * m_t) over matches, U = sum(w_t) over
  non-matches, PRIOR = 5.0 (about four common or one or two rare techniques reach 0.5: a
  handful of ubiquitous techniques is never conclusive on its own).
* software: malware/tools observed in the graph or given as input that the candidate uses.
  Each contributes 0.6 / sqrt(u), u = candidates of the same kind (groups, or campaigns)
  using that software; value = 1 - prod(1 - contribution).

Every term only grows when evidence matching the candidate is added (monotonicity), and the
ranking ties are broken by candidate id, so the same evidence always yields the same list.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runbook_executors.cti.attack import Actor

WEIGHTS: dict[str, float] = {"infrastructure": 0.45, "techniques": 0.35, "software": 0.20}
LINK_BASE = 0.5
LINK_DECAY = 0.85
MATCH_HOP_PENALTY: dict[str, int] = {"email_domain": 1, "registered_domain": 2}
"""Extra hops charged when an indicator only matched the bundle indirectly (its e-mail domain,
or merely its registered domain): weaker than an exact, network or URL-host match."""
TECHNIQUE_PRIOR = 5.0
FAMILY_CREDIT = 0.5
SOFTWARE_BASE = 0.6

BANDS: tuple[tuple[float, str], ...] = ((0.85, "very_high"), (0.7, "high"), (0.5, "medium"))


def confidence_band(score: float) -> str:
    """The reference design's bands: >= 0.85 very_high, >= 0.7 high, >= 0.5 medium, else low."""
    for threshold, name in BANDS:
        if score >= threshold:
            return name
    return "low"


@dataclass
class GraphLink:
    """An ingested indicator's shortest graph path to a candidate."""

    indicator: str
    hops: int
    path: list[str] = field(default_factory=list)


@dataclass
class EvidenceSet:
    """What the miner scores against: techniques, software and graph links per candidate."""

    techniques: dict[str, list[str]] = field(default_factory=dict)
    """Observed technique id -> where it came from (input, ingest, graph node ids)."""
    software: dict[str, list[str]] = field(default_factory=dict)
    """Software key (ATT&CK id or name:...) -> where it came from."""
    links: dict[str, list[GraphLink]] = field(default_factory=dict)
    """Candidate id -> indicators linked to it through the infrastructure graph."""


def parent_of(technique: str) -> str:
    return technique.split(".", 1)[0]


def technique_weights(actors: dict[str, Actor], techniques: list[str]) -> dict[str, float]:
    """Rarity weight of each technique over the candidate universe (IDF with smoothing)."""
    total = len(actors)
    users: Counter[str] = Counter()
    wanted = set(techniques)
    for actor in actors.values():
        for t in actor.techniques & wanted:
            users[t] += 1
    return {t: 1.0 + math.log((1 + total) / (1 + users[t])) for t in sorted(wanted)}


def software_users(actors: dict[str, Actor], keys: list[str], kind: str) -> dict[str, int]:
    """How many candidates of `kind` use each software (its specificity for that kind)."""
    wanted = set(keys)
    counts: Counter[str] = Counter()
    for actor in actors.values():
        if actor.kind != kind:
            continue
        for key in actor.software & wanted:
            counts[key] += 1
    return {k: counts[k] for k in sorted(wanted)}


def technique_match(actor: Actor, technique: str) -> float:
    """1 for the exact technique, FAMILY_CREDIT for a parent/sub/sibling technique, else 0."""
    if technique in actor.techniques:
        return 1.0
    parent = parent_of(technique)
    if any(parent_of(t) == parent for t in actor.techniques):
        return FAMILY_CREDIT
    return 0.0


def link_strength(hops: int) -> float:
    return LINK_BASE * LINK_DECAY ** max(hops - 1, 0)


def score_actor(
    actor: Actor,
    evidence: EvidenceSet,
    weights_t: dict[str, float],
    users_s: dict[str, int],
) -> dict[str, Any]:
    """Score one candidate; returns the score and every per-evidence contribution."""
    # infrastructure
    links = sorted(evidence.links.get(actor.id, []), key=lambda g: (g.hops, g.indicator))
    best: dict[str, GraphLink] = {}
    for link in links:
        best.setdefault(link.indicator, link)
    remaining = 1.0
    link_details = []
    for indicator in sorted(best):
        link = best[indicator]
        strength = link_strength(link.hops)
        remaining *= 1.0 - strength
        link_details.append(
            {
                "indicator": indicator,
                "hops": link.hops,
                "strength": round(strength, 6),
                "path": link.path,
            }
        )
    infra_value = 1.0 - remaining

    # techniques
    matched_weight = 0.0
    unmatched_weight = 0.0
    exact: list[str] = []
    family: list[str] = []
    technique_details = []
    for technique in sorted(evidence.techniques):
        weight = weights_t.get(technique, 1.0)
        match = technique_match(actor, technique)
        if match >= 1.0:
            exact.append(technique)
        elif match > 0:
            family.append(technique)
        if match > 0:
            matched_weight += weight * match
        else:
            unmatched_weight += weight
        technique_details.append(
            {"technique": technique, "weight": round(weight, 6), "match": match}
        )
    denominator = matched_weight + unmatched_weight + TECHNIQUE_PRIOR
    technique_value = matched_weight / denominator if matched_weight > 0 else 0.0

    # software
    remaining = 1.0
    software_details = []
    for key in sorted(evidence.software):
        if key not in actor.software:
            continue
        contribution = SOFTWARE_BASE / math.sqrt(max(users_s.get(key, 1), 1))
        remaining *= 1.0 - contribution
        software_details.append(
            {"software": key, "users": users_s.get(key, 1), "contribution": round(contribution, 6)}
        )
    software_value = 1.0 - remaining

    values = {
        "infrastructure": infra_value,
        "techniques": technique_value,
        "software": software_value,
    }
    score = sum(WEIGHTS[k] * values[k] for k in WEIGHTS)
    contributions = [
        {
            "component": "infrastructure",
            "weight": WEIGHTS["infrastructure"],
            "value": round(infra_value, 6),
            "weighted": round(WEIGHTS["infrastructure"] * infra_value, 6),
            "details": link_details,
        },
        {
            "component": "techniques",
            "weight": WEIGHTS["techniques"],
            "value": round(technique_value, 6),
            "weighted": round(WEIGHTS["techniques"] * technique_value, 6),
            "details": technique_details,
            "matchedWeight": round(matched_weight, 6),
            "unmatchedWeight": round(unmatched_weight, 6),
            "prior": TECHNIQUE_PRIOR,
        },
        {
            "component": "software",
            "weight": WEIGHTS["software"],
            "value": round(software_value, 6),
            "weighted": round(WEIGHTS["software"] * software_value, 6),
            "details": software_details,
        },
    ]
    return {
        "score": round(score, 6),
        "confidence": confidence_band(round(score, 6)),
        "contributions": contributions,
        "matchedTechniques": sorted(exact),
        "familyMatchedTechniques": sorted(family),
        "matchedSoftware": sorted(str(d["software"]) for d in software_details),
        "linkedIndicators": sorted(best),
    }


def rank_actors(actors: dict[str, Actor], evidence: EvidenceSet) -> list[dict[str, Any]]:
    """Every candidate with a non-zero score, best first (ties by id), ranked within its kind."""
    weights_t = technique_weights(actors, list(evidence.techniques))
    users_by_kind = {
        kind: software_users(actors, list(evidence.software), kind)
        for kind in sorted({a.kind for a in actors.values()})
    }
    scored: list[dict[str, Any]] = []
    for actor_id in sorted(actors):
        actor = actors[actor_id]
        result = score_actor(actor, evidence, weights_t, users_by_kind[actor.kind])
        if result["score"] <= 0:
            continue
        result.update(
            {
                "id": actor.id,
                "stixId": actor.stix_id,
                "kind": actor.kind,
                "name": actor.name,
                "aliases": list(actor.aliases),
                "sources": list(actor.sources),
                "attributedTo": list(actor.attributed_to),
            }
        )
        if actor.url:
            result["url"] = actor.url
        scored.append(result)
    scored.sort(key=lambda r: (-r["score"], r["id"]))
    next_rank: Counter[str] = Counter()
    for item in scored:
        next_rank[item["kind"]] += 1
        item["rank"] = next_rank[item["kind"]]
    return scored
