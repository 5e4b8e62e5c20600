"""PATTERN_MINER: rank ATT&CK (and bundle) groups and campaigns against the collected evidence."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runbook_engine.contract import (
    ActionType,
    Citation,
    Evidence,
    KpiValue,
    StepExecutorContext,
    StepExecutorResult,
)
from runbook_executors.base import BaseStepExecutor
from runbook_executors.cti.attack import (
    AttackKnowledge,
    attack_knowledge,
    inherit_campaign_evidence,
    merge_bundle_actors,
)
from runbook_executors.cti.common import (
    float_setting,
    int_setting,
    str_list,
    upstream_dict,
    upstream_list,
)
from runbook_executors.cti.scoring import (
    FAMILY_CREDIT,
    LINK_BASE,
    LINK_DECAY,
    MATCH_HOP_PENALTY,
    SOFTWARE_BASE,
    TECHNIQUE_PRIOR,
    WEIGHTS,
    EvidenceSet,
    GraphLink,
    rank_actors,
)
from runbook_executors.cti.stix_bundle import bundle_citation

_TECHNIQUE_RE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_SOFTWARE_ID_RE = re.compile(r"^S\d{4}$", re.I)


@dataclass
class Observed:
    """The evidence the miner collects from the input and upstream steps, before scoring."""

    known_techniques: set[str]
    evidence: EvidenceSet = field(default_factory=EvidenceSet)
    unknown_techniques: set[str] = field(default_factory=set)
    malformed: list[str] = field(default_factory=list)
    software_names: dict[str, str] = field(default_factory=dict)

    def add_technique(self, raw: Any, origin: str) -> None:
        tid = str(raw).strip().upper()
        if not _TECHNIQUE_RE.match(tid):
            self.malformed.append(str(raw))
        elif tid not in self.known_techniques:
            self.unknown_techniques.add(tid)
        elif origin not in self.evidence.techniques.setdefault(tid, []):
            self.evidence.techniques[tid].append(origin)

    def add_software(self, key: str, origin: str, name: str) -> None:
        self.evidence.software.setdefault(key, []).append(origin)
        self.software_names[key] = name

    def software_name(self, kb: AttackKnowledge, key: str) -> str | None:
        return kb.software[key].name if key in kb.software else self.software_names.get(key)


def _link(path: dict[str, Any]) -> GraphLink:
    """A graph path as scoring evidence; indirect seed matches count extra hops."""
    return GraphLink(
        indicator=str(path.get("indicator")),
        hops=int(path.get("hops", 1))
        + MATCH_HOP_PENALTY.get(str(path.get("matchType", "exact")), 0),
        path=[str(n.get("id")) for n in path.get("nodes", []) if isinstance(n, dict)],
    )


def _name_details(ranked: list[dict[str, Any]], kb: AttackKnowledge, observed: Observed) -> None:
    """Give technique and software details their names (ATT&CK's, else the observed name)."""
    for item in ranked:
        for contribution in item["contributions"]:
            for detail in contribution["details"]:
                if contribution["component"] == "techniques":
                    detail["name"] = kb.technique_names.get(detail["technique"])
                elif contribution["component"] == "software":
                    key = detail["software"]
                    detail["name"] = observed.software_name(kb, key) or key


def _evidence_summary(kb: AttackKnowledge, observed: Observed) -> dict[str, Any]:
    evidence = observed.evidence
    return {
        "techniques": [
            {"id": t, "name": kb.technique_names.get(t), "origins": sorted(evidence.techniques[t])}
            for t in sorted(evidence.techniques)
        ],
        "unknownTechniques": sorted(observed.unknown_techniques),
        "malformedTechniques": sorted(observed.malformed),
        "software": [
            {
                "key": k,
                "name": observed.software_name(kb, k),
                "origins": sorted(evidence.software[k]),
            }
            for k in sorted(evidence.software)
        ],
        "graphLinks": {k: len(v) for k, v in sorted(evidence.links.items())},
    }


def _model(min_conf: float) -> dict[str, Any]:
    """The weights and constants actually used, for the report."""
    return {
        "weights": WEIGHTS,
        "linkBase": LINK_BASE,
        "linkDecay": LINK_DECAY,
        "matchHopPenalty": MATCH_HOP_PENALTY,
        "techniquePrior": TECHNIQUE_PRIOR,
        "familyCredit": FAMILY_CREDIT,
        "softwareBase": SOFTWARE_BASE,
        "minConfidence": min_conf,
    }


class PatternMinerExecutor(BaseStepExecutor):
    """Score every candidate actor on infrastructure links, technique and software overlap.

    Evidence: `input.techniques` / ingested technique ids / graph attack-patterns, graph paths
    to intrusion sets and campaigns, graph malware/tools and `input.software`.
    Config: `minConfidence` (default 0.2), `maxCandidates` (default 10), `maxCampaigns` (5).
    """

    action_type: ClassVar[str] = ActionType.PATTERN_MINER

    def _observe(self, ctx: StepExecutorContext, kb: AttackKnowledge, observed: Observed) -> None:
        """Techniques and software from the input, INGEST and the graph."""
        for tid in str_list(self.get_input(ctx, "techniques"), "input.techniques"):
            observed.add_technique(tid, "input.techniques")
        for ind in upstream_list(self, ctx, "indicators"):
            if isinstance(ind, dict) and ind.get("type") == "attack_technique":
                observed.add_technique(ind.get("value"), "ingest")
        for tech in upstream_list(self, ctx, "observedTechniques"):
            if isinstance(tech, dict):
                observed.add_technique(tech.get("id"), "graph:" + ",".join(tech.get("stixIds", [])))
        for name in str_list(self.get_input(ctx, "software"), "input.software"):
            attack_id = name.strip().upper() if _SOFTWARE_ID_RE.match(name.strip()) else None
            key = kb.software_key(None if attack_id else name, attack_id)
            observed.add_software(key, "input.software", name)
        for sw in upstream_list(self, ctx, "observedSoftware"):
            if isinstance(sw, dict):
                key = kb.software_key(sw.get("name"), sw.get("attackId"))
                observed.add_software(key, f"graph:{sw.get('stixId')}", str(sw.get("name")))

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        min_conf = float_setting(self, ctx, "minConfidence", 0.2)
        max_candidates = int_setting(self, ctx, "maxCandidates", 10, minimum=1, maximum=1000)
        max_campaigns = int_setting(self, ctx, "maxCampaigns", 5, minimum=0, maximum=1000)
        kb = attack_knowledge()
        profiles = [p for p in upstream_list(self, ctx, "actors") if isinstance(p, dict)]
        merged, stix_to_candidate = merge_bundle_actors(kb, profiles)
        actors = inherit_campaign_evidence(merged)
        observed = Observed(set(kb.technique_names).union(*(a.techniques for a in actors.values())))
        self._observe(ctx, kb, observed)
        for path in upstream_list(self, ctx, "paths"):
            candidate = (
                stix_to_candidate.get(str(path.get("targetId"))) if isinstance(path, dict) else None
            )
            if candidate is not None:
                observed.evidence.links.setdefault(candidate, []).append(_link(path))

        ranked = rank_actors(actors, observed.evidence)
        _name_details(ranked, kb, observed)
        groups = [r for r in ranked if r["kind"] == "intrusion-set"]
        campaigns = [r for r in ranked if r["kind"] == "campaign"]
        candidates = [r for r in groups if r["score"] >= min_conf][:max_candidates]
        campaign_matches = [r for r in campaigns if r["score"] >= min_conf][:max_campaigns]
        bundle = upstream_dict(self, ctx, "bundle")
        citations = [kb.citation(), *([bundle_citation(bundle)] if bundle else [])]
        output: dict[str, Any] = {
            "candidates": candidates,
            "campaignMatches": campaign_matches,
            "scoredCandidateCount": len(groups),
            "scoredCampaignCount": len(campaigns),
            "evidenceSummary": _evidence_summary(kb, observed),
            "model": _model(min_conf),
            "attackVersion": kb.attack_version,
        }
        kpis: dict[str, KpiValue] = {
            "candidateCount": len(candidates),
            "campaignMatchCount": len(campaign_matches),
            "topScore": candidates[0]["score"] if candidates else 0.0,
            "observedTechniqueCount": len(observed.evidence.techniques),
            "observedSoftwareCount": len(observed.evidence.software),
        }
        evidence = [self._score_evidence(ctx, c, citations) for c in candidates[:3]]
        return self.success(output, kpis=kpis, evidence=evidence, citations=citations)

    def _score_evidence(
        self, ctx: StepExecutorContext, candidate: dict[str, Any], citations: list[Citation]
    ) -> Evidence:
        return self.create_evidence(
            "candidate_score",
            {
                "candidate": candidate["id"],
                "name": candidate["name"],
                "score": candidate["score"],
                "confidence": candidate["confidence"],
                "contributions": [
                    {k: v for k, v in x.items() if k != "details"}
                    for x in candidate["contributions"]
                ],
            },
            step_id=ctx.step_id,
            citations=citations,
        )
