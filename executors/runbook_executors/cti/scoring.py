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


def _component(name: str, value: float, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "component": name,
        "weight": WEIGHTS[name],
        "value": round(value, 6),
        "weighted": round(WEIGHTS[name] * value, 6),
        "details": details,
    }


Component = tuple[float, dict[str, Any]]
"""A score component's exact value, and its (rounded) explanation."""


def infrastructure_component(actor: Actor, evidence: EvidenceSet) -> Component:
    """Each linked indicator's shortest path, combined as independent chances."""
    links = sorted(evidence.links.get(actor.id, []), key=lambda g: (g.hops, g.indicator))
    best: dict[str, GraphLink] = {}
    for link in links:
        best.setdefault(link.indicator, link)
    remaining = 1.0
    details = []
    for indicator in sorted(best):
        link = best[indicator]
        strength = link_strength(link.hops)
        remaining *= 1.0 - strength
        details.append(
            {
                "indicator": indicator,
                "hops": link.hops,
                "strength": round(strength, 6),
                "path": link.path,
            }
        )
    return 1.0 - remaining, _component("infrastructure", 1.0 - remaining, details)


def inherited_via(actor: Actor, keys: list[str]) -> list[str]:
    """Campaigns through which `actor` has all of `keys` (empty if it has any of them itself)."""
    if not keys or any(k not in actor.inherited for k in keys):
        return []
    return sorted({c for k in keys for c in actor.inherited[k]})


def _technique_detail(actor: Actor, technique: str, weight: float) -> dict[str, Any]:
    match = technique_match(actor, technique)
    detail: dict[str, Any] = {"technique": technique, "weight": round(weight, 6), "match": match}
    if match >= 1.0:
        via = inherited_via(actor, [technique])
    else:
        family = parent_of(technique)
        via = inherited_via(actor, [t for t in actor.techniques if parent_of(t) == family])
    if match > 0 and via:
        detail["inheritedFrom"] = via
    return detail


def techniques_component(
    actor: Actor, evidence: EvidenceSet, weights_t: dict[str, float]
) -> Component:
    """Rarity-weighted overlap with a prior, so a few common techniques are never conclusive."""
    details = [
        _technique_detail(actor, t, weights_t.get(t, 1.0)) for t in sorted(evidence.techniques)
    ]
    matched = sum(weights_t.get(d["technique"], 1.0) * d["match"] for d in details)
    unmatched = sum(weights_t.get(d["technique"], 1.0) for d in details if d["match"] == 0)
    value = matched / (matched + unmatched + TECHNIQUE_PRIOR) if matched > 0 else 0.0
    return value, {
        **_component("techniques", value, details),
        "matchedWeight": round(matched, 6),
        "unmatchedWeight": round(unmatched, 6),
        "prior": TECHNIQUE_PRIOR,
    }


def software_component(actor: Actor, evidence: EvidenceSet, users_s: dict[str, int]) -> Component:
    """Each observed software the candidate uses, weighted by how few candidates use it."""
    remaining = 1.0
    details = []
    for key in sorted(evidence.software):
        if key not in actor.software:
            continue
        contribution = SOFTWARE_BASE / math.sqrt(max(users_s.get(key, 1), 1))
        remaining *= 1.0 - contribution
        detail = {
            "software": key,
            "users": users_s.get(key, 1),
            "contribution": round(contribution, 6),
        }
        via = inherited_via(actor, [key])
        details.append({**detail, "inheritedFrom": via} if via else detail)
    return 1.0 - remaining, _component("software", 1.0 - remaining, details)


def score_actor(
    actor: Actor,
    evidence: EvidenceSet,
    weights_t: dict[str, float],
    users_s: dict[str, int],
) -> dict[str, Any]:
    """Score one candidate; returns the score and every per-evidence contribution."""
    parts = [
        infrastructure_component(actor, evidence),
        techniques_component(actor, evidence, weights_t),
        software_component(actor, evidence, users_s),
    ]
    contributions = [c for _, c in parts]
    raw = {c["component"]: c for c in contributions}
    score = round(sum(WEIGHTS[c["component"]] * value for value, c in parts), 6)
    techniques = raw["techniques"]["details"]
    return {
        "score": score,
        "confidence": confidence_band(score),
        "contributions": contributions,
        "matchedTechniques": sorted(d["technique"] for d in techniques if d["match"] >= 1.0),
        "familyMatchedTechniques": sorted(
            d["technique"] for d in techniques if 0 < d["match"] < 1.0
        ),
        "matchedSoftware": sorted(str(d["software"]) for d in raw["software"]["details"]),
        "linkedIndicators": sorted(str(d["indicator"]) for d in raw["infrastructure"]["details"]),
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
