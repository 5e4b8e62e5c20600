"""INGEST: indicators from a list and/or free text, refanged, classified and de-duplicated."""

from __future__ import annotations

from typing import Any, ClassVar

from runbook_engine.contract import ActionType, KpiValue, StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.cti.common import ConfigError, int_setting
from runbook_executors.cti.datasources import psl_citation
from runbook_executors.cti.indicators import INDICATOR_TYPES, ingest


class IngestExecutor(BaseStepExecutor):
    """Normalise analyst-supplied indicators so every later step matches on one spelling.

    Input: `indicators` (list of strings) and/or `text` (free text, e.g. an alert body).
    Config: `maxIndicators` (default 10000) caps the accepted set.
    """

    action_type: ClassVar[str] = ActionType.INGEST

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        raw_items = self.get_input(ctx, "indicators", [])
        if isinstance(raw_items, str):
            raw_items = [raw_items]
        if not isinstance(raw_items, list):
            raise ConfigError("input.indicators must be a list")
        text = self.get_input(ctx, "text")
        if text is not None and not isinstance(text, str):
            raise ConfigError("input.text must be a string")
        limit = int_setting(self, ctx, "maxIndicators", 10000, minimum=1, maximum=1_000_000)

        result = ingest(raw_items, text)
        accepted = result.indicators
        rejected = list(result.rejected)
        if len(accepted) > limit:
            for extra in accepted[limit:]:
                rejected.append(
                    {
                        "input": extra.value,
                        "origin": ",".join(sorted(set(extra.origins))),
                        "reason": f"over config.maxIndicators ({limit})",
                    }
                )
            accepted = accepted[:limit]

        indicators = [i.to_dict() for i in accepted]
        counts = {t: 0 for t in INDICATOR_TYPES}
        for ind in indicators:
            counts[ind["type"]] += 1
        defanged = sum(1 for ind in indicators if "defanged" in ind["flags"])

        kpis: dict[str, KpiValue] = {
            "indicatorCount": len(indicators),
            "rejectedCount": len(rejected),
            "defangedCount": defanged,
            "ignoredTextCandidateCount": result.ignored_text_candidates,
        }
        kpis.update({f"indicatorCount_{t}": n for t, n in counts.items()})
        citation = psl_citation()
        output: dict[str, Any] = {
            "indicators": indicators,
            "rejected": rejected,
            "counts": counts,
            "techniques": [i["value"] for i in indicators if i["type"] == "attack_technique"],
        }
        for key in ("caseId", "source"):
            value = self.get_input(ctx, key)
            if isinstance(value, str):
                output[key] = value
        evidence = self.create_evidence(
            "indicator_set",
            {
                "indicators": [f"{i['type']}:{i['value']}" for i in indicators],
                "rejected": [{"input": r["input"], "reason": r["reason"]} for r in rejected],
            },
            step_id=ctx.step_id,
            citations=[citation],
        )
        return self.success(output, kpis=kpis, evidence=[evidence], citations=[citation])
