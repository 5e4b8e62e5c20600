"""The example runbook through the real local runner: one subprocess per step, RUNBOOK_BASE_DIR."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from runbook_engine.enums import ExecutionStatus
from runbook_engine.loader import request_from_document
from runbookctl.files import load_plan, read_yaml_documents
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


def test_a_file_that_is_not_a_bundle_fails_on_the_first_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example runbook (LOOKUP_GRAPH allows 3 attempts) pointed at a real STIX file that
    holds one campaign, not a bundle: the step fails once, without retries or backoff."""
    import yaml

    from tests.unit.cti.test_corpus import NOT_A_BUNDLE

    doc = yaml.safe_load((EXAMPLE_DIR / "runbook.yaml").read_text())
    steps = doc["spec"]["steps"]
    doc["spec"]["steps"] = [s for s in steps if s["id"] != "enrich_intel"]  # not needed here
    for kept in doc["spec"]["steps"]:
        kept["dependsOn"] = [d for d in kept.get("dependsOn", []) if d != "enrich_intel"]
    graph_step = next(s for s in doc["spec"]["steps"] if s["id"] == "resolve_infrastructure")
    graph_step["dependsOn"] = ["ingest_indicators"]
    doc["spec"]["benchmarks"]["perStepMs"].pop("enrich_intel")
    graph_step["config"]["bundlePath"] = str(NOT_A_BUNDLE)
    assert graph_step["retryPolicy"]["maxAttempts"] == 3
    (tmp_path / "runbook.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)
    plan = load_plan(tmp_path / "runbook.yaml")
    request = request_from_document(read_yaml_documents(EXAMPLE_DIR / "execution.yaml")[0])
    outcome = asyncio.run(LocalRunner(plan, request, base_dir=tmp_path).run())
    assert outcome.state.status == ExecutionStatus.FAILED
    step = outcome.state.steps["resolve_infrastructure"]
    assert step.attempt == 1
    assert "not a STIX bundle" in (step.message or "")
    assert "not retryable" in (step.message or "")
