"""The example runbook through the real local runner: one subprocess per step, RUNBOOK_BASE_DIR."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from runbook_engine.enums import ExecutionStatus
from runbook_engine.loader import load_plan, read_yaml_documents, request_from_document
from runbookctl.runner import LocalRunner
from tests.unit.cti.helpers import ACTOR_NAME, EXAMPLE_DIR

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_example_runbook_runs_to_an_attribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the relative bundlePath must not depend on the CWD
    plan = load_plan(EXAMPLE_DIR / "runbook.yaml")
    request = request_from_document(read_yaml_documents(EXAMPLE_DIR / "execution.yaml")[0])
    runner = LocalRunner(plan, request, base_dir=EXAMPLE_DIR)
    outcome = asyncio.run(runner.run())
    assert outcome.state.status == ExecutionStatus.COMPLETED, outcome.state.message
    report = outcome.state.outputs["generate_report"]["report"]
    assert report["attribution"]["actor"]["name"] == ACTOR_NAME
    assert outcome.state.kpis["hasAttribution"] is True
    assert outcome.state.kpis["indicatorCount"] == 12
    (bundle,) = [c for c in report["dataSources"] if c["source"].startswith("STIX")]
    assert os.path.samefile(bundle["reference"], EXAMPLE_DIR / "stix-bundle.json")
    sources = " ".join(c["source"] for c in report["dataSources"])
    for name in ("Public Suffix List", "ATT&CK", "GeoLite2", "MISP warninglist"):
        assert name in sources
