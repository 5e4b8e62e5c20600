"""How a step's result travels from its pod to the operator and to downstream pods.

The pod writes the result (the executor contract's StepExecutorResult, canonical JSON,
gzip-compressed) into a ConfigMap named after its Job, and puts a small pointer with the
result's SHA-256 and size into its termination message, which the kubelet writes into the
pod's status. The operator follows a pointer only to the ConfigMap named for that Job's
attempt, owned by the execution, announcing a size within the result limit; it decompresses at
most that many bytes (a gzip bomb is refused, not inflated) and trusts the result only when the
content matches the pointer's size and hash. Downstream pods mount the upstream result ConfigMaps. An image that cannot create a
ConfigMap may instead write the whole result JSON (≤ 4 KiB) as its termination message; the
operator then stores it in the same ConfigMap form itself (docs/operator.md, result contract).
Pure: dicts in, dicts out.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from runbook_engine.canonical import canonical_json
from runbook_engine.contract import StepExecutorResult
from runbook_engine.limits import DEFAULT_MAX_OUTPUT_BYTES, OUTPUT_LIMIT_HOW, result_file_limit
from runbook_operator import names
from runbook_operator.steps.contract import RESULT_KEY

SHA_ANNOTATION = "runbook-operator.dev/sha256"
SIZE_ANNOTATION = "runbook-operator.dev/bytes"
CONFIGMAP_MAX_BYTES = 1_000_000
"""What a ConfigMap may hold after compression (the apiserver's limit is 1 MiB in total)."""
APISERVER_CONFIGMAP_BYTES = 1 << 20
"""No ConfigMap holds more: a longer binaryData value is refused before it is decoded."""


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


def read_limit(output_limit: int) -> int:
    """The largest result (uncompressed bytes) read for an attempt with this output limit: the
    output plus evidence and KPIs, the same rule as the local runner's result file."""
    return result_file_limit(output_limit)


def too_large(size: int | str, output_limit: int) -> str:
    """Why a result is refused unread (`size` may be "more than N")."""
    return (
        f"result is {size} bytes, larger than the {read_limit(output_limit)}-byte result limit "
        f"for the {output_limit}-byte output limit ({OUTPUT_LIMIT_HOW})"
    )


INFLATE_CHUNK = 64 * 1024


class TooLarge(ResultError):
    """The result inflates to more than it may."""


def inflate(packed: bytes, max_bytes: int, what: str) -> bytes:
    """gzip-decompressed `packed`, refused (TooLarge) as soon as it would exceed `max_bytes`.

    Decompressed in pieces of INFLATE_CHUNK bytes and stopped at the first byte past the
    bound: a gzip bomb (a few hundred KiB that inflate to gigabytes) costs at most about
    `max_bytes`, not the operator's memory.
    """
    inflater = zlib.decompressobj(wbits=31)  # gzip framing only
    out = bytearray()
    pending = packed
    try:
        while not inflater.eof:
            piece = inflater.decompress(pending, INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            if len(out) + len(piece) > max_bytes:
                raise TooLarge(f"{what}: result inflates to more than {max_bytes} bytes")
            out += piece
            if not piece and not pending:
                raise ResultError(f"{what}: unreadable result: the gzip stream is truncated")
    except zlib.error as exc:
        raise ResultError(f"{what}: unreadable result: {exc}") from None
    if inflater.unused_data:
        raise ResultError(f"{what}: unreadable result: data after the gzip stream")
    return bytes(out)


def packed_bytes(cm: Mapping[str, Any]) -> bytes:
    """The compressed result a ConfigMap holds (its size checked before decoding)."""
    name = (cm.get("metadata") or {}).get("name", "?")
    data = (cm.get("binaryData") or {}).get(RESULT_KEY)
    if not isinstance(data, str):
        raise ResultError(f"ConfigMap {name} has no {RESULT_KEY}")
    if len(data) > 4 * -(-APISERVER_CONFIGMAP_BYTES // 3):
        raise ResultError(f"ConfigMap {name} holds more than {APISERVER_CONFIGMAP_BYTES} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise ResultError(f"ConfigMap {name}: unreadable result: {exc}") from None


def check_pointer(pointer: Pointer, job: str, output_limit: int) -> str | None:
    """Why a pod's pointer cannot be followed (None: it may be). A pointer must name the
    ConfigMap of its own Job's attempt and announce a size within the limit."""
    expected = names.result_configmap(job)
    if pointer.configmap != expected:
        return (
            f"the pod points to ConfigMap {pointer.configmap!r}, not to its attempt's "
            f"result ConfigMap {expected!r}"
        )
    if pointer.size < 0:
        return f"the pod's pointer announces {pointer.size} bytes"
    if pointer.size > read_limit(output_limit):
        return too_large(pointer.size, output_limit)
    return None


def read_configmap(
    cm: Mapping[str, Any],
    pointer: Pointer | None = None,
    *,
    owner_uid: str | None = None,
    output_limit: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> StepExecutorResult:
    """The result held by a result ConfigMap, checked against the pod's pointer when given.

    Bounded: nothing larger than the result limit for `output_limit` (nor than the pointer
    announces) is decompressed. With `owner_uid`, the ConfigMap must be owned by that object
    (the execution): a ConfigMap someone else made under the expected name is refused."""
    meta = cm.get("metadata") or {}
    name = str(meta.get("name", "?"))
    if pointer is not None and name != pointer.configmap:
        raise ResultError(f"ConfigMap {name} is not the one the pod points to")
    if owner_uid is not None and not any(
        ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or []
    ):
        raise ResultError(
            f"result ConfigMap {name} is not owned by this execution: written by someone else"
        )
    limit = read_limit(output_limit)
    if pointer is not None and pointer.size > limit:
        raise ResultError(too_large(pointer.size, output_limit))
    bound = limit if pointer is None else pointer.size
    try:
        raw = inflate(packed_bytes(cm), bound, f"result ConfigMap {name}")
    except TooLarge:
        if pointer is None:
            raise ResultError(too_large(f"more than {limit}", output_limit)) from None
        raise ResultError(
            f"result ConfigMap {name} holds more than the {pointer.size} bytes the pod "
            "reported: written by someone else"
        ) from None
    if pointer is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if len(raw) != pointer.size or digest != pointer.sha256:
            raise ResultError(
                f"result ConfigMap {name} does not match the pod's report "
                f"({len(raw)} bytes, sha256 {digest[:16]}…; expected {pointer.size} bytes, "
                f"{pointer.sha256[:16]}…): written by someone else"
            )
    return parse_result(raw)


def stored_sha256(cm: Mapping[str, Any]) -> str | None:
    """The SHA-256 a result ConfigMap's annotation claims (what the operator wrote)."""
    value = ((cm.get("metadata") or {}).get("annotations") or {}).get(SHA_ANNOTATION)
    return value if isinstance(value, str) else None


def same_result(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """An existing result ConfigMap is the one the operator meant to write (`wanted`, from
    `configmap`): same owners, and annotation and content match the result's SHA-256."""
    sha, size = (
        stored_sha256(wanted),
        (wanted["metadata"].get("annotations") or {}).get(SIZE_ANNOTATION),
    )
    owners = {r.get("uid") for r in wanted["metadata"].get("ownerReferences") or []}
    have = {r.get("uid") for r in (existing.get("metadata") or {}).get("ownerReferences") or []}
    if sha is None or size is None or stored_sha256(existing) != sha or not owners <= have:
        return False
    try:
        raw = inflate(packed_bytes(existing), int(size), "existing result ConfigMap")
    except ResultError:
        return False
    return hashlib.sha256(raw).hexdigest() == sha


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
