"""How a step's result travels from its pod to the operator and to downstream pods.

The pod writes the result (the executor contract's StepExecutorResult, canonical JSON,
gzip-compressed) into a ConfigMap named after its Job, and puts a small pointer with the
result's SHA-256 and size into its termination message, which the kubelet writes into the
pod's status. The operator trusts a result only when the ConfigMap's content matches the
pointer. Downstream pods mount the upstream result ConfigMaps. An image that cannot create a
ConfigMap may instead write the whole result JSON (≤ 4 KiB) as its termination message; the
operator then stores it in the same ConfigMap form itself (docs/operator.md, result contract).
Pure: dicts in, dicts out.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from runbook_engine.canonical import canonical_json
from runbook_engine.contract import StepExecutorResult
from runbook_operator.steps.contract import RESULT_KEY

SHA_ANNOTATION = "runbook-operator.dev/sha256"
SIZE_ANNOTATION = "runbook-operator.dev/bytes"
CONFIGMAP_MAX_BYTES = 1_000_000
"""What a ConfigMap may hold after compression (the apiserver's limit is 1 MiB in total)."""


class ResultError(ValueError):
    """A result that cannot be trusted or read; the message says why (it fails the attempt)."""


@dataclass(frozen=True, slots=True)
class Pointer:
    """The termination message of a step pod: where the result is and what it must hash to."""

    configmap: str
    sha256: str
    size: int

    def wire(self) -> dict[str, Any]:
        return {"resultConfigMap": self.configmap, "sha256": self.sha256, "bytes": self.size}


def encode(result: StepExecutorResult) -> tuple[bytes, str]:
    """Canonical JSON bytes of the result and their SHA-256 (raises ValueError for NaN etc.)."""
    raw = canonical_json(result.wire())
    return raw, hashlib.sha256(raw).hexdigest()


def configmap(
    name: str,
    raw: bytes,
    sha256: str,
    labels: dict[str, str],
    owner: dict[str, Any] | None,
) -> dict[str, Any]:
    """The result ConfigMap manifest (immutable: a result never changes once written)."""
    packed = gzip.compress(raw, mtime=0)
    if len(packed) > CONFIGMAP_MAX_BYTES:
        raise ResultError(
            f"result is {len(raw)} bytes ({len(packed)} compressed), over what a ConfigMap "
            f"holds ({CONFIGMAP_MAX_BYTES} bytes compressed)"
        )
    meta: dict[str, Any] = {
        "name": name,
        "labels": labels,
        "annotations": {SHA_ANNOTATION: sha256, SIZE_ANNOTATION: str(len(raw))},
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "immutable": True,
        "binaryData": {RESULT_KEY: base64.b64encode(packed).decode("ascii")},
    }


def parse_result(raw: bytes) -> StepExecutorResult:
    try:
        return StepExecutorResult.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ResultError(f"result is not a StepExecutorResult: {where}: {first['msg']}") from None


def read_configmap(cm: dict[str, Any], expected_sha256: str | None = None) -> StepExecutorResult:
    """The result held by a result ConfigMap, checked against the pod's pointer when given."""
    data = (cm.get("binaryData") or {}).get(RESULT_KEY)
    if not isinstance(data, str):
        raise ResultError(f"ConfigMap {cm['metadata']['name']} has no {RESULT_KEY}")
    try:
        raw = gzip.decompress(base64.b64decode(data))
    except (ValueError, OSError, EOFError) as exc:
        raise ResultError(f"ConfigMap {cm['metadata']['name']}: unreadable result: {exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise ResultError(
            f"result ConfigMap {cm['metadata']['name']} does not match the pod's report "
            f"(sha256 {digest[:16]}…, expected {expected_sha256[:16]}…): written by someone else"
        )
    return parse_result(raw)


def parse_termination_message(text: str | None) -> Pointer | StepExecutorResult | None:
    """A pointer (our pods), a whole inline result (custom images), or None (no message)."""
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if "resultConfigMap" in data:
        try:
            return Pointer(str(data["resultConfigMap"]), str(data["sha256"]), int(data["bytes"]))
        except (KeyError, TypeError, ValueError):
            raise ResultError(
                f"termination message is not a result pointer: {text[:200]}"
            ) from None
    if "success" in data:
        return parse_result(text.encode())
    return None
