"""LOOKUP_GRAPH: STIX pattern parsing, breadth-first depth, paths, unresolved and bundle loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runbook_executors.cti.stix import StixGraph
from runbook_executors.cti.stix_bundle import read_bundle
from runbook_executors.cti.stix_patterns import read_pattern
from tests.unit.cti.helpers import BUNDLE_PATH, run


def _rel(src: str, rtype: str, tgt: str) -> dict[str, Any]:
    return {
        "type": "relationship",
        "id": f"relationship--{src}-{rtype}-{tgt}",
        "relationship_type": rtype,
        "source_ref": src,
        "target_ref": tgt,
    }


def chain_bundle() -> dict[str, Any]:
    """ip -> infrastructure -> malware -> intrusion-set ACTOR-A (3 hops); A related-to B."""
    return {
        "type": "bundle",
        "id": "bundle--test",
        "objects": [
            {"type": "ipv4-addr", "id": "ipv4-addr--1", "value": "192.0.2.10"},
            {"type": "infrastructure", "id": "infrastructure--1", "name": "C2"},
            {"type": "malware", "id": "malware--1", "name": "TestRAT", "is_family": True},
            {
                "type": "intrusion-set",
                "id": "intrusion-set--a",
                "name": "ACTOR-A",
                "description": "FICTIONAL",
            },
            {"type": "intrusion-set", "id": "intrusion-set--b", "name": "ACTOR-B"},
            {
                "type": "attack-pattern",
                "id": "attack-pattern--1",
                "name": "Web Protocols",
                "external_references": [
                    {"source_name": "mitre-attack", "external_id": "T1071.001"}
                ],
            },
            {
                "type": "indicator",
                "id": "indicator--1",
                "pattern_type": "stix",
                "pattern": "[domain-name:value = 'c2.test.example' OR url:value = 'http://c2.test.example/x']",
            },
            _rel("infrastructure--1", "consists-of", "ipv4-addr--1"),
            _rel("malware--1", "beacons-to", "infrastructure--1"),
            _rel("intrusion-set--a", "uses", "malware--1"),
            _rel("intrusion-set--a", "related-to", "intrusion-set--b"),
            _rel("malware--1", "uses", "attack-pattern--1"),
            _rel("indicator--1", "indicates", "malware--1"),
        ],
    }


def _graph_step(
    indicators: list[str], config: dict[str, Any], bundle: dict[str, Any] | None = None
) -> dict[str, Any]:
    ingest = run("INGEST", input={"indicators": indicators})
    inp: dict[str, Any] = {"stixBundle": bundle} if bundle is not None else {}
    result = run(
        "LOOKUP_GRAPH", input=inp, config=config, previous={"ingest_indicators": ingest.output}
    )
    assert result.success, result.error
    return {"output": result.output, "kpis": result.kpis, "result": result}


@pytest.mark.parametrize(
    ("depth", "reaches_actor"), [(0, False), (1, False), (2, False), (3, True)]
)
def test_bfs_respects_max_depth(depth: int, reaches_actor: bool) -> None:
    out = _graph_step(["192.0.2.10"], {"maxDepth": depth}, chain_bundle())["output"]
    node_ids = {n["id"] for n in out["graph"]["nodes"]}
    assert ("intrusion-set--a" in node_ids) is reaches_actor
    assert max(n["depth"] for n in out["graph"]["nodes"]) <= depth
    assert bool(out["paths"]) is reaches_actor


def test_path_to_actor_lists_nodes_and_relationships_in_order() -> None:
    out = _graph_step(["192.0.2.10"], {"maxDepth": 3}, chain_bundle())["output"]
    (path,) = out["paths"]
    assert path["indicator"] == "ipv4:192.0.2.10"
    assert path["targetName"] == "ACTOR-A"
    assert path["hops"] == 3
    assert [n["id"] for n in path["nodes"]] == [
        "ipv4-addr--1",
        "infrastructure--1",
        "malware--1",
        "intrusion-set--a",
    ]
    assert [r["relationshipType"] for r in path["relationships"]] == [
        "consists-of",
        "beacons-to",
        "uses",
    ]


def test_intrusion_sets_are_not_expanded_so_related_actors_are_not_pulled_in() -> None:
    out = _graph_step(["192.0.2.10"], {"maxDepth": 10}, chain_bundle())["output"]
    assert out["reachedActors"] == ["intrusion-set--a"]
    assert "intrusion-set--b" not in {n["id"] for n in out["graph"]["nodes"]}


def test_techniques_reached_through_malware_are_observed() -> None:
    out = _graph_step(["192.0.2.10"], {"maxDepth": 3}, chain_bundle())["output"]
    assert [t["id"] for t in out["observedTechniques"]] == ["T1071.001"]
    assert [s["name"] for s in out["observedSoftware"]] == ["TestRAT"]


def test_indicator_pattern_match_and_unresolved_and_context() -> None:
    res = _graph_step(
        ["hxxp://c2.test[.]example/x", "198.51.100.200", "T1105", "CVE-2021-44228"],
        {"maxDepth": 2},
        chain_bundle(),
    )
    out = res["output"]
    resolved = {r["indicator"]: r["seeds"] for r in out["resolved"]}
    assert resolved == {
        "url:http://c2.test.example/x": [{"id": "indicator--1", "matchType": "exact"}]
    }
    assert out["unresolved"] == [
        {"indicator": "ipv4:198.51.100.200", "reason": "not found in the STIX bundle"}
    ]
    assert out["contextIndicators"] == ["attack_technique:T1105", "cve:CVE-2021-44228"]
    assert res["kpis"]["resolvedCount"] == 1 and res["kpis"]["unresolvedCount"] == 1
    # indicator(0) -> malware(1) -> actor(2)
    assert [p["hops"] for p in out["paths"]] == [2]


def test_no_bundle_leaves_everything_unresolved_with_a_reason() -> None:
    out = _graph_step(["192.0.2.10"], {})["output"]
    assert out["bundle"] is None
    assert out["unresolved"] == [
        {"indicator": "ipv4:192.0.2.10", "reason": "no STIX bundle supplied"}
    ]


def test_missing_bundle_file_fails_the_attempt(tmp_path: Path) -> None:
    result = run("LOOKUP_GRAPH", config={"bundlePath": str(tmp_path / "absent.json")})
    assert not result.success
    assert "cannot read STIX bundle" in (result.error or "")


def test_not_a_bundle_fails_the_attempt(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "indicator"}))
    result = run("LOOKUP_GRAPH", config={"bundlePath": str(bad)})
    assert not result.success and "not a STIX bundle" in (result.error or "")


def test_relative_bundle_path_resolves_against_runbook_base_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "bundle.json").write_text(json.dumps(chain_bundle()))
    monkeypatch.setenv("RUNBOOK_BASE_DIR", str(tmp_path))
    monkeypatch.chdir("/")
    ingest = run("INGEST", input={"indicators": ["192.0.2.10"]})
    result = run(
        "LOOKUP_GRAPH", config={"bundlePath": "kb/bundle.json"}, previous={"i": ingest.output}
    )
    assert result.success, result.error
    assert result.output["bundle"]["source"] == str(tmp_path / "kb" / "bundle.json")
    assert result.citations[0].version == f"sha256:{result.output['bundle']['sha256']}"


def test_relative_bundle_path_falls_back_to_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bundle.json").write_text(json.dumps(chain_bundle()))
    monkeypatch.delenv("RUNBOOK_BASE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    result = run("LOOKUP_GRAPH", config={"bundlePath": "bundle.json"})
    assert result.success, result.error


def test_parse_pattern_forms() -> None:
    reading = read_pattern(
        "[file:hashes.'SHA-256' = 'AA"
        + "b" * 62
        + "'] OR [file:hashes.MD5 = '"
        + "c0ffee" * 5
        + "ab"
        + "'] OR [ipv4-addr:value = '198.51.100.0/24'] OR [url:value = 'HTTP://X.Example/a']"
        " OR [email-message:from_ref.value = 'Bob@Mail.Example'] OR [domain-name:value LIKE '%.x']",
        "2.1",
    )
    terms = list(reading.terms)
    got = [(t.indicator_type, t.value) for t in terms]
    assert sorted(got) == sorted(
        [
            ("sha256", "aa" + "b" * 62),
            ("md5", "c0ffee" * 5 + "ab"),
            ("ipv4", "198.51.100.0/24"),
            ("url", "http://x.example/a"),
            ("email", "bob@mail.example"),
        ]
    )
    assert [t.network is not None for t in terms] == [t.indicator_type == "ipv4" for t in terms]
    assert [s.wire() for s in reading.skipped] == [
        {
            "comparison": "domain-name:value LIKE '%.x'",
            "reason": "operator LIKE is not evaluated (only =, IN and ISSUBSET on IP addresses)",
        }
    ]


def test_example_bundle_is_fictional_and_uses_documentation_ranges_only() -> None:
    bundle = json.loads(BUNDLE_PATH.read_text())
    graph = StixGraph.build(read_bundle(bundle, source="example", validate_max_objects=0))
    for obj in graph.objects.values():
        if obj["type"] in ("intrusion-set", "campaign", "malware", "infrastructure", "indicator"):
            assert "FICTIONAL" in obj.get("description", ""), obj["id"]
        if obj["type"] == "ipv4-addr":
            assert obj["value"].startswith(("192.0.2.", "198.51.100.", "203.0.113."))
        if obj["type"] == "ipv6-addr":
            assert obj["value"].startswith("2001:db8:")
        if obj["type"] == "domain-name":
            assert obj["value"].endswith(".example")


def test_max_nodes_caps_the_walk_and_says_so() -> None:
    out = _graph_step(["192.0.2.10"], {"maxDepth": 3, "maxNodes": 2}, chain_bundle())["output"]
    assert len(out["graph"]["nodes"]) == 2
    assert out["truncated"] == ["ipv4:192.0.2.10"]
    assert out["paths"] == []
