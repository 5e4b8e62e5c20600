"""GENERATE_REPORT: an attribution report (JSON + Markdown) with a hashed, signed evidence chain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runbook_engine.contract import (
    ActionType,
    Citation,
    Evidence,
    KpiValue,
    StepExecutorContext,
    StepExecutorResult,
)
from runbook_executors.base import BaseStepExecutor
from runbook_executors.cti.attack import ATTACK_NOTICE, attack_knowledge
from runbook_executors.cti.common import (
    float_setting,
    int_setting,
    upstream_dict,
    upstream_list,
)
from runbook_executors.cti.datasources import psl_citation
from runbook_executors.cti.report_markdown import render_markdown
from runbook_executors.cti.report_rules import (
    Findings,
    component,
    recommendations,
    residual_unknowns,
    statement,
)
from runbook_executors.cti.report_signing import (
    key_id,
    load_signing_key,
    sign_evidence,
    sign_report,
)
from runbook_executors.cti.stix_bundle import bundle_citation

REPORT_SCHEMA = "runbook-operator.dev/attribution-report/v1"


def _actor_ref(candidate: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "stixId", "kind", "name", "aliases", "sources", "url")
    return {k: candidate[k] for k in keys if k in candidate}


def _totals(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidate's contributions without their per-evidence details."""
    return [
        {k: v for k, v in c.items() if k != "details"} for c in candidate.get("contributions", [])
    ]


def _summary(candidate: dict[str, Any], top_score: float) -> dict[str, Any]:
    return {
        "rank": candidate.get("rank"),
        **_actor_ref(candidate),
        "score": candidate["score"],
        "confidence": candidate["confidence"],
        "deltaFromTop": round(top_score - float(candidate["score"]), 6),
        "linkedIndicators": candidate.get("linkedIndicators", []),
        "matchedTechniques": candidate.get("matchedTechniques", []),
        "familyMatchedTechniques": candidate.get("familyMatchedTechniques", []),
        "matchedSoftware": candidate.get("matchedSoftware", []),
        "contributions": _totals(candidate),
    }


def _campaign_summaries(f: Findings) -> list[dict[str, Any]]:
    if not f.campaigns:
        return []
    best = float(f.campaigns[0]["score"])
    actor = f.top["id"] if f.attributed and f.top is not None else None
    return [
        {
            **_summary(c, best),
            "attributedTo": c.get("attributedTo", []),
            "consistentWithAttribution": bool(actor and actor in c.get("attributedTo", [])),
        }
        for c in f.campaigns
    ]


def _attribution(f: Findings) -> dict[str, Any]:
    top = f.top if f.attributed else None
    return {
        "attributed": f.attributed,
        "actor": _actor_ref(top) if top is not None else None,
        "confidenceScore": round(f.top_score, 6) if top is not None else 0.0,
        "confidence": top["confidence"] if top is not None else "none",
        "bestCandidateScore": round(f.top_score, 6),
        "threshold": f.threshold,
        "statement": statement(f),
    }


class EvidenceChain:
    """The report's evidence items, each hashed (and later signed) with its citations."""

    def __init__(self, executor: BaseStepExecutor, ctx: StepExecutorContext, f: Findings) -> None:
        self.executor, self.ctx, self.findings = executor, ctx, f
        self.attack = attack_knowledge().citation()
        self.bundle = [bundle_citation(f.bundle)] if f.bundle else []
        self.items: list[Evidence] = []

    def add(self, kind: str, data: dict[str, Any], citations: list[Citation]) -> None:
        self.items.append(
            self.executor.create_evidence(kind, data, step_id=self.ctx.step_id, citations=citations)
        )

    def build(self) -> list[Evidence]:
        f = self.findings
        self.add(
            "indicator_set",
            {
                "indicators": sorted(f"{i.get('type')}:{i.get('value')}" for i in f.indicators),
                "rejectedCount": len(f.rejected),
                "suppressed": sorted(
                    str(s.get("indicator")) for s in f.suppressed if isinstance(s, dict)
                ),
            },
            [psl_citation()],
        )
        if f.top is not None:
            self.actor_match(f.top)
        for campaign in f.linked_campaigns:
            self.campaign_match(campaign)
        if f.unresolved:
            self.add("unresolved_indicators", {"indicators": f.unresolved_keys()}, self.bundle)
        return self.items

    def actor_match(self, top: dict[str, Any]) -> None:
        """Links, technique and software overlap, and the score of the best intrusion set."""
        for detail in component(top, "infrastructure").get("details", []):
            link = {k: detail.get(k) for k in ("indicator", "hops")}
            self.add(
                "infrastructure_link",
                {"candidate": top["id"], **link, "path": detail.get("path", [])},
                self.bundle,
            )
        tech = component(top, "techniques")
        if tech.get("details"):
            keys = ("technique", "name", "match", "weight")
            techniques = [{k: d.get(k) for k in keys} for d in tech["details"]]
            self.add(
                "technique_overlap",
                {"candidate": top["id"], "techniques": techniques},
                [self.attack],
            )
        soft = component(top, "software")
        if soft.get("details"):
            self.add(
                "software_overlap",
                {"candidate": top["id"], "software": soft["details"]},
                [self.attack],
            )
        score = {k: top[k] for k in ("score", "confidence")}
        self.add(
            "candidate_score",
            {"candidate": top["id"], **score, "contributions": _totals(top)},
            [self.attack, *self.bundle],
        )

    def campaign_match(self, campaign: dict[str, Any]) -> None:
        """A campaign match as one item: its links, score and who it is attributed to."""
        links = [
            {k: d.get(k) for k in ("indicator", "hops", "path")}
            for d in component(campaign, "infrastructure").get("details", [])
        ]
        self.add(
            "campaign_match",
            {
                "campaign": campaign["id"],
                "name": campaign.get("name"),
                "score": campaign["score"],
                "confidence": campaign["confidence"],
                "attributedTo": campaign.get("attributedTo", []),
                "links": links,
                "contributions": _totals(campaign),
            },
            [self.attack, *self.bundle],
        )


class GenerateReportExecutor(BaseStepExecutor):
    """Turn the miner's ranking into a decision an analyst can audit: who, how sure, and why.

    Config: `attributionThreshold` (default 0.5), `ambiguityMargin` (0.1), `minTechniques` (3),
    `title`, and a signing key (`signingKeyFile` or `signingKey: {secretFrom: {env|file}}`).
    """

    action_type: ClassVar[str] = ActionType.GENERATE_REPORT

    def _findings(self, ctx: StepExecutorContext) -> Findings:
        def dicts(key: str) -> list[dict[str, Any]]:
            return [i for i in upstream_list(self, ctx, key) if isinstance(i, dict)]

        return Findings(
            threshold=float_setting(self, ctx, "attributionThreshold", 0.5),
            margin=float_setting(self, ctx, "ambiguityMargin", 0.1),
            min_techniques=int_setting(self, ctx, "minTechniques", 3, minimum=0, maximum=1000),
            candidates=dicts("candidates"),
            campaigns=dicts("campaignMatches"),
            summary=upstream_dict(self, ctx, "evidenceSummary"),
            indicators=dicts("indicators"),
            rejected=upstream_list(self, ctx, "rejected"),
            suppressed=upstream_list(self, ctx, "suppressed"),
            unresolved=upstream_list(self, ctx, "unresolved"),
            truncated=upstream_list(self, ctx, "truncated"),
            bundle=upstream_dict(self, ctx, "bundle"),
            skipped_patterns=upstream_list(self, ctx, "skippedPatterns"),
            reached_actors=upstream_list(self, ctx, "reachedActors"),
        )

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        f = self._findings(ctx)
        title = str(self.get_config(ctx, "title", "Rapid attribution report"))
        signing_key = load_signing_key(ctx.config)
        evidence = EvidenceChain(self, ctx, f).build()
        if signing_key is not None:
            evidence = [
                ev.model_copy(update={"signature": sign_evidence(ev.wire(), signing_key)})
                for ev in evidence
            ]
        sources = [psl_citation(), attack_knowledge().citation()]
        sources += [bundle_citation(f.bundle)] if f.bundle else []
        unknowns = residual_unknowns(f)
        report: dict[str, Any] = {
            "schema": REPORT_SCHEMA,
            "title": title,
            "caseId": self.get_input(ctx, "caseId"),
            "source": self.get_input(ctx, "source"),
            "executionId": ctx.execution_id,
            "runbookId": ctx.runbook_id,
            "generatedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "legalBasis": ctx.legal_basis,
            "dataLicenses": sorted(ctx.data_licenses),
            "attribution": _attribution(f),
            "alternatives": [
                _summary(c, f.top_score)
                for c in (f.candidates[1:] if f.attributed else f.candidates)
            ],
            "campaignMatches": _campaign_summaries(f),
            "observedTechniques": f.observed_techniques,
            "evidenceChain": [ev.wire() for ev in evidence],
            "residualUnknowns": unknowns,
            "recommendations": recommendations(f, unknowns),
            "scoringModel": upstream_dict(self, ctx, "model"),
            "dataSources": _merge_sources(
                [c.wire() for c in sources], upstream_list(self, ctx, "enrichmentSources")
            ),
            "notices": [ATTACK_NOTICE],
        }
        return self._result(report, evidence, sources, signing_key)

    def _result(
        self,
        report: dict[str, Any],
        evidence: list[Evidence],
        sources: list[Citation],
        signing_key: Ed25519PrivateKey | None,
    ) -> StepExecutorResult:
        """Sign the report if a key is configured; Markdown and KPIs from the final report."""
        if signing_key is not None:
            report = sign_report(report, signing_key)
        kpis: dict[str, KpiValue] = {
            "confidenceScore": report["attribution"]["confidenceScore"],
            "hasAttribution": report["attribution"]["attributed"],
            "residualUnknownCount": len(report["residualUnknowns"]),
            "alternativeCandidateCount": len(report["alternatives"]),
            "campaignMatchCount": len(report["campaignMatches"]),
            "evidenceCount": len(evidence),
            "signed": signing_key is not None,
        }
        output: dict[str, Any] = {"report": report, "markdown": render_markdown(report)}
        if signing_key is not None:
            output["signingKeyId"] = key_id(signing_key.public_key())
        return self.success(output, kpis=kpis, evidence=evidence, citations=sources)


def _merge_sources(*groups: list[Any]) -> list[dict[str, Any]]:
    """Citations from this step and upstream, de-duplicated by (source, version), in order."""
    seen: set[tuple[str, str]] = set()
    merged: list[dict[str, Any]] = []
    for group in groups:
        for cite in group:
            if not isinstance(cite, dict) or "source" not in cite:
                continue
            key = (str(cite["source"]), str(cite.get("version")))
            if key not in seen:
                seen.add(key)
                merged.append(cite)
    return merged
