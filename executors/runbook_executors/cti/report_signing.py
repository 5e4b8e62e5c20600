"""Ed25519 signing and verification of attribution reports (pure functions + key loading).

The signed message is the RFC 8785 canonical JSON of the report without its `signature`
member, so any change to any field (including the evidence chain) breaks the signature.
Each evidence item additionally carries its own content hash and signature, so an item
quoted out of the report can be checked on its own. `verify_report` is what
`runbookctl verify-report` calls.

Trust: a signature is checked only against a public key the verifier holds (pinned), never
against a key shipped with the signed data: whoever can change the report can also replace a
key inside it. The signature therefore names its key by `keyId` only; a `publicKey` member
(written by earlier versions) is never used, and one that is not the pinned key is reported.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runbook_executors.base import NonRetryableError, canonical_sha256
from runbook_executors.cti.datasources import resolve_path

ALGORITHM = "Ed25519"
CANONICALIZATION = "RFC8785"


class SigningKeyError(NonRetryableError, ValueError):
    """A signing key was configured but cannot be loaded."""


def report_digest(report: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical report without its `signature` member."""
    return canonical_sha256({k: v for k, v in report.items() if k != "signature"})


def _signed_bytes(report: dict[str, Any]) -> bytes:
    return bytes(rfc8785.dumps({k: v for k, v in report.items() if k != "signature"}))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable identifier of a public key: first 16 hex of SHA-256 over its raw bytes."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def evidence_message(item: dict[str, Any]) -> bytes:
    """What an evidence item's signature covers: its id, type and content hash."""
    return f"{item.get('id')}:{item.get('type')}:{item.get('hash')}".encode()


def sign_evidence(item: dict[str, Any], private_key: Ed25519PrivateKey) -> str:
    return base64.b64encode(private_key.sign(evidence_message(item))).decode("ascii")


def sign_report(report: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of `report` with a `signature` member over everything else."""
    unsigned = {k: v for k, v in report.items() if k != "signature"}
    public = private_key.public_key()
    signature = private_key.sign(_signed_bytes(unsigned))
    signed = dict(unsigned)
    signed["signature"] = {
        "algorithm": ALGORITHM,
        "canonicalization": CANONICALIZATION,
        "keyId": key_id(public),
        "digest": report_digest(unsigned),
        "value": base64.b64encode(signature).decode("ascii"),
    }
    return signed


def _load_public(public_key_pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("public key is not an Ed25519 key")
    return key


def verify_report(report: dict[str, Any], public_key_pem: bytes) -> list[str]:
    """Problems with a signed report (empty if the signature and every evidence hash hold)."""
    problems: list[str] = []
    try:
        public = _load_public(public_key_pem)
    except (ValueError, TypeError) as exc:
        return [f"cannot load public key: {exc}"]
    if not isinstance(report, dict):
        return ["report is not a JSON object"]
    sig = report.get("signature")
    if not isinstance(sig, dict):
        return ["report is not signed (no signature member)"]
    if sig.get("algorithm") != ALGORITHM:
        problems.append(f"unsupported signature algorithm {sig.get('algorithm')!r}")
    if sig.get("canonicalization") != CANONICALIZATION:
        problems.append(f"unsupported canonicalization {sig.get('canonicalization')!r}")
    if sig.get("keyId") != key_id(public):
        problems.append(
            f"report was signed with key {str(sig.get('keyId'))[:16]!r}, not the trusted key "
            f"{key_id(public)!r} (keyId mismatch)"
        )
    shipped = sig.get("publicKey")
    if shipped is not None and shipped != base64.b64encode(_raw_public(public)).decode("ascii"):
        problems.append(
            "signature.publicKey is not the trusted key: a key shipped with the report is "
            "not trusted and never used"
        )
    digest = report_digest(report)
    if sig.get("digest") != digest:
        problems.append("report content does not match the signed digest (modified after signing)")
    try:
        raw_sig = base64.b64decode(str(sig.get("value", "")), validate=True)
        public.verify(raw_sig, _signed_bytes(report))
    except (InvalidSignature, ValueError):
        problems.append("signature is not valid for this report and key")

    chain = report.get("evidenceChain", [])
    if not isinstance(chain, list):
        problems.append("evidenceChain is not a list")
        chain = []
    for index, item in enumerate(chain):
        if not isinstance(item, dict):
            problems.append(f"evidenceChain[{index}] is not an object")
            continue
        expected = canonical_sha256({"type": item.get("type"), "data": item.get("data")})
        if item.get("hash") != expected:
            problems.append(f"evidenceChain[{index}] ({item.get('id')}): hash does not match data")
        if item.get("id") != f"ev-{expected[:16]}":
            problems.append(f"evidenceChain[{index}] ({item.get('id')}): id does not match data")
        item_sig = item.get("signature")
        if item_sig is None:
            problems.append(f"evidenceChain[{index}] ({item.get('id')}): unsigned")
            continue
        try:
            public.verify(base64.b64decode(str(item_sig), validate=True), evidence_message(item))
        except (InvalidSignature, ValueError):
            problems.append(f"evidenceChain[{index}] ({item.get('id')}): invalid signature")
    return problems


def load_private_key_pem(data: bytes, origin: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot load signing key from {origin}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key from {origin} is not an Ed25519 key")
    return key


def load_signing_key(config: dict[str, Any]) -> Ed25519PrivateKey | None:
    """The key named by `signingKeyFile` or `signingKey: {secretFrom: {env|file}}`, if any.

    A configured but unreadable key is an error, never a silently unsigned report.
    """
    key_file = config.get("signingKeyFile")
    spec = config.get("signingKey")
    if key_file is None and spec is None:
        return None
    if key_file is not None:
        if not isinstance(key_file, str) or not key_file:
            raise SigningKeyError("config.signingKeyFile must be a path")
        path = resolve_path(key_file)
        try:
            return load_private_key_pem(path.read_bytes(), str(path))
        except OSError as exc:
            raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("secretFrom"), dict):
        raise SigningKeyError("config.signingKey must be {secretFrom: {env: NAME} | {file: PATH}}")
    source = spec["secretFrom"]
    if isinstance(source.get("env"), str):
        value = os.environ.get(source["env"])
        if not value:
            raise SigningKeyError(f"environment variable {source['env']} is not set")
        return load_private_key_pem(value.encode("utf-8"), f"env {source['env']}")
    if isinstance(source.get("file"), str):
        path = resolve_path(source["file"])
        try:
            return load_private_key_pem(path.read_bytes(), str(path))
        except OSError as exc:
            raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from None
    raise SigningKeyError("config.signingKey.secretFrom needs 'env' or 'file'")


def public_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
