"""What every benchmark returns: named figures with one value per repeated run.

A figure keeps all its runs so the report can show the spread (median, min–max), and says
which direction is better and what the issue's target is, so the table can mark misses.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Better = Literal["lower", "higher"]
OPERATOR = "runbook-operator"
ARGO = "argo-workflows"


@dataclass
class Figure:
    """One measured quantity of one system in one scenario, over repeated runs."""

    group: str  # "engine" | "operator-kwok" | "operator-kubelet" | ...
    scenario: str  # e.g. "chains-20x50", "fanout-1000", "concurrent-100"
    metric: str  # e.g. "step_jobs_per_min", "transition_ms_p50"
    system: str  # OPERATOR | ARGO | "runbook-engine"
    unit: str
    better: Better
    values: list[float] = field(default_factory=list)
    target: float | None = None  # the target (same unit), if it names one

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def meets_target(self) -> bool | None:
        """None when there is no target; otherwise whether the median meets it."""
        if self.target is None or not self.values:
            return None
        return self.median <= self.target if self.better == "lower" else self.median >= self.target

    def key(self) -> tuple[str, str, str, str]:
        return (self.group, self.scenario, self.metric, self.system)

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"median": self.median}


@dataclass
class Samples:
    """Raw samples worth plotting as a distribution (e.g. every transition's overhead)."""

    group: str
    scenario: str
    metric: str
    system: str
    unit: str
    values: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def merge(figures: list[Figure]) -> list[Figure]:
    """Fold figures with the same key (one per run) into one figure holding every run's value."""
    merged: dict[tuple[str, str, str, str], Figure] = {}
    for fig in figures:
        into = merged.setdefault(fig.key(), Figure(**(asdict(fig) | {"values": []})))
        into.values.extend(fig.values)
    return list(merged.values())
