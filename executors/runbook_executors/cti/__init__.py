"""CTI executors: INGEST, ENRICH_INTEL, LOOKUP_GRAPH, PATTERN_MINER, GENERATE_REPORT.

All of them work offline on bundled, versioned data (Public Suffix List, GeoLite2 via
geoip2fast, MISP warning lists, MITRE ATT&CK v18.1) plus the user's own STIX bundle, and every
verdict cites its source. See docs/cti.md.
"""

from __future__ import annotations

from runbook_executors.base import BaseStepExecutor


def cti_executors() -> list[BaseStepExecutor]:
    """Fresh instances of the five CTI executors (imports are deferred to keep startup cheap)."""
    from runbook_executors.cti.enrich import EnrichIntelExecutor
    from runbook_executors.cti.graph import LookupGraphExecutor
    from runbook_executors.cti.ingest import IngestExecutor
    from runbook_executors.cti.pattern_miner import PatternMinerExecutor
    from runbook_executors.cti.report import GenerateReportExecutor

    return [
        IngestExecutor(),
        EnrichIntelExecutor(),
        LookupGraphExecutor(),
        PatternMinerExecutor(),
        GenerateReportExecutor(),
    ]
