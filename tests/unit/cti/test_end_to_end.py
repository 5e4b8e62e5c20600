"""The Rapid Attribution chain on the example input, as the engine would run it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_executors.cti.attack import attack_knowledge
from runbook_executors.registry import default_registry
from tests.unit.cti.helpers import ACTOR_NAME, EXAMPLE_DIR, example_input, run_chain

VOLATILE = {"generatedAt"}


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def chain() -> dict[str, Any]:
    return run_chain(example_input())


def test_fictional_actor_is_attributed_with_non_low_confidence(chain: dict[str, Any]) -> None:
    report = chain["generate_report"].output["report"]
    attribution = report["attribution"]
    assert attribution["attributed"] is True
    assert attribution["actor"]["name"] == ACTOR_NAME
    assert attribution["actor"]["sources"] == ["stix-bundle"]
    assert attribution["confidence"] in ("medium", "high", "very_high")
    assert attribution["confidenceScore"] >= 0.7
    # the competing fictional actor is a distant alternative, not a tie
    alternatives = {a["name"]: a for a in report["alternatives"]}
    assert "GLASS HERON" in alternatives
    assert alternatives["GLASS HERON"]["deltaFromTop"] > 0.3
    assert "competing_actors" not in {u["code"] for u in report["residualUnknowns"]}


def test_every_step_contributes_what_the_reference_promises(chain: dict[str, Any]) -> None:
    ingest = chain["ingest_indicators"]
    assert ingest.kpis["indicatorCount"] == 12
    assert ingest.kpis["rejectedCount"] == 1
    enrich = chain["enrich_intel"]
    assert [s["indicator"] for s in enrich.output["suppressed"]] == ["domain:update.example.com"]
    graph = chain["resolve_infrastructure"]
    assert sorted(u["indicator"] for u in graph.output["unresolved"]) == [
        "email:invoices@paper-lantern.example",
        "ipv6:2001:db8:feed::99",
    ]
    miner = chain["match_campaigns"]
    assert miner.output["candidates"][0]["name"] == ACTOR_NAME
    assert miner.output["campaignMatches"][0]["name"] == "Operation PAPER MOTH"
    report = chain["generate_report"]
    kpis = report.kpis
    for name in (
        "confidenceScore",
        "hasAttribution",
        "residualUnknownCount",
        "alternativeCandidateCount",
    ):
        assert name in kpis
    assert kpis["residualUnknownCount"] == len(report.output["report"]["residualUnknowns"])
    codes = [u["code"] for u in report.output["report"]["residualUnknowns"]]
    assert codes == ["unresolved_indicators", "rejected_inputs"]
    camp = report.output["report"]["campaignMatches"][0]
    assert camp["consistentWithAttribution"] is True


def test_every_evidence_item_is_hashed_and_cited(chain: dict[str, Any]) -> None:
    chain_items = chain["generate_report"].output["report"]["evidenceChain"]
    types = [e["type"] for e in chain_items]
    assert types[0] == "indicator_set"
    assert types.count("infrastructure_link") == 5
    assert {
        "technique_overlap",
        "software_overlap",
        "candidate_score",
        "unresolved_indicators",
    } <= set(types)
    for item in chain_items:
        assert len(item["hash"]) == 64 and item["id"] == f"ev-{item['hash'][:16]}"
        assert item["citations"], item["type"]
    sources = {c["source"] for c in chain["generate_report"].output["report"]["dataSources"]}
    assert any("ATT&CK" in s for s in sources)
    notices = chain["generate_report"].output["report"]["notices"]
    assert any("The MITRE Corporation" in n and "Terms of Use" in n for n in notices)


def test_same_input_same_report_apart_from_timestamps() -> None:
    first = run_chain(example_input())["generate_report"].output
    time.sleep(1.1)
    second = run_chain(example_input())["generate_report"].output
    assert _stable(first["report"]) == _stable(second["report"])
    strip = [line for line in first["markdown"].splitlines() if "Generated" not in line]
    assert strip == [line for line in second["markdown"].splitlines() if "Generated" not in line]


def test_input_order_does_not_change_the_report() -> None:
    forward = example_input()
    backward = example_input()
    backward["indicators"] = list(reversed(backward["indicators"]))
    a = _stable(run_chain(forward)["generate_report"].output["report"])
    b = _stable(run_chain(backward)["generate_report"].output["report"])
    a.pop("evidenceChain")
    b.pop("evidenceChain")  # `origins` positions differ; the decision must not
    assert a == b


def test_without_enrichment_the_four_reference_steps_still_attribute() -> None:
    results = run_chain(example_input(), enrich=False)
    assert results["generate_report"].output["report"]["attribution"]["actor"]["name"] == ACTOR_NAME


def test_runbook_manifest_keeps_the_reference_step_ids_and_known_action_types() -> None:
    doc = yaml.safe_load((EXAMPLE_DIR / "runbook.yaml").read_text())
    steps = doc["spec"]["steps"]
    ids = [s["id"] for s in steps]
    for ref in (
        "ingest_indicators",
        "resolve_infrastructure",
        "match_campaigns",
        "generate_report",
    ):
        assert ref in ids
    registry = default_registry(plugins=False)
    for step in steps:
        assert step["actionType"] in registry
        assert {"maxAttempts", "backoffSeconds", "backoffMultiplier", "maxBackoffSeconds"} <= set(
            step["retryPolicy"]
        )
        assert step["timeoutMs"] > 0
    assert Path(EXAMPLE_DIR / doc["spec"]["steps"][2]["config"]["bundlePath"]).is_file()


def test_attack_data_loads_once_and_fast() -> None:
    attack_knowledge.cache_clear()
    start = time.perf_counter()
    kb = attack_knowledge()
    elapsed = time.perf_counter() - start
    assert kb.attack_version == "18.1"
    assert len(kb.actors) > 200
    assert attack_knowledge() is kb
    assert elapsed < 5.0  # ~0.5-1 s on the CI machine; generous for a loaded box


def test_registered_domain_only_match_is_weaker_than_exact() -> None:
    loose = run_chain({"indicators": ["other.update.paper-lantern.example"]})
    # the bundle has no `paper-lantern.example` object, so the loose one is unresolved...
    assert loose["resolve_infrastructure"].output["unresolved"]
    # ...whereas a registered-domain match against a bundle domain is charged +2 hops
    bundle = {
        "type": "bundle",
        "id": "bundle--t",
        "objects": [
            {"type": "domain-name", "id": "domain-name--1", "value": "lantern.example"},
            {"type": "intrusion-set", "id": "intrusion-set--x", "name": "X"},
            {
                "type": "relationship",
                "id": "relationship--1",
                "relationship_type": "uses",
                "source_ref": "intrusion-set--x",
                "target_ref": "domain-name--1",
            },
        ],
    }
    keep_all = {"match_campaigns": {"minConfidence": 0.0}}
    direct = run_chain({"indicators": ["lantern.example"], "stixBundle": bundle}, configs=keep_all)
    indirect = run_chain(
        {"indicators": ["cdn.lantern.example"], "stixBundle": bundle}, configs=keep_all
    )
    (path,) = indirect["resolve_infrastructure"].output["paths"]
    assert path["matchType"] == "registered_domain"
    top_direct = direct["match_campaigns"].output["candidates"][0]
    top_indirect = indirect["match_campaigns"].output["candidates"][0]
    assert top_direct["id"] == top_indirect["id"] == "intrusion-set--x"
    assert top_direct["score"] == pytest.approx(0.45 * 0.5, abs=1e-5)  # one direct link
    assert top_indirect["score"] == pytest.approx(0.45 * 0.5 * 0.85**2, abs=1e-5)  # +2 hops
