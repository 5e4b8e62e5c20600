"""What GENERATE_REPORT reads, the attribution decision, and the residual-unknown rules.

Each residual unknown is one small rule over `Findings` (what the upstream steps found), kept
in a table in report order; a rule returns the unknown it finds, or None. Its recommendation
comes from the same table, so an unknown and its advice never drift apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Unknown = dict[str, Any]


def component(candidate: dict[str, Any], name: str) -> dict[str, Any]:
    """One score component of a ranked candidate (zero if absent)."""
    for contribution in candidate.get("contributions", []):
        if contribution.get("component") == name:
            return dict(contribution)
    return {"component": name, "value": 0.0, "weighted": 0.0, "details": []}


def is_linked(candidate: dict[str, Any]) -> bool:
    """True if some indicator reached the candidate through the infrastructure graph."""
    return float(component(candidate, "infrastructure")["value"]) > 0


@dataclass(frozen=True)
class Findings:
    """Everything the report is derived from: the upstream outputs and this step's config."""

    threshold: float
    margin: float
    min_techniques: int
    candidates: list[dict[str, Any]]
    campaigns: list[dict[str, Any]]
    summary: dict[str, Any]
    indicators: list[dict[str, Any]]
    rejected: list[Any]
    suppressed: list[Any]
    unresolved: list[Any]
    truncated: list[Any]
    bundle: dict[str, Any]
    skipped_patterns: list[Any]
    reached_actors: list[Any]
    """Intrusion sets and campaigns the graph walk reached (LOOKUP_GRAPH `reachedActors`)."""

    @property
    def top(self) -> dict[str, Any] | None:
        return self.candidates[0] if self.candidates else None

    @property
    def top_score(self) -> float:
        return float(self.candidates[0]["score"]) if self.candidates else 0.0

    @property
    def attributed(self) -> bool:
        return self.top is not None and self.top_score >= self.threshold

    @property
    def linked_campaigns(self) -> list[dict[str, Any]]:
        return [c for c in self.campaigns if is_linked(c)]

    @property
    def observed_techniques(self) -> list[Any]:
        return list(self.summary.get("techniques", []))

    def unresolved_keys(self) -> list[str]:
        return sorted(
            str(u.get("indicator", u)) if isinstance(u, dict) else str(u) for u in self.unresolved
        )


# -- the rules, in report order ----------------------------------------------------------------


def no_indicators(f: Findings) -> Unknown | None:
    if f.indicators:
        return None
    return {"description": "No usable indicators reached the attribution steps."}


def no_bundle(f: Findings) -> Unknown | None:
    if f.bundle:
        return None
    return {"description": "No STIX bundle was supplied; infrastructure was not resolved."}


def invalid_bundle(f: Findings) -> Unknown | None:
    validation = f.bundle.get("validation") or {}
    if not f.bundle or validation.get("valid", True):
        return None
    count = int(validation.get("errorCount", 0))
    return {
        "description": f"The STIX bundle has {count} schema error(s) (stix2-validator); what "
        "could still be read was used.",
        "items": list(validation.get("errors", [])),
    }


def unevaluated_patterns(f: Findings) -> Unknown | None:
    if not f.skipped_patterns:
        return None
    kinds = Counter(
        next(
            (k for k in ("comparison", "qualifier", "operator", "patternType") if k in s), "pattern"
        )
        for s in f.skipped_patterns
        if isinstance(s, dict)
    )
    parts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return {
        "description": f"Parts of the bundle's indicator patterns were not evaluated ({parts}); "
        "LOOKUP_GRAPH's skippedPatterns lists each with its reason."
    }


def unresolved_indicators(f: Findings) -> Unknown | None:
    if not f.unresolved:
        return None
    return {
        "description": f"{len(f.unresolved)} indicator(s) were not found in the "
        "infrastructure graph.",
        "items": f.unresolved_keys(),
    }


def no_infrastructure_link(f: Findings) -> Unknown | None:
    if not (f.bundle and f.indicators):
        return None
    if f.reached_actors or any(is_linked(c) for c in [*f.candidates, *f.campaigns]):
        return None
    return {
        "description": "No indicator is linked to an intrusion set or campaign through the "
        "infrastructure graph."
    }


def graph_truncated(f: Findings) -> Unknown | None:
    if not f.truncated:
        return None
    return {
        "description": f"The graph walk was cut at config.maxNodes for {len(f.truncated)} "
        "indicator(s).",
        "items": sorted(str(t) for t in f.truncated),
    }


def competing_actors(f: Findings) -> Unknown | None:
    top = f.top
    if top is None or len(f.candidates) < 2 or f.top_score <= 0:
        return None
    second = f.candidates[1]
    if f.top_score - float(second["score"]) >= f.margin:
        return None
    return {
        "description": f"{top['name']} ({f.top_score:.2f}) and {second['name']} "
        f"({float(second['score']):.2f}) are within the ambiguity margin of {f.margin:.2f}.",
        "items": [top["id"], second["id"]],
    }


def low_technique_coverage(f: Findings) -> Unknown | None:
    observed = len(f.observed_techniques)
    if observed < f.min_techniques:
        return {
            "description": f"Only {observed} ATT&CK technique(s) observed (fewer than "
            f"{f.min_techniques}); behavioural overlap is weak evidence."
        }
    top = f.top
    if top is None or not f.attributed:
        return None
    matched = len(top.get("matchedTechniques", []))
    if matched * 2 >= observed:
        return None
    return {
        "description": f"{top['name']} is known to use only {matched} of the {observed} "
        "observed techniques."
    }


def unknown_techniques(f: Findings) -> Unknown | None:
    if not f.summary.get("unknownTechniques"):
        return None
    return {
        "description": "Technique ids not in the bundled ATT&CK release or the STIX bundle "
        "were ignored.",
        "items": list(f.summary["unknownTechniques"]),
    }


def rejected_inputs(f: Findings) -> Unknown | None:
    if not f.rejected:
        return None
    return {
        "description": f"{len(f.rejected)} input(s) were rejected as indicators.",
        "items": sorted(str(r.get("input")) for r in f.rejected if isinstance(r, dict)),
    }


def single_indicator_link(f: Findings) -> Unknown | None:
    top = f.top
    if not f.attributed or top is None or len(top.get("linkedIndicators", [])) != 1:
        return None
    return {"description": "The attribution rests on a single linked indicator."}


def below_threshold(f: Findings) -> Unknown | None:
    top = f.top
    if top is None or f.attributed:
        return None
    return {
        "description": f"Best candidate {top['name']} scored {f.top_score:.2f}, below the "
        f"attribution threshold {f.threshold:.2f}."
    }


def campaign_without_actor(f: Findings) -> Unknown | None:
    if f.top is not None or not f.linked_campaigns:
        return None
    return {
        "description": "Indicators are linked to campaign(s) that no intrusion set in the "
        "data is known to be behind.",
        "items": [str(c["id"]) for c in f.linked_campaigns],
    }


Rule = Callable[[Findings], Unknown | None]

RULES: tuple[tuple[str, Rule, str], ...] = (
    (
        "no_indicators",
        no_indicators,
        "Collect indicators (network, host or e-mail artefacts) before attempting attribution.",
    ),
    (
        "no_bundle",
        no_bundle,
        "Supply a STIX 2.0 or 2.1 infrastructure bundle (config.bundlePath) so indicators can "
        "be linked to known infrastructure.",
    ),
    (
        "invalid_bundle",
        invalid_bundle,
        "Fix the schema errors the validator reports in the STIX bundle; objects it could not "
        "read as intended may hide links.",
    ),
    (
        "unevaluated_patterns",
        unevaluated_patterns,
        "Review the skipped pattern parts (LOOKUP_GRAPH skippedPatterns): indicators that only "
        "match through them are not found.",
    ),
    (
        "unresolved_indicators",
        unresolved_indicators,
        "Search internal telemetry, passive DNS and sandbox reports for the unresolved "
        "indicators and add what is found to the STIX bundle.",
    ),
    (
        "no_infrastructure_link",
        no_infrastructure_link,
        "No indicator reached an intrusion set or campaign; extend the graph (more "
        "relationships or config.maxDepth) before relying on technique overlap alone.",
    ),
    (
        "graph_truncated",
        graph_truncated,
        "The infrastructure walk hit config.maxNodes; raise it (or narrow the bundle) so no "
        "link is missed.",
    ),
    (
        "competing_actors",
        competing_actors,
        "Candidates are within the ambiguity margin; look for discriminating evidence (unique "
        "malware, infrastructure re-use, operational timing).",
    ),
    (
        "low_technique_coverage",
        low_technique_coverage,
        "Map more observed behaviour to ATT&CK techniques (EDR telemetry, incident timeline) "
        "to strengthen or refute the technique overlap.",
    ),
    (
        "unknown_techniques",
        unknown_techniques,
        "Check the technique ids that are not in the bundled ATT&CK release (typos, revoked "
        "or newer techniques).",
    ),
    (
        "rejected_inputs",
        rejected_inputs,
        "Review the rejected inputs; fix defanging or typos and re-run if they are real "
        "indicators.",
    ),
    (
        "single_indicator_link",
        single_indicator_link,
        "The attribution rests on one linked indicator; corroborate it with a second, "
        "independent indicator.",
    ),
    (
        "below_threshold",
        below_threshold,
        "Treat the best candidate as a lead, not an attribution, until more evidence raises "
        "its score above the threshold.",
    ),
    (
        "campaign_without_actor",
        campaign_without_actor,
        "Look for the intrusion set behind the linked campaign(s) (attributed-to relationships, "
        "vendor reporting) before attributing.",
    ),
)
RECOMMENDATIONS: dict[str, str] = {code: advice for code, _, advice in RULES}
VALIDATE_ADVICE = (
    "Validate the attribution against an independent source before acting on it, and record "
    "the decision."
)


def residual_unknowns(findings: Findings) -> list[Unknown]:
    """Every rule's finding, in table order, each with its `code` first."""
    unknowns = []
    for code, rule, _ in RULES:
        found = rule(findings)
        if found is not None:
            unknowns.append({"code": code, **found})
    return unknowns


def recommendations(findings: Findings, unknowns: list[Unknown]) -> list[str]:
    advice = [RECOMMENDATIONS[u["code"]] for u in unknowns]
    return [*advice, VALIDATE_ADVICE] if findings.attributed else advice


def _campaign_list(campaigns: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['name']} ({float(c['score']):.2f}, {c['confidence']})" for c in campaigns)


def statement(f: Findings) -> str:
    """One sentence that agrees with the ranking and with the campaign links found."""
    top = f.top
    campaigns = f.linked_campaigns
    if top is None and not campaigns and f.reached_actors:
        return (
            f"The indicators are linked to {len(f.reached_actors)} intrusion set(s) or "
            "campaign(s) in the bundle, but none scored above the miner's minConfidence; "
            "no attribution is made."
        )
    if top is None and not campaigns:
        return (
            "No evidence linked the indicators to any known actor or campaign; "
            "no attribution is made."
        )
    if top is None:
        return (
            "No intrusion set is linked to the indicators, so no actor is attributed; they are "
            f"linked to the campaign(s) {_campaign_list(campaigns)}."
        )
    if f.attributed:
        return (
            f"Activity is attributed to {top['name']} with {top['confidence']} "
            f"confidence (score {f.top_score:.2f})."
        )
    tail = f" Linked campaign(s): {_campaign_list(campaigns)}." if campaigns else ""
    return (
        f"No attribution: the best candidate, {top['name']}, scored {f.top_score:.2f} "
        f"({top['confidence']}), below the threshold {f.threshold:.2f}.{tail}"
    )
