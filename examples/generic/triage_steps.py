"""CUSTOM step functions for the ticket-triage example (found via the runbook's folder)."""

from __future__ import annotations

from typing import Any

from runbook_engine.contract import StepExecutorContext, StepExecutorResult

SEVERITY_POINTS = {"low": 1, "medium": 3, "high": 7, "critical": 10}


def score(ctx: StepExecutorContext) -> StepExecutorResult:
    """Score = severity points + 2 if the title mentions an outage or a login."""
    scores: dict[str, int] = {}
    for ticket in ctx.input["tickets"]:
        points = SEVERITY_POINTS[ticket["severity"]]
        title = ticket["title"].lower()
        if any(word in title for word in ("down", "outage", "login")):
            points += 2
        scores[ticket["id"]] = points
    return StepExecutorResult(
        success=True,
        output={"scores": scores},
        kpis={"ticketCount": len(scores)},
    )


def summarise(ctx: StepExecutorContext) -> dict[str, Any]:
    scores: dict[str, int] = ctx.previous_outputs["score_tickets"]["scores"]
    urgent: list[str] = ctx.previous_outputs["extract_fields"]["urgent"]
    ranked = sorted(scores, key=lambda k: (-scores[k], k))
    return {"ranked": ranked, "urgent": urgent, "top": ranked[0]}
