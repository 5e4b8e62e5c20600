"""Reading bundles: STIX 2.0 and 2.1, 2.0 inline observables upgraded, refusals, validation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runbook_executors.base import NonRetryableError, invoke
from runbook_executors.cti.stix_bundle import BundleError, read_bundle, read_bundle_file
from tests.unit.cti.helpers import executor, make_ctx, run


def bundle_20_with_inline_observables() -> dict[str, Any]:
    """A STIX 2.0 bundle in the shape 2.0 publishes observations: inline, keyed objects."""
    return {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "spec_version": "2.0",
        "objects": [
            {
                "type": "observed-data",
                "id": "observed-data--b67d30ff-02ac-498a-92f9-32f845f448cf",
                "created": "2016-04-06T19:58:16.000Z",
                "modified": "2016-04-06T19:58:16.000Z",
                "first_observed": "2015-12-21T19:00:00Z",
                "last_observed": "2015-12-21T19:00:00Z",
                "number_observed": 1,
                "objects": {
                    "0": {"type": "ipv4-addr", "value": "198.51.100.3"},
                    "1": {"type": "domain-name", "value": "c2.example", "resolves_to_refs": ["0"]},
                    "2": {"type": "network-traffic", "dst_ref": "1", "protocols": ["tcp"]},
                },
            },
            {
                "type": "intrusion-set",
                "id": "intrusion-set--4e78f46f-a023-4e5f-bc24-71b3ca22ec29",
                "created": "2016-04-06T20:03:48.000Z",
                "modified": "2016-04-06T20:03:48.000Z",
                "name": "Inline Observer",
            },
            {
                "type": "sighting",
                "id": "sighting--ee20065d-2555-424f-ad9e-0f8428623c75",
                "created": "2016-04-06T20:08:31.000Z",
                "modified": "2016-04-06T20:08:31.000Z",
                "sighting_of_ref": "intrusion-set--4e78f46f-a023-4e5f-bc24-71b3ca22ec29",
                "observed_data_refs": ["observed-data--b67d30ff-02ac-498a-92f9-32f845f448cf"],
            },
        ],
    }


def test_a_20_bundle_is_read_as_20_and_its_inline_observables_become_objects() -> None:
    bundle = read_bundle(bundle_20_with_inline_observables(), source="t", validate_max_objects=0)
    assert bundle.spec_version == "2.0"
    assert bundle.upgraded_observables == 3
    by_type = {o["type"]: o for o in bundle.objects.values()}
    ip, domain, traffic = by_type["ipv4-addr"], by_type["domain-name"], by_type["network-traffic"]
    assert domain["resolves_to_refs"] == [ip["id"]]
    assert traffic["dst_ref"] == domain["id"]
    observed = by_type["observed-data"]
    assert "objects" not in observed
    assert sorted(observed["object_refs"]) == sorted([ip["id"], domain["id"], traffic["id"]])
    again = read_bundle(bundle_20_with_inline_observables(), source="t", validate_max_objects=0)
    assert sorted(again.objects) == sorted(bundle.objects)  # ids are stable across runs


def test_a_20_inline_address_resolves_and_the_citation_names_20() -> None:
    ingest = run("INGEST", input={"indicators": ["198.51.100.3", "c2.example"]})
    result = run(
        "LOOKUP_GRAPH",
        input={"stixBundle": bundle_20_with_inline_observables()},
        previous={"ingest_indicators": ingest.output},
    )
    assert result.success, result.error
    assert result.output["unresolved"] == []
    assert result.output["reachedActors"] == ["intrusion-set--4e78f46f-a023-4e5f-bc24-71b3ca22ec29"]
    assert [c.source for c in result.citations] == ["STIX 2.0 bundle (user supplied)"]
    assert result.output["bundle"]["specVersion"] == "2.0"


def test_versions_are_taken_from_the_bundle_then_the_objects() -> None:
    def objects(*versions: str | None) -> list[dict[str, Any]]:
        out = []
        for n, version in enumerate(versions):
            obj: dict[str, Any] = {"type": "identity", "id": f"identity--{n}", "name": "x"}
            if version:
                obj["spec_version"] = version
            out.append(obj)
        return out

    def version(data: dict[str, Any]) -> str:
        return read_bundle(data, source="t", validate_max_objects=0).spec_version

    assert version({"type": "bundle", "id": "b", "objects": objects("2.1", "2.1")}) == "2.1"
    assert version({"type": "bundle", "id": "b", "objects": objects(None)}) == "2.0"
    assert version({"type": "bundle", "spec_version": "2.0", "objects": objects(None)}) == "2.0"
    assert version({"type": "bundle", "id": "b", "objects": objects("2.0", "2.1")}) == "2.0+2.1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "bundle", "spec_version": "1.2", "objects": []}, "spec_version '1.2'"),
        (
            {"type": "bundle", "objects": [{"type": "x", "id": "x--1", "spec_version": "2.2"}]},
            "object x--1 has spec_version '2.2'",
        ),
        ({"type": "indicator", "id": "indicator--1"}, "not a STIX bundle"),
        ([], "not a STIX bundle"),
        ({"type": "bundle", "objects": {}}, "'objects' must be a list"),
    ],
)
def test_what_cannot_be_read_is_refused_with_the_reason(data: Any, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        read_bundle(data, source="t", validate_max_objects=0)


def test_bundle_errors_are_not_retryable(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text('{"hello": "world"}')
    with pytest.raises(NonRetryableError):
        read_bundle_file(path, validate_max_objects=0)
    ctx = make_ctx("LOOKUP_GRAPH", config={"bundlePath": str(path)})
    result = asyncio.run(invoke(executor("LOOKUP_GRAPH"), ctx))
    assert not result.success
    assert result.retryable is False
    assert "not a STIX bundle" in (result.error or "")
    bad_config = make_ctx("LOOKUP_GRAPH", config={"maxDepth": "deep"})
    refused = asyncio.run(invoke(executor("LOOKUP_GRAPH"), bad_config))
    assert (refused.success, refused.retryable) == (False, False)
    assert "config.maxDepth must be an integer" in (refused.error or "")


def test_schema_errors_are_reported_but_the_bundle_is_still_read() -> None:
    data = {
        "type": "bundle",
        "id": "bundle--0f6ec3a7-08bb-4c39-9b3c-b3bb6b4d0c25",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2016-04-06T20:03:48.000Z",
                "modified": "2016-04-06T20:03:48.000Z",
                "pattern": "[ipv4-addr:value = '198.51.100.3']",
                # pattern_type and valid_from are required in 2.1: the validator says so
            }
        ],
    }
    bundle = read_bundle(data, source="t", validate_max_objects=100)
    assert bundle.validation["checked"] is True
    assert bundle.validation["valid"] is False
    assert bundle.validation["errorCount"] >= 1
    assert any("valid_from" in e or "pattern_type" in e for e in bundle.validation["errors"])
    assert "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f" in bundle.objects


def test_validation_is_skipped_above_the_configured_size_and_says_so() -> None:
    data = bundle_20_with_inline_observables()
    bundle = read_bundle(data, source="t", validate_max_objects=1)
    assert bundle.validation == {
        "checked": False,
        "note": "not validated: 3 objects exceed config.validateMaxObjects (1)",
    }


def test_non_stix_pattern_types_are_listed_with_their_type() -> None:
    data = {
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--1",
                "pattern_type": "sigma",
                "pattern": "title: x",
            }
        ],
    }
    result = run("LOOKUP_GRAPH", input={"stixBundle": data})
    (skipped,) = result.output["skippedPatterns"]
    assert skipped["indicator"] == "indicator--1"
    assert skipped["patternType"] == "sigma"
    assert "not evaluated" in skipped["reason"]
