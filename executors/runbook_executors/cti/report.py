"""GENERATE_REPORT: an attribution report (JSON + Markdown) with a hashed, signed evidence chain."""

from __future__ import annotations

from datetime import UTC, datetime
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
from runbook_executors.cti.attack import ATTACK_NOTICE, attack_knowledge
from runbook_executors.cti.common import (
    float_setting,
    int_setting,
    upstream_dict,
    upstream_list,
)
from runbook_executors.cti.datasources import psl_citation
from runbook_executors.cti.report_signing import (
    key_id,
    load_signing_key,
    sign_evidence,
    sign_report,
)

REPORT_SCHEMA = "runbook-operator.dev/attribution-report/v1"

RECOMMENDATIONS: dict[str, str] = {
    "no_indicators": "Collect indicators (network, host or e-mail artefacts) before attempting "
    "attribution.",
    "no_bundle": "Supply a STIX 2.1 infrastructure bundle (config.bundlePath) so indicators can be "
    "linked to known infrastructure.",
    "unresolved_indicators": "Search internal telemetry, passive DNS and sandbox reports for the "
    "unresolved indicators and add what is found to the STIX bundle.",
    "no_infrastructure_link": "No indicator reached an intrusion set or campaign; extend the graph "
    "(more relationships or config.maxDepth) before relying on technique overlap alone.",
    "graph_truncated": "The infrastructure walk hit config.maxNodes; raise it (or narrow the "
    "bundle) so no link is missed.",
    "competing_actors": "Candidates are within the ambiguity margin; look for discriminating "
    "evidence (unique malware, infrastructure re-use, operational timing).",
    "low_technique_coverage": "Map more observed behaviour to ATT&CK techniques (EDR telemetry, "
    "incident timeline) to strengthen or refute the technique overlap.",
    "unknown_techniques": "Check the technique ids that are not in the bundled ATT&CK release "
    "(typos, revoked or newer techniques).",
    "rejected_inputs": "Review the rejected inputs; fix defanging or typos and re-run if they are "
    "real indicators.",
    "single_indicator_link": "The attribution rests on one linked indicator; corroborate it with "
    "a second, independent indicator.",
    "below_threshold": "Treat the best candidate as a lead, not an attribution, until more "
    "evidence raises its score above the threshold.",
}
_ORDER = list(RECOMMENDATIONS)


def _component(candidate: dict[str, Any], name: str) -> dict[str, Any]:
    for contribution in candidate.get("contributions", []):
        if contribution.get("component") == name:
            return dict(contribution)
    return {"component": name, "value": 0.0, "weighted": 0.0, "details": []}


def _actor_ref(candidate: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "stixId", "kind", "name", "aliases", "sources", "url")
    return {k: candidate[k] for k in keys if k in candidate}


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
        "contributions": [
            {k: v for k, v in c.items() if k != "details"}
            for c in candidate.get("contributions", [])
        ],
    }


class GenerateReportExecutor(BaseStepExecutor):
    """Turn the miner's ranking into a decision an analyst can audit: who, how sure, and why.

    Config: `attributionThreshold` (default 0.5), `ambiguityMargin` (0.1), `minTechniques` (3),
    `title`, and a signing key (`signingKeyFile` or `signingKey: {secretFrom: {env|file}}`).
    """

    action_type: ClassVar[str] = ActionType.GENERATE_REPORT

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        threshold = float_setting(self, ctx, "attributionThreshold", 0.5)
        margin = float_setting(self, ctx, "ambiguityMargin", 0.1)
        min_techniques = int_setting(self, ctx, "minTechniques", 3, minimum=0, maximum=1000)
        title = str(self.get_config(ctx, "title", "Rapid attribution report"))
        signing_key = load_signing_key(ctx.config)

        candidates = [c for c in upstream_list(self, ctx, "candidates") if isinstance(c, dict)]
        campaigns = [c for c in upstream_list(self, ctx, "campaignMatches") if isinstance(c, dict)]
        summary = upstream_dict(self, ctx, "evidenceSummary")
        context = upstream_dict(self, ctx, "context")
        model = upstream_dict(self, ctx, "model")
        indicators = [i for i in upstream_list(self, ctx, "indicators") if isinstance(i, dict)]
        rejected = upstream_list(self, ctx, "rejected")
        suppressed = upstream_list(self, ctx, "suppressed")
        unresolved = upstream_list(self, ctx, "unresolved") or list(context.get("unresolved", []))
        bundle = upstream_dict(self, ctx, "bundle") or dict(context.get("bundle") or {})
        indicator_count = len(indicators) or int(context.get("indicatorCount", 0))

        kb = attack_knowledge()
        attack_cite = kb.citation()
        bundle_cite = (
            Citation(
                source="STIX 2.1 bundle (user supplied)",
                version=f"sha256:{bundle.get('sha256')}",
                reference=str(bundle.get("source")),
            )
            if bundle
            else None
        )

        top = candidates[0] if candidates else None
        top_score = float(top["score"]) if top else 0.0
        attributed = top is not None and top_score >= threshold
        alternatives = candidates[1:] if attributed else candidates

        # -- residual unknowns, each derived from what is actually missing or conflicting ----
        unknowns: list[dict[str, Any]] = []
        if indicator_count == 0:
            unknowns.append(
                {
                    "code": "no_indicators",
                    "description": "No usable indicators reached the attribution steps.",
                }
            )
        if not bundle:
            unknowns.append(
                {
                    "code": "no_bundle",
                    "description": "No STIX bundle was supplied; infrastructure was not resolved.",
                }
            )
        if unresolved:
            unknowns.append(
                {
                    "code": "unresolved_indicators",
                    "description": f"{len(unresolved)} indicator(s) were not found in the "
                    "infrastructure graph.",
                    "items": sorted(
                        str(u.get("indicator", u)) if isinstance(u, dict) else str(u)
                        for u in unresolved
                    ),
                }
            )
        if (
            bundle
            and indicator_count
            and not any(_component(c, "infrastructure")["value"] > 0 for c in candidates)
        ):
            unknowns.append(
                {
                    "code": "no_infrastructure_link",
                    "description": "No indicator is linked to an intrusion set or "
                    "campaign through the infrastructure graph.",
                }
            )
        truncated = upstream_list(self, ctx, "truncated")
        if truncated:
            unknowns.append(
                {
                    "code": "graph_truncated",
                    "description": f"The graph walk was cut at config.maxNodes for "
                    f"{len(truncated)} indicator(s).",
                    "items": sorted(str(t) for t in truncated),
                }
            )
        if top is not None and len(candidates) >= 2 and top_score > 0:
            second = candidates[1]
            if top_score - float(second["score"]) < margin:
                unknowns.append(
                    {
                        "code": "competing_actors",
                        "description": f"{top['name']} ({top_score:.2f}) and "
                        f"{second['name']} ({float(second['score']):.2f}) are within "
                        f"the ambiguity margin of {margin:.2f}.",
                        "items": [top["id"], second["id"]],
                    }
                )
        observed = summary.get("techniques", [])
        if len(observed) < min_techniques:
            unknowns.append(
                {
                    "code": "low_technique_coverage",
                    "description": f"Only {len(observed)} ATT&CK technique(s) observed "
                    f"(fewer than {min_techniques}); behavioural overlap is weak "
                    "evidence.",
                }
            )
        elif top is not None and attributed:
            matched = len(top.get("matchedTechniques", []))
            if matched * 2 < len(observed):
                unknowns.append(
                    {
                        "code": "low_technique_coverage",
                        "description": f"{top['name']} is known to use only {matched} of "
                        f"the {len(observed)} observed techniques.",
                    }
                )
        if summary.get("unknownTechniques"):
            unknowns.append(
                {
                    "code": "unknown_techniques",
                    "description": "Technique ids not in the bundled ATT&CK release or "
                    "the STIX bundle were ignored.",
                    "items": list(summary["unknownTechniques"]),
                }
            )
        if rejected:
            unknowns.append(
                {
                    "code": "rejected_inputs",
                    "description": f"{len(rejected)} input(s) were rejected as indicators.",
                    "items": sorted(str(r.get("input")) for r in rejected if isinstance(r, dict)),
                }
            )
        if attributed and top is not None and len(top.get("linkedIndicators", [])) == 1:
            unknowns.append(
                {
                    "code": "single_indicator_link",
                    "description": "The attribution rests on a single linked indicator.",
                }
            )
        if top is not None and not attributed:
            unknowns.append(
                {
                    "code": "below_threshold",
                    "description": f"Best candidate {top['name']} scored "
                    f"{top_score:.2f}, below the attribution threshold "
                    f"{threshold:.2f}.",
                }
            )
        unknowns.sort(key=lambda u: _ORDER.index(u["code"]))
        recommendations = [RECOMMENDATIONS[u["code"]] for u in unknowns]
        if attributed:
            recommendations.append(
                "Validate the attribution against an independent source "
                "before acting on it, and record the decision."
            )

        # -- statement ---------------------------------------------------------------------
        if top is None:
            statement = (
                "No evidence linked the indicators to any known actor or campaign; "
                "no attribution is made."
            )
        elif attributed:
            statement = (
                f"Activity is attributed to {top['name']} with {top['confidence']} "
                f"confidence (score {top_score:.2f})."
            )
        else:
            statement = (
                f"No attribution: the best candidate, {top['name']}, scored "
                f"{top_score:.2f} ({top['confidence']}), below the threshold "
                f"{threshold:.2f}."
            )

        # -- evidence chain ----------------------------------------------------------------
        evidence: list[Evidence] = []
        evidence.append(
            self.create_evidence(
                "indicator_set",
                {
                    "indicators": sorted(f"{i.get('type')}:{i.get('value')}" for i in indicators),
                    "rejectedCount": len(rejected),
                    "suppressed": sorted(
                        str(s.get("indicator")) for s in suppressed if isinstance(s, dict)
                    ),
                },
                step_id=ctx.step_id,
                citations=[psl_citation()],
            )
        )
        if top is not None:
            for detail in _component(top, "infrastructure").get("details", []):
                evidence.append(
                    self.create_evidence(
                        "infrastructure_link",
                        {
                            "candidate": top["id"],
                            "indicator": detail.get("indicator"),
                            "hops": detail.get("hops"),
                            "path": detail.get("path", []),
                        },
                        step_id=ctx.step_id,
                        citations=[c for c in (bundle_cite,) if c is not None],
                    )
                )
            tech = _component(top, "techniques")
            if tech.get("details"):
                evidence.append(
                    self.create_evidence(
                        "technique_overlap",
                        {
                            "candidate": top["id"],
                            "techniques": [
                                {k: d.get(k) for k in ("technique", "name", "match", "weight")}
                                for d in tech["details"]
                            ],
                        },
                        step_id=ctx.step_id,
                        citations=[attack_cite],
                    )
                )
            soft = _component(top, "software")
            if soft.get("details"):
                evidence.append(
                    self.create_evidence(
                        "software_overlap",
                        {"candidate": top["id"], "software": soft["details"]},
                        step_id=ctx.step_id,
                        citations=[attack_cite],
                    )
                )
            evidence.append(
                self.create_evidence(
                    "candidate_score",
                    {
                        "candidate": top["id"],
                        "score": top["score"],
                        "confidence": top["confidence"],
                        "contributions": [
                            {k: v for k, v in c.items() if k != "details"}
                            for c in top.get("contributions", [])
                        ],
                    },
                    step_id=ctx.step_id,
                    citations=[attack_cite, *([bundle_cite] if bundle_cite else [])],
                )
            )
        if unresolved:
            evidence.append(
                self.create_evidence(
                    "unresolved_indicators",
                    {
                        "indicators": sorted(
                            str(u.get("indicator", u)) if isinstance(u, dict) else str(u)
                            for u in unresolved
                        )
                    },
                    step_id=ctx.step_id,
                    citations=[c for c in (bundle_cite,) if c is not None],
                )
            )
        if signing_key is not None:
            evidence = [
                ev.model_copy(update={"signature": sign_evidence(ev.wire(), signing_key)})
                for ev in evidence
            ]

        sources = [psl_citation(), attack_cite, *([bundle_cite] if bundle_cite else [])]
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
            "attribution": {
                "attributed": attributed,
                "actor": _actor_ref(top) if attributed and top is not None else None,
                "confidenceScore": round(top_score, 6) if attributed else 0.0,
                "confidence": top["confidence"] if attributed and top is not None else "none",
                "bestCandidateScore": round(top_score, 6),
                "threshold": threshold,
                "statement": statement,
            },
            "alternatives": [_summary(c, top_score) for c in alternatives],
            "campaignMatches": [
                {
                    **_summary(c, float(campaigns[0]["score"])),
                    "attributedTo": c.get("attributedTo", []),
                    "consistentWithAttribution": bool(
                        attributed and top is not None and top["id"] in c.get("attributedTo", [])
                    ),
                }
                for c in campaigns
            ],
            "observedTechniques": observed,
            "evidenceChain": [ev.wire() for ev in evidence],
            "residualUnknowns": unknowns,
            "recommendations": recommendations,
            "scoringModel": model,
            "dataSources": _merge_sources(
                [c.wire() for c in sources], upstream_list(self, ctx, "enrichmentSources")
            ),
            "notices": [ATTACK_NOTICE],
        }
        if signing_key is not None:
            report = sign_report(report, signing_key)
        markdown = render_markdown(report)
        kpis: dict[str, KpiValue] = {
            "confidenceScore": report["attribution"]["confidenceScore"],
            "hasAttribution": attributed,
            "residualUnknownCount": len(unknowns),
            "alternativeCandidateCount": len(report["alternatives"]),
            "campaignMatchCount": len(report["campaignMatches"]),
            "evidenceCount": len(evidence),
            "signed": signing_key is not None,
        }
        output: dict[str, Any] = {"report": report, "markdown": markdown}
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


def _fmt_list(items: list[Any]) -> str:
    return ", ".join(str(i) for i in items) if items else "-"


def render_markdown(report: dict[str, Any]) -> str:
    """Human-readable rendering of a report dict (also usable on a stored report)."""
    att = report["attribution"]
    lines = [f"# {report.get('title', 'Attribution report')}", ""]
    meta = [
        ("Case", report.get("caseId")),
        ("Source", report.get("source")),
        ("Execution", report.get("executionId")),
        ("Generated", report.get("generatedAt")),
        ("Legal basis", report.get("legalBasis")),
    ]
    lines += [f"- **{k}:** {v}" for k, v in meta if v]
    lines += ["", "## Attribution", "", att["statement"], ""]
    if att.get("actor"):
        actor = att["actor"]
        lines += [
            f"- **Actor:** {actor.get('name')} (`{actor.get('id')}`)",
            f"- **Confidence:** {att['confidence']} ({att['confidenceScore']:.2f})",
            f"- **Sources:** {_fmt_list(actor.get('sources', []))}",
            "",
        ]
    if report.get("alternatives"):
        lines += [
            "## Alternatives",
            "",
            "| # | Candidate | Score | Confidence | Infra | Techniques | Software |",
            "|---|---|---|---|---|---|---|",
        ]
        for alt in report["alternatives"]:
            parts = {c["component"]: c["weighted"] for c in alt["contributions"]}
            lines.append(
                f"| {alt.get('rank')} | {alt['name']} (`{alt['id']}`) | "
                f"{alt['score']:.2f} | {alt['confidence']} | "
                f"{parts.get('infrastructure', 0):.2f} | {parts.get('techniques', 0):.2f} | "
                f"{parts.get('software', 0):.2f} |"
            )
        lines.append("")
    if report.get("campaignMatches"):
        lines += [
            "## Campaign matches",
            "",
            "| Campaign | Score | Confidence | Attributed to |",
            "|---|---|---|---|",
        ]
        for camp in report["campaignMatches"]:
            lines.append(
                f"| {camp['name']} (`{camp['id']}`) | {camp['score']:.2f} | "
                f"{camp['confidence']} | {_fmt_list(camp.get('attributedTo', []))} |"
            )
        lines.append("")
    if report.get("observedTechniques"):
        lines += ["## Observed techniques", ""]
        lines += [
            f"- {t['id']} {t.get('name') or ''} ({_fmt_list(t.get('origins', []))})"
            for t in report["observedTechniques"]
        ]
        lines.append("")
    lines += [
        "## Evidence chain",
        "",
        "| Evidence | Type | SHA-256 | Sources |",
        "|---|---|---|---|",
    ]
    for ev in report["evidenceChain"]:
        cites = _fmt_list(sorted({c.get("source", "") for c in ev.get("citations", [])}))
        lines.append(f"| `{ev['id']}` | {ev['type']} | `{ev['hash'][:16]}…` | {cites} |")
    lines += ["", "## Residual unknowns", ""]
    if report["residualUnknowns"]:
        for unknown in report["residualUnknowns"]:
            items = f" ({_fmt_list(unknown['items'])})" if unknown.get("items") else ""
            lines.append(f"- **{unknown['code']}**: {unknown['description']}{items}")
    else:
        lines.append("- none identified")
    lines += ["", "## Recommendations", ""]
    lines += [f"{n}. {r}" for n, r in enumerate(report["recommendations"], start=1)] or ["- none"]
    lines += ["", "## Data sources", ""]
    for cite in report.get("dataSources", []):
        version = f" — {cite['version']}" if cite.get("version") else ""
        lines.append(f"- {cite['source']}{version}")
    sig = report.get("signature")
    lines += ["", "## Signature", ""]
    lines.append(
        f"- {sig['algorithm']} over {sig['canonicalization']} canonical JSON, key "
        f"`{sig['keyId']}`, digest `{sig['digest']}`"
        if sig
        else "- unsigned"
    )
    lines += ["", "---", "", *[f"_{n}_" for n in report.get("notices", [])], ""]
    return "\n".join(lines)
