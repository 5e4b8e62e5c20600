"""Signed checkpoints of an execution's audit chain (Ed25519), and the published public key.

A hash chain proves that nothing inside it was edited, inserted, deleted or moved, but a chain
cut short, or rolled back to an older prefix, still verifies. A checkpoint signs the chain's
length and head hash with the operator's private key, so a verifier holding the public key can
tell that entries up to that length existed and what they were (docs/audit.md says what it does
and does not prove). Pure, apart from reading a key file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from runbook_engine.canonical import canonical_json
from runbook_engine.timeutil import format_time, parse_time
from runbook_operator import names

CHECKPOINT_TYPE = "runbook-operator.dev/ledger-checkpoint/v1"
"""Signed with the body: a signature over anything else never verifies as a checkpoint."""
KEY_ID_DATA = "keyId"
PUBLIC_PEM_DATA = "public.pem"
KEY_COMPONENT = "ledger-key"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIGNED_FIELDS = frozenset({"type", "executionId", "count", "head", "time", "keyId", "keyRef"})


class SigningKeyError(ValueError):
    """A key that cannot be used (unreadable, not Ed25519); the message says which and why."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key: names the key in every checkpoint."""
    return hashlib.sha256(_raw_public(key)).hexdigest()


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SigningKeyError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"not an Ed25519 public key ({type(key).__name__})")
    return key


@dataclass(frozen=True, slots=True)
class KeyRef:
    """Where the operator published its public key, recorded in each checkpoint.

    Only a hint for people: it sits in the (editable) ledger, so verify never takes a key from
    it; it reports a keyRef that points anywhere but the trust anchor (ledger/anchor.py)."""

    namespace: str
    name: str

    def wire(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name}


class Signer:
    """The operator's Ed25519 private key; `key_ref` says where its public half is published."""

    def __init__(self, key: Ed25519PrivateKey, key_ref: KeyRef | None = None) -> None:
        self._key = key
        self.key_ref = key_ref
        self.key_id = key_id_of(key.public_key())
        self.public_pem = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @classmethod
    def generate(cls, key_ref: KeyRef | None = None) -> Signer:
        return cls(Ed25519PrivateKey.generate(), key_ref)

    @classmethod
    def mounted_or_generated(cls, path: str | Path) -> tuple[Signer, bool]:
        """The key at `path`, or a fresh one (and False) when nothing is there. A file that is
        there but unusable is an error: signing with another key would hide the mistake."""
        if not Path(path).exists():
            return cls.generate(), False
        return cls.from_pem_file(path), True

    @classmethod
    def from_pem_file(cls, path: str | Path, key_ref: KeyRef | None = None) -> Signer:
        """The key the chart's Secret mounts (PKCS#8 PEM, unencrypted)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"signing key {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(
                f"signing key {path}: not an unencrypted PEM private key ({exc})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key {path}: not Ed25519 ({type(key).__name__})")
        return cls(key, key_ref)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def signed_bytes(checkpoint: Mapping[str, Any]) -> bytes:
    """What the signature covers: the canonical JSON of every field except `signature`."""
    return canonical_json({k: v for k, v in checkpoint.items() if k != "signature"})


def make_checkpoint(
    *, execution_id: str, count: int, head: str, now: datetime, signer: Signer
) -> dict[str, Any]:
    """A signed checkpoint of the first `count` entries, whose last hash is `head`."""
    body: dict[str, Any] = {
        "type": CHECKPOINT_TYPE,
        "executionId": execution_id,
        "count": count,
        "head": head,
        "time": format_time(now),
        "keyId": signer.key_id,
    }
    if signer.key_ref is not None:
        body["keyRef"] = signer.key_ref.wire()
    body["signature"] = base64.b64encode(signer.sign(signed_bytes(body))).decode()
    return body


# -- checking a checkpoint: each rule names the field it checks ---------------------------------
def _check_type(cp: Mapping[str, Any]) -> str | None:
    return None if cp.get("type") == CHECKPOINT_TYPE else f"type: expected {CHECKPOINT_TYPE!r}"


def _check_count(cp: Mapping[str, Any]) -> str | None:
    count = cp.get("count")
    ok = type(count) is int and count >= 0
    return None if ok else f"count: expected a non-negative integer, got {count!r}"


def _check_hex(field: str) -> Callable[[Mapping[str, Any]], str | None]:
    def check(cp: Mapping[str, Any]) -> str | None:
        value = cp.get(field)
        ok = isinstance(value, str) and _HEX64.match(value) is not None
        return None if ok else f"{field}: expected 64 lowercase hex digits"

    return check


def _check_time(cp: Mapping[str, Any]) -> str | None:
    try:
        parse_time(str(cp.get("time")))
    except ValueError:
        return f"time: not an RFC 3339 time: {cp.get('time')!r}"
    return None


def _check_fields(cp: Mapping[str, Any]) -> str | None:
    extra = sorted(set(cp) - _SIGNED_FIELDS - {"signature"})
    missing = sorted(
        {"type", "executionId", "count", "head", "time", "keyId", "signature"} - set(cp)
    )
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    return f"unexpected field(s) {', '.join(extra)}" if extra else None


_RULES: tuple[Callable[[Mapping[str, Any]], str | None], ...] = (
    _check_fields,
    _check_type,
    _check_count,
    _check_hex("head"),
    _check_hex("keyId"),
    _check_time,
)


def checkpoint_problem(
    checkpoint: Any, public_key: Ed25519PublicKey, *, execution_id: str | None = None
) -> str | None:
    """Why `checkpoint` is not a valid checkpoint signed by `public_key`, or None."""
    if not isinstance(checkpoint, Mapping):
        return "not a JSON object"
    for rule in _RULES:
        problem = rule(checkpoint)
        if problem:
            return problem
    if execution_id is not None and checkpoint["executionId"] != execution_id:
        return f"executionId {checkpoint['executionId']!r} is not this chain's ({execution_id!r})"
    if checkpoint["keyId"] != key_id_of(public_key):
        return f"keyId {checkpoint['keyId'][:16]}… is not the public key's id ({key_id_of(public_key)[:16]}…)"
    try:
        signature = base64.b64decode(str(checkpoint["signature"]), validate=True)
        public_key.verify(signature, signed_bytes(checkpoint))
    except (binascii.Error, ValueError, InvalidSignature):
        return "signature: does not verify with the public key (checkpoint edited or forged)"
    return None


def public_key_configmap(
    name: str, namespace: str, signer: Signer, existing: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The public-key ConfigMap: the current key, plus every key published before (by id).

    Old keys stay so that checkpoints signed before a key rotation still verify.
    """
    data = {
        k: v for k, v in (existing or {}).items() if k.endswith(".pem") and k != PUBLIC_PEM_DATA
    }
    data[f"{signer.key_id}.pem"] = signer.public_pem
    data[PUBLIC_PEM_DATA] = signer.public_pem
    data[KEY_ID_DATA] = signer.key_id
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "runbook-operator",
                "app.kubernetes.io/managed-by": names.MANAGED_BY,
                "app.kubernetes.io/part-of": "runbook-operator",
                names.COMPONENT_LABEL: KEY_COMPONENT,
            },
        },
        "data": data,
    }


def published_key(data: Mapping[str, str], key_id: str) -> Ed25519PublicKey | None:
    """The key `key_id` from a public-key ConfigMap's data, if present and really that key."""
    pem = data.get(f"{key_id}.pem")
    if pem is None:
        return None
    key = load_public_pem(pem)
    return key if key_id_of(key) == key_id else None


def published_keys(data: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """Every usable `<keyId>.pem` of a public-key ConfigMap's data, by id (others skipped)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for name, pem in data.items():
        key_id = name.removesuffix(".pem")
        if name == key_id or not _HEX64.match(key_id) or not isinstance(pem, str):
            continue
        try:
            key = published_key({name: pem}, key_id)
        except SigningKeyError:
            continue
        if key is not None:
            keys[key_id] = key
    return keys
