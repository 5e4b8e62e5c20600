"""How step KPIs become execution KPIs.

Rule (documented in docs/engine.md): for each KPI name, the value reported by the step that is
*latest in definition order* among the steps that succeeded wins — downstream steps refine
upstream figures (e.g. a report's confidenceScore supersedes a miner's). Order of completion does
not matter, so parallel branches give the same KPIs on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_step_kpis(
    kpis: dict[str, Any], sources: dict[str, int], position: int, step_kpis: Mapping[str, Any]
) -> None:
    """Fold one step's KPIs into the running merge (in place: called on a private copy)."""
    for name, value in step_kpis.items():
        if sources.get(name, -1) <= position:
            kpis[name] = value
            sources[name] = position
