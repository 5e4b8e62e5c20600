"""GENERATE_REPORT: no-evidence honesty, residual unknowns, signing and verification."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runbook_executors.cti.report_signing import (
    public_key_pem,
    sign_evidence,
    sign_report,
    verify_report,
)
from tests.unit.cti.helpers import ACTOR_NAME, example_bundle, example_input, run, run_chain


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signed_report(
    key: Ed25519PrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    key_file = tmp_path_factory.mktemp("keys") / "signing.pem"
    key_file.write_bytes(_pem(key))
    results = run_chain(
        example_input(), configs={"generate_report": {"signingKeyFile": str(key_file)}}
    )
    report: dict[str, Any] = results["generate_report"].output["report"]
    return report


def test_no_evidence_report_says_so_and_attributes_nobody() -> None:
    results = run_chain({"indicators": []})
    result = results["generate_report"]
    report = result.output["report"]
    assert report["attribution"]["attributed"] is False
    assert report["attribution"]["actor"] is None
    assert report["attribution"]["confidence"] == "none"
    assert "no attribution is made" in report["attribution"]["statement"]
    assert report["alternatives"] == []
    codes = [u["code"] for u in report["residualUnknowns"]]
    assert codes == ["no_indicators", "low_technique_coverage"]
    assert result.kpis["hasAttribution"] is False
    assert result.kpis["confidenceScore"] == 0.0
    assert result.kpis["residualUnknownCount"] == 2
    assert "no attribution is made" in result.output["markdown"]


def test_unlinked_indicators_do_not_invent_an_actor() -> None:
    results = run_chain({"indicators": ["198.51.100.250", "nothing-here.example"]})
    report = results["generate_report"].output["report"]
    assert report["attribution"]["attributed"] is False
    codes = {u["code"] for u in report["residualUnknowns"]}
    assert {"unresolved_indicators", "no_infrastructure_link", "low_technique_coverage"} <= codes
    unresolved = next(u for u in report["residualUnknowns"] if u["code"] == "unresolved_indicators")
    assert unresolved["items"] == ["domain:nothing-here.example", "ipv4:198.51.100.250"]


def test_technique_only_evidence_stays_below_threshold() -> None:
    results = run_chain({"indicators": ["T1566.001", "T1059.001", "T1071.001", "T1105"]})
    report = results["generate_report"].output["report"]
    assert report["attribution"]["attributed"] is False
    assert report["alternatives"], "ATT&CK groups should still be listed as leads"
    assert all(a["confidence"] == "low" for a in report["alternatives"])
    assert "below_threshold" in {u["code"] for u in report["residualUnknowns"]}


def test_competing_actors_within_margin_are_flagged() -> None:
    # One indicator for each fictional actor: neither clearly wins.
    results = run_chain(
        {"indicators": ["update.paper-lantern.example", "203.0.113.45"]},
        configs={
            "match_campaigns": {"minConfidence": 0.0},
            "generate_report": {"attributionThreshold": 0.1},
        },
    )
    report = results["generate_report"].output["report"]
    competing = [u for u in report["residualUnknowns"] if u["code"] == "competing_actors"]
    assert len(competing) == 1
    names = {c["name"] for c in results["match_campaigns"].output["candidates"][:2]}
    assert names == {"PAPER LANTERN", "GLASS HERON"}
    assert sorted(competing[0]["items"]) == sorted(
        c["id"] for c in results["match_campaigns"].output["candidates"][:2]
    )


def test_signed_report_verifies(signed_report: dict[str, Any], key: Ed25519PrivateKey) -> None:
    assert signed_report["signature"]["algorithm"] == "Ed25519"
    assert all("signature" in ev for ev in signed_report["evidenceChain"])
    assert verify_report(signed_report, public_key_pem(key)) == []
    # survives a JSON round trip (what runbookctl verify-report reads from disk)
    assert verify_report(json.loads(json.dumps(signed_report)), public_key_pem(key)) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["attribution"].update(confidenceScore=0.99), "modified after signing"),
        (lambda r: r["alternatives"].pop(), "modified after signing"),
        (lambda r: r["evidenceChain"][1]["data"].update(hops=1), "hash does not match data"),
        (
            lambda r: r["evidenceChain"][0].update(signature=r["evidenceChain"][1]["signature"]),
            "invalid signature",
        ),
        (
            lambda r: r["signature"].update(value=r["evidenceChain"][0]["signature"]),
            "signature is not valid",
        ),
        (lambda r: r.pop("signature"), "not signed"),
    ],
)
def test_tampering_is_detected(
    signed_report: dict[str, Any], key: Ed25519PrivateKey, mutate: Any, expected: str
) -> None:
    tampered = copy.deepcopy(signed_report)
    mutate(tampered)
    problems = verify_report(tampered, public_key_pem(key))
    assert problems, "tampering went unnoticed"
    assert any(expected in p for p in problems), problems


def test_wrong_key_is_rejected(signed_report: dict[str, Any]) -> None:
    other = Ed25519PrivateKey.generate()
    problems = verify_report(signed_report, public_key_pem(other))
    assert any("not the trusted key" in p and "keyId mismatch" in p for p in problems)
    assert any("signature is not valid" in p for p in problems)


def test_the_signature_ships_no_key_to_trust(signed_report: dict[str, Any]) -> None:
    """The key is named (keyId), never carried: a verifier must bring its own."""
    assert set(signed_report["signature"]) == {
        "algorithm",
        "canonicalization",
        "keyId",
        "digest",
        "value",
    }


def _forged(report: dict[str, Any], attacker: Ed25519PrivateKey) -> dict[str, Any]:
    """The report edited, every evidence item and the report re-signed with the attacker's key,
    which is shipped inside the signature the way earlier versions did."""
    forged = copy.deepcopy(report)
    forged["attribution"]["confidenceScore"] = 0.99
    for item in forged["evidenceChain"]:
        item["signature"] = sign_evidence(item, attacker)
    forged = sign_report(forged, attacker)
    raw = attacker.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    forged["signature"]["publicKey"] = base64.b64encode(raw).decode()
    return forged


def test_a_report_re_signed_with_a_key_shipped_inside_is_not_trusted(
    signed_report: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    attacker = Ed25519PrivateKey.generate()
    forged = _forged(signed_report, attacker)
    assert verify_report(forged, public_key_pem(attacker)) == []  # consistent on its own terms
    problems = verify_report(forged, public_key_pem(key))
    assert any("shipped with the report is not trusted" in p for p in problems), problems
    assert any("signature is not valid" in p for p in problems)
    assert sum("invalid signature" in p for p in problems) == len(forged["evidenceChain"])


def test_an_old_report_carrying_the_trusted_key_still_verifies(
    signed_report: dict[str, Any], key: Ed25519PrivateKey
) -> None:
    """Reports signed before the key stopped being shipped: the same key inside is harmless
    (the signature does not cover the `signature` member, so it was never part of the proof)."""
    old = copy.deepcopy(signed_report)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    old["signature"]["publicKey"] = base64.b64encode(raw).decode()
    assert verify_report(old, public_key_pem(key)) == []


def test_signing_key_from_env(monkeypatch: pytest.MonkeyPatch, key: Ed25519PrivateKey) -> None:
    monkeypatch.setenv("CTI_TEST_SIGNING_KEY", _pem(key).decode())
    results = run_chain(
        {"indicators": ["203.0.113.45"]},
        configs={
            "generate_report": {"signingKey": {"secretFrom": {"env": "CTI_TEST_SIGNING_KEY"}}}
        },
    )
    result = results["generate_report"]
    assert result.kpis["signed"] is True
    assert verify_report(result.output["report"], public_key_pem(key)) == []
    assert all(ev.signature for ev in result.evidence)


def test_signing_key_from_secret_file(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    (tmp_path / "k.pem").write_bytes(_pem(key))
    results = run_chain(
        {"indicators": ["203.0.113.45"]},
        configs={
            "generate_report": {"signingKey": {"secretFrom": {"file": str(tmp_path / "k.pem")}}}
        },
    )
    assert verify_report(results["generate_report"].output["report"], public_key_pem(key)) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"signingKey": {"secretFrom": {"env": "CTI_TEST_UNSET_VAR"}}}, "is not set"),
        ({"signingKeyFile": "/nonexistent/key.pem"}, "cannot read signing key"),
        ({"signingKey": "inline-not-allowed"}, "secretFrom"),
    ],
)
def test_configured_but_unusable_key_fails_instead_of_signing_nothing(
    monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], message: str
) -> None:
    monkeypatch.delenv("CTI_TEST_UNSET_VAR", raising=False)
    result = run("GENERATE_REPORT", config=config)
    assert not result.success
    assert message in (result.error or "")


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    result = run("GENERATE_REPORT", config={"signingKeyFile": str(tmp_path / "ec.pem")})
    assert not result.success and "not an Ed25519 key" in (result.error or "")


def test_unsigned_report_is_reported_as_unsigned() -> None:
    report = run_chain({"indicators": ["203.0.113.45"]})["generate_report"].output["report"]
    assert "signature" not in report
    assert verify_report(report, public_key_pem(Ed25519PrivateKey.generate())) == [
        "report is not signed (no signature member)"
    ]


def test_links_below_min_confidence_are_not_denied() -> None:
    chain = run_chain(example_input(), configs={"match_campaigns": {"minConfidence": 0.99}})
    assert chain["resolve_infrastructure"].output["reachedActors"]
    assert chain["match_campaigns"].output["candidates"] == []
    report = chain["generate_report"].output["report"]
    assert "none scored above the miner's minConfidence" in report["attribution"]["statement"]
    assert "no_infrastructure_link" not in {u["code"] for u in report["residualUnknowns"]}


def test_schema_errors_in_the_bundle_are_a_residual_unknown() -> None:
    bundle = example_bundle()
    for obj in bundle["objects"]:
        if obj["type"] == "indicator":
            obj.pop("valid_from", None)  # required by the 2.1 schema
    chain = run_chain({**example_input(), "stixBundle": bundle})
    report = chain["generate_report"].output["report"]
    (unknown,) = [u for u in report["residualUnknowns"] if u["code"] == "invalid_bundle"]
    assert "schema error" in unknown["description"]
    assert any("valid_from" in item for item in unknown["items"])
    assert report["attribution"]["actor"]["name"] == ACTOR_NAME  # still read and used
