"""PATTERN_MINER: rank ATT&CK (and bundle) groups and campaigns against the collected evidence."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from runbook_engine.contract import (
    ActionType,
    Citation,
    KpiValue,
    StepExecutorContext,
    StepExecutorResult,
)
from runbook_executors.base import BaseStepExecutor
from runbook_executors.cti.attack import attack_knowledge, merge_bundle_actors
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

_TECHNIQUE_RE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
_SOFTWARE_ID_RE = re.compile(r"^S\d{4}$", re.I)


class PatternMinerExecutor(BaseStepExecutor):
    """Score every candidate actor on infrastructure links, technique and software overlap.

    Evidence: `input.techniques` / ingested technique ids / graph attack-patterns, graph paths
    to intrusion sets and campaigns, graph malware/tools and `input.software`.
    Config: `minConfidence` (default 0.2), `maxCandidates` (default 10), `maxCampaigns` (5).
    """

    action_type: ClassVar[str] = ActionType.PATTERN_MINER

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        min_conf = float_setting(self, ctx, "minConfidence", 0.2)
        max_candidates = int_setting(self, ctx, "maxCandidates", 10, minimum=1, maximum=1000)
        max_campaigns = int_setting(self, ctx, "maxCampaigns", 5, minimum=0, maximum=1000)
        kb = attack_knowledge()
        profiles = [p for p in upstream_list(self, ctx, "actors") if isinstance(p, dict)]
        actors, stix_to_candidate = merge_bundle_actors(kb, profiles)
        known_techniques = set(kb.technique_names)
        for actor in actors.values():
            known_techniques |= actor.techniques

        evidence = EvidenceSet()
        unknown_techniques: set[str] = set()
        malformed: list[str] = []

        def add_technique(raw: Any, origin: str) -> None:
            tid = str(raw).strip().upper()
            if not _TECHNIQUE_RE.match(tid):
                malformed.append(str(raw))
                return
            if tid not in known_techniques:
                unknown_techniques.add(tid)
                return
            evidence.techniques.setdefault(tid, [])
            if origin not in evidence.techniques[tid]:
                evidence.techniques[tid].append(origin)

        for tid in str_list(self.get_input(ctx, "techniques"), "input.techniques"):
            add_technique(tid, "input.techniques")
        for ind in upstream_list(self, ctx, "indicators"):
            if isinstance(ind, dict) and ind.get("type") == "attack_technique":
                add_technique(ind.get("value"), "ingest")
        for tech in upstream_list(self, ctx, "observedTechniques"):
            if isinstance(tech, dict):
                add_technique(tech.get("id"), "graph:" + ",".join(tech.get("stixIds", [])))

        software_names: dict[str, str] = {}
        for name in str_list(self.get_input(ctx, "software"), "input.software"):
            attack_id = name.strip().upper() if _SOFTWARE_ID_RE.match(name.strip()) else None
            key = kb.software_key(None if attack_id else name, attack_id)
            evidence.software.setdefault(key, []).append("input.software")
            software_names[key] = name
        for sw in upstream_list(self, ctx, "observedSoftware"):
            if not isinstance(sw, dict):
                continue
            key = kb.software_key(sw.get("name"), sw.get("attackId"))
            evidence.software.setdefault(key, []).append(f"graph:{sw.get('stixId')}")
            software_names[key] = str(sw.get("name"))

        for path in upstream_list(self, ctx, "paths"):
            if not isinstance(path, dict):
                continue
            candidate = stix_to_candidate.get(str(path.get("targetId")))
            if candidate is None:
                continue
            evidence.links.setdefault(candidate, []).append(
                GraphLink(
                    indicator=str(path.get("indicator")),
                    hops=int(path.get("hops", 1))
                    + MATCH_HOP_PENALTY.get(str(path.get("matchType", "exact")), 0),
                    path=[str(n.get("id")) for n in path.get("nodes", []) if isinstance(n, dict)],
                )
            )

        ranked = rank_actors(actors, evidence)
        for item in ranked:
            for contribution in item["contributions"]:
                if contribution["component"] == "techniques":
                    for detail in contribution["details"]:
                        detail["name"] = kb.technique_names.get(detail["technique"])
                if contribution["component"] == "software":
                    for detail in contribution["details"]:
                        sw_meta = kb.software.get(detail["software"])
                        detail["name"] = (
                            sw_meta.name
                            if sw_meta
                            else software_names.get(detail["software"], detail["software"])
                        )
        groups = [r for r in ranked if r["kind"] == "intrusion-set"]
        campaigns = [r for r in ranked if r["kind"] == "campaign"]
        candidates = [r for r in groups if r["score"] >= min_conf][:max_candidates]
        campaign_matches = [r for r in campaigns if r["score"] >= min_conf][:max_campaigns]

        citations: list[Citation] = [kb.citation()]
        bundle = upstream_dict(self, ctx, "bundle")
        if bundle:
            citations.append(
                Citation(
                    source="STIX 2.1 bundle (user supplied)",
                    version=f"sha256:{bundle.get('sha256')}",
                    reference=str(bundle.get("source")),
                )
            )
        evidence_summary = {
            "techniques": [
                {
                    "id": t,
                    "name": kb.technique_names.get(t),
                    "origins": sorted(evidence.techniques[t]),
                }
                for t in sorted(evidence.techniques)
            ],
            "unknownTechniques": sorted(unknown_techniques),
            "malformedTechniques": sorted(malformed),
            "software": [
                {
                    "key": k,
                    "name": (kb.software[k].name if k in kb.software else software_names.get(k)),
                    "origins": sorted(evidence.software[k]),
                }
                for k in sorted(evidence.software)
            ],
            "graphLinks": {k: len(v) for k, v in sorted(evidence.links.items())},
        }
        unresolved = upstream_list(self, ctx, "unresolved")
        resolved = upstream_list(self, ctx, "resolved")
        indicators = upstream_list(self, ctx, "indicators")
        output: dict[str, Any] = {
            "candidates": candidates,
            "campaignMatches": campaign_matches,
            "scoredCandidateCount": len(groups),
            "scoredCampaignCount": len(campaigns),
            "evidenceSummary": evidence_summary,
            "model": {
                "weights": WEIGHTS,
                "linkBase": LINK_BASE,
                "linkDecay": LINK_DECAY,
                "matchHopPenalty": MATCH_HOP_PENALTY,
                "techniquePrior": TECHNIQUE_PRIOR,
                "familyCredit": FAMILY_CREDIT,
                "softwareBase": SOFTWARE_BASE,
                "minConfidence": min_conf,
            },
            "attackVersion": kb.attack_version,
            # Carried forward so a report step that only sees its direct parent still knows
            # what was looked for and what stayed unexplained.
            "context": {
                "indicatorCount": len(indicators),
                "resolvedCount": len(resolved),
                "unresolved": unresolved,
                "bundle": bundle or None,
            },
        }
        top = candidates[0]["score"] if candidates else 0.0
        kpis: dict[str, KpiValue] = {
            "candidateCount": len(candidates),
            "campaignMatchCount": len(campaign_matches),
            "topScore": top,
            "observedTechniqueCount": len(evidence.techniques),
            "observedSoftwareCount": len(evidence.software),
        }
        ev = [
            self.create_evidence(
                "candidate_score",
                {
                    "candidate": c["id"],
                    "name": c["name"],
                    "score": c["score"],
                    "confidence": c["confidence"],
                    "contributions": [
                        {k: v for k, v in x.items() if k != "details"} for x in c["contributions"]
                    ],
                },
                step_id=ctx.step_id,
                citations=citations,
            )
            for c in candidates[:3]
        ]
        return self.success(output, kpis=kpis, evidence=ev, citations=citations)
