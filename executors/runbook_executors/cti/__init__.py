"""Cyber-threat-intelligence executors: INGEST, ENRICH_INTEL, LOOKUP_GRAPH, PATTERN_MINER, GENERATE_REPORT."""

from __future__ import annotations

from runbook_executors.base import BaseStepExecutor


def cti_executors() -> list[BaseStepExecutor]:
    return []
