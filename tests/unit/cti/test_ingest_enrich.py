"""INGEST and ENRICH_INTEL as executors: outputs, KPIs, citations and failure modes."""

from __future__ import annotations

from tests.unit.cti.helpers import run


def test_ingest_kpis_count_by_type_and_rejections() -> None:
    result = run(
        "INGEST",
        input={
            "indicators": [
                "198.51.100[.]7",
                "198.51.100.7",
                "evil[.]example",
                "T1105",
                "junk value",
            ],
            "text": "also 2001:db8::2 and CVE-2021-44228",
            "caseId": "CASE-1",
        },
    )
    assert result.success, result.error
    kpis = result.kpis
    assert kpis["indicatorCount"] == 5
    assert kpis["indicatorCount_ipv4"] == 1
    assert kpis["indicatorCount_ipv6"] == 1
    assert kpis["indicatorCount_domain"] == 1
    assert kpis["indicatorCount_cve"] == 1
    assert kpis["indicatorCount_attack_technique"] == 1
    assert kpis["indicatorCount_sha256"] == 0
    assert kpis["rejectedCount"] == 1
    assert result.output["rejected"] == [
        {"input": "junk value", "origin": "indicators[4]", "reason": "contains whitespace"}
    ]
    assert result.output["techniques"] == ["T1105"]
    assert result.output["caseId"] == "CASE-1"
    # every verdict cites its source: the PSL snapshot, with a version
    assert result.citations and "Public Suffix List" in result.citations[0].source
    assert result.citations[0].version and "list 20" in result.citations[0].version
    assert result.evidence[0].hash and result.evidence[0].id.startswith("ev-")


def test_ingest_empty_input_succeeds_with_zero() -> None:
    result = run("INGEST", input={})
    assert result.success
    assert result.kpis["indicatorCount"] == 0
    assert result.output["indicators"] == []


def test_ingest_bad_input_type_fails_the_attempt() -> None:
    result = run("INGEST", input={"indicators": {"not": "a list"}})
    assert not result.success
    assert "input.indicators must be a list" in (result.error or "")


def test_ingest_max_indicators_rejects_the_excess() -> None:
    result = run(
        "INGEST",
        input={"indicators": ["a.example", "b.example", "c.example"]},
        config={"maxIndicators": 2},
    )
    assert result.kpis["indicatorCount"] == 2
    assert [r["input"] for r in result.output["rejected"]] == ["c.example"]


def _enrich(indicators: list[str], config: dict[str, object] | None = None) -> dict[str, object]:
    ingest = run("INGEST", input={"indicators": indicators})
    result = run("ENRICH_INTEL", config=config or {}, previous={"ingest_indicators": ingest.output})
    assert result.success, result.error
    return {"output": result.output, "kpis": result.kpis, "citations": result.citations}


def test_enrich_geo_asn_for_a_public_ip_and_cites_geolite() -> None:
    res = _enrich(["8.8.8.8"], {"suppressKnownBenign": False})
    out = res["output"]
    assert isinstance(out, dict)
    entry = out["enrichments"][0]
    assert entry["geo"]["countryCode"] == "US"
    assert entry["geo"]["asnName"] == "GOOGLE"
    # 8.8.8.8 is a public resolver: flagged by a MISP warning list even when not suppressed
    assert "public-dns-v4" in [w["list"] for w in entry["warnings"]]
    sources = [c.source for c in res["citations"]]  # type: ignore[attr-defined]
    assert any("GeoLite2" in s for s in sources)
    assert any("public DNS" in s or "public-dns" in s.lower() for s in sources)


def test_enrich_suppresses_known_benign_and_keeps_documentation_ranges() -> None:
    res = _enrich(
        [
            "8.8.8.8",
            "update.example.com",
            "198.51.100.23",
            "lantern.example",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ]
    )
    out = res["output"]
    assert isinstance(out, dict)
    suppressed = {s["indicator"]: s["lists"] for s in out["suppressed"]}
    assert set(suppressed) == {
        "ipv4:8.8.8.8",
        "domain:update.example.com",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
    assert (
        "empty-hashes"
        in suppressed["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
    )
    kept = [f"{i['type']}:{i['value']}" for i in out["indicators"]]
    assert kept == ["ipv4:198.51.100.23", "domain:lantern.example"]
    # documentation range is annotated (informational list) but not dropped
    doc = next(e for e in out["enrichments"] if e["indicator"] == "ipv4:198.51.100.23")
    assert [w["list"] for w in doc["warnings"]] == ["rfc5735"]
    assert doc["warnings"][0]["suppresses"] is False
    kpis = res["kpis"]
    assert isinstance(kpis, dict)
    assert kpis["suppressedCount"] == 3
    assert kpis["retainedIndicatorCount"] == 2


def test_enrich_unknown_warning_list_is_a_config_error() -> None:
    ingest = run("INGEST", input={"indicators": ["8.8.8.8"]})
    result = run(
        "ENRICH_INTEL",
        config={"warningLists": ["no-such-list"]},
        previous={"ingest_indicators": ingest.output},
    )
    assert not result.success
    assert "no-such-list" in (result.error or "")


def test_each_enrichment_names_its_sources_with_versions() -> None:
    res = _enrich(["8.8.8.8", "login.example.co.uk"], {"suppressKnownBenign": False})
    out = res["output"]
    assert isinstance(out, dict)
    by_key = {e["indicator"]: e for e in out["enrichments"]}
    ip_sources = [s["source"] for s in by_key["ipv4:8.8.8.8"]["sources"]]
    assert ip_sources[0].startswith("GeoLite2")
    assert any(s.startswith("MISP warninglist") for s in ip_sources)
    assert all(s["version"] for s in by_key["ipv4:8.8.8.8"]["sources"])
    dom = by_key["domain:login.example.co.uk"]
    assert dom["domain"] == {"registeredDomain": "example.co.uk", "publicSuffix": "co.uk"}
    assert "Public Suffix List" in dom["sources"][0]["source"]
