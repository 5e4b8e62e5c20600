"""The runbook on real, public STIX 2.0 and 2.1 bundles that no one here wrote.

Corpus: the OASIS example bundles shipped inside the `stix2-validator` package
(`stix2validator/schemas-2.0/examples`, `schemas-2.1/examples`: indicators for C2, e-mail
indicators, infrastructure, and the APT1 and Poison Ivy threat reports; BSD-3-Clause, OASIS
Open). Sources and licences: docs/cti.md. Nothing is fetched; the package is a dependency.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import stix2validator
from stix2patterns.v21.pattern import Pattern

from runbook_executors.cti.graph import GRAPH_TYPES
from runbook_executors.cti.indicators import Rejected, classify
from tests.unit.cti.helpers import run_chain

CORPUS_DIR = Path(stix2validator.__file__).parent
EXAMPLES = sorted(CORPUS_DIR.glob("schemas-2.*/examples/**/*.json"))
NOT_A_BUNDLE = CORPUS_DIR / "schemas-2.1/examples/interop-objectmarking-test.json"
"""A single campaign object, not a bundle: the input that must fail at once."""
CORPUS = [p for p in EXAMPLES if p != NOT_A_BUNDLE]
_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")


def _name(path: Path) -> str:
    return str(path.relative_to(CORPUS_DIR))


def _own_values(bundle: dict[str, Any]) -> dict[str, str]:
    """Every quoted pattern value and SCO value of the bundle that INGEST accepts as an
    indicator the graph looks up: normalised key -> the raw value. Found by a plain regex,
    not by the code under test."""
    raw: list[str] = []
    for obj in bundle.get("objects", []):
        if obj.get("type") == "indicator" and obj.get("pattern_type", "stix") == "stix":
            raw += _STRING.findall(obj["pattern"])
        if isinstance(obj.get("value"), str):
            raw.append(obj["value"])
        raw += [str(v) for v in (obj.get("hashes") or {}).values()]
    values: dict[str, str] = {}
    for value in raw:
        try:
            ind = classify(value)
        except Rejected:
            continue
        if ind.type in GRAPH_TYPES:
            values.setdefault(f"{ind.type}:{ind.value}", value)
    return values


def _listed(skipped: list[dict[str, str]]) -> str:
    return "\n".join(v for s in skipped for v in s.values())


def _chain(bundle: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    return run_chain(
        {"indicators": sorted(values.values()), "stixBundle": bundle},
        enrich=False,
        configs={"resolve_infrastructure": {"bundlePath": None}},
    )


@pytest.fixture(scope="module")
def corpus_runs() -> dict[str, tuple[dict[str, Any], dict[str, str], dict[str, Any]]]:
    runs = {}
    for path in CORPUS:
        bundle = json.loads(path.read_text())
        values = _own_values(bundle)
        runs[_name(path)] = (bundle, values, _chain(bundle, values))
    return runs


def test_the_corpus_is_installed_and_holds_both_versions() -> None:
    names = [_name(p) for p in CORPUS]
    assert len(EXAMPLES) == 14 and NOT_A_BUNDLE in EXAMPLES
    assert len(names) == 13, names
    assert all(json.loads(p.read_text())["type"] == "bundle" for p in CORPUS)
    assert sum(n.startswith("schemas-2.0/") for n in names) == 6
    assert "schemas-2.0/examples/threat-reports/poisonivy.json" in names


@pytest.mark.parametrize("name", [_name(p) for p in CORPUS])
def test_each_bundles_own_values_resolve_or_are_listed_as_skipped(
    name: str, corpus_runs: dict[str, Any]
) -> None:
    _, values, chain = corpus_runs[name]
    graph = chain["resolve_infrastructure"].output
    resolved = {r["indicator"] for r in graph["resolved"]}
    skipped_text = _listed(graph["skippedPatterns"])
    for key, raw in values.items():
        assert key in resolved or raw in skipped_text, f"{name}: {key} neither resolved nor listed"
    assert graph["unresolved"] == [] or all(
        values[u["indicator"]] in skipped_text for u in graph["unresolved"]
    )


@pytest.mark.parametrize("name", [_name(p) for p in CORPUS])
def test_every_comparison_of_every_pattern_is_used_or_listed(
    name: str, corpus_runs: dict[str, Any]
) -> None:
    """Per the reference grammar's own inspector: each comparison either yields a value that
    resolves to its indicator object, or appears in skippedPatterns for that object."""
    bundle, _, chain = corpus_runs[name]
    graph = chain["resolve_infrastructure"].output
    seeds_of = {r["indicator"]: {s["id"] for s in r["seeds"]} for r in graph["resolved"]}
    for obj in bundle.get("objects", []):
        if obj.get("type") != "indicator" or obj.get("pattern_type", "stix") != "stix":
            continue
        listed = _listed([s for s in graph["skippedPatterns"] if s["indicator"] == obj["id"]])
        comparisons = Pattern(obj["pattern"]).inspect().comparisons
        for obj_type, items in comparisons.items():
            for _, op, literal in items:
                value = literal.strip("'")
                try:
                    ind = classify(value)
                    key = f"{ind.type}:{ind.value}"
                except Rejected:
                    key = None
                used = key is not None and obj["id"] in seeds_of.get(key, set())
                in_network = "/" in value and obj_type.endswith("-addr")
                assert used or in_network or value in listed, (name, obj["id"], op, literal)


@pytest.mark.parametrize("name", [_name(p) for p in CORPUS])
def test_the_report_agrees_with_the_graph_and_cites_the_real_version(
    name: str, corpus_runs: dict[str, Any]
) -> None:
    _, values, chain = corpus_runs[name]
    graph = chain["resolve_infrastructure"].output
    miner = chain["match_campaigns"].output
    report = chain["generate_report"].output["report"]
    statement = report["attribution"]["statement"]
    codes = {u["code"] for u in report["residualUnknowns"]}
    version = "2.0" if name.startswith("schemas-2.0/") else "2.1"
    assert f"STIX {version} bundle (user supplied)" in {c["source"] for c in report["dataSources"]}
    if graph["reachedActors"]:
        assert "no_infrastructure_link" not in codes
        assert "No evidence linked" not in statement
    elif values:
        assert "no_infrastructure_link" in codes
    linked_campaigns = [c for c in miner["campaignMatches"] if c["contributions"][0]["value"] > 0]
    evidenced = {
        e["data"]["campaign"] for e in report["evidenceChain"] if e["type"] == "campaign_match"
    }
    assert evidenced == {c["id"] for c in linked_campaigns}
    if linked_campaigns and not miner["candidates"]:
        for campaign in linked_campaigns:
            assert campaign["name"] in statement
    if report["attribution"]["attributed"]:
        assert report["attribution"]["actor"]["name"] in statement
    if graph["skippedPatterns"]:
        assert "unevaluated_patterns" in codes


def test_poison_ivy_campaigns_are_stated_and_evidenced(corpus_runs: dict[str, Any]) -> None:
    for version in ("2.0", "2.1"):
        _, _, chain = corpus_runs[f"schemas-{version}/examples/threat-reports/poisonivy.json"]
        report = chain["generate_report"].output["report"]
        linked = [c for c in report["campaignMatches"] if c["linkedIndicators"]]
        assert len(linked) >= 2, [c["name"] for c in report["campaignMatches"]]
        assert "No evidence linked" not in report["attribution"]["statement"]
        kinds = [e["type"] for e in report["evidenceChain"]]
        assert kinds.count("campaign_match") == len(linked)
