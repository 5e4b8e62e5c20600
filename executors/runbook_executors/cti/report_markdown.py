"""Markdown rendering of an attribution report (also usable on a stored report)."""

from __future__ import annotations

from typing import Any


def _fmt_list(items: list[Any]) -> str:
    return ", ".join(str(i) for i in items) if items else "-"


def _header(report: dict[str, Any]) -> list[str]:
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
    return lines


def _alternatives(report: dict[str, Any]) -> list[str]:
    if not report.get("alternatives"):
        return []
    lines = [
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
    return [*lines, ""]


def _campaigns(report: dict[str, Any]) -> list[str]:
    if not report.get("campaignMatches"):
        return []
    lines = [
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
    return [*lines, ""]


def _techniques(report: dict[str, Any]) -> list[str]:
    if not report.get("observedTechniques"):
        return []
    lines = ["## Observed techniques", ""]
    lines += [
        f"- {t['id']} {t.get('name') or ''} ({_fmt_list(t.get('origins', []))})"
        for t in report["observedTechniques"]
    ]
    return [*lines, ""]


def _evidence(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Evidence chain",
        "",
        "| Evidence | Type | SHA-256 | Sources |",
        "|---|---|---|---|",
    ]
    for ev in report["evidenceChain"]:
        cites = _fmt_list(sorted({c.get("source", "") for c in ev.get("citations", [])}))
        lines.append(f"| `{ev['id']}` | {ev['type']} | `{ev['hash'][:16]}…` | {cites} |")
    return lines


def _unknowns_and_advice(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Residual unknowns", ""]
    if report["residualUnknowns"]:
        for unknown in report["residualUnknowns"]:
            items = f" ({_fmt_list(unknown['items'])})" if unknown.get("items") else ""
            lines.append(f"- **{unknown['code']}**: {unknown['description']}{items}")
    else:
        lines.append("- none identified")
    lines += ["", "## Recommendations", ""]
    lines += [f"{n}. {r}" for n, r in enumerate(report["recommendations"], start=1)] or ["- none"]
    return lines


def _sources_and_signature(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Data sources", ""]
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
    return lines


SECTIONS = (
    _header,
    _alternatives,
    _campaigns,
    _techniques,
    _evidence,
    _unknowns_and_advice,
    _sources_and_signature,
)


def render_markdown(report: dict[str, Any]) -> str:
    """Human-readable rendering of a report dict, section by section."""
    return "\n".join(line for section in SECTIONS for line in section(report))
