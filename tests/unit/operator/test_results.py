"""The result hand-over: a ConfigMap checked against the pod's pointer, or an inline result."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import tracemalloc
import zlib
from typing import Any

import pytest

from runbook_engine.contract import StepExecutorResult
from runbook_engine.limits import MIB
from runbook_operator.steps import results

OWNER = {"apiVersion": "runbook-operator.dev/v1alpha1", "kind": "RunbookExecution", "uid": "u1"}


def _cm(result: StepExecutorResult, name: str = "job-1-result") -> tuple[dict, results.Pointer]:  # type: ignore[type-arg]
    raw, sha = results.encode(result)
    cm = results.configmap(name, raw, sha, {"a": "b"}, OWNER)
    return cm, results.Pointer(name, sha, len(raw))


def _bomb(inflated: int) -> bytes:
    """gzip of `inflated` zero bytes, made in 1 MiB pieces (≈ 1/1000 of that size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MIB)
    parts = [packer.compress(chunk) for _ in range(inflated // MIB)]
    return b"".join([*parts, packer.flush()])


def _holding(packed: bytes, name: str = "job-1-result") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "ownerReferences": [OWNER]},
        "binaryData": {results.RESULT_KEY: base64.b64encode(packed).decode()},
    }


def test_a_result_round_trips_through_its_configmap() -> None:
    result = StepExecutorResult(success=True, output={"x": [1, 2, "é"]}, kpis={"n": 3})
    cm, pointer = _cm(result)
    assert cm["immutable"] is True
    assert results.read_configmap(cm, pointer, owner_uid="u1") == result


def test_a_configmap_that_does_not_match_the_pointer_is_refused() -> None:
    cm, pointer = _cm(StepExecutorResult(success=True, output={"verdict": "benign"}))
    forged, _ = _cm(StepExecutorResult(success=True, output={"verdict": "malicious!"}))
    with pytest.raises(results.ResultError, match="written by someone else"):
        results.read_configmap(forged, pointer)
    same_size, _ = _cm(StepExecutorResult(success=True, output={"verdict": "benigN"}))
    with pytest.raises(results.ResultError, match="does not match the pod's report"):
        results.read_configmap(same_size, pointer)
    assert results.read_configmap(cm, pointer).output == {"verdict": "benign"}


def test_a_configmap_not_owned_by_the_execution_or_not_pointed_to_is_refused() -> None:
    cm, pointer = _cm(StepExecutorResult(success=True))
    with pytest.raises(results.ResultError, match="not owned by this execution"):
        results.read_configmap(cm, pointer, owner_uid="someone-else")
    other, _ = _cm(StepExecutorResult(success=True), name="other-result")
    with pytest.raises(results.ResultError, match="not the one the pod points to"):
        results.read_configmap(other, pointer)


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    """64 MiB of zeros in 64 KiB of gzip: reading stops past the limit, never allocating it."""
    packed = _bomb(64 * MIB)
    assert len(packed) < 100_000
    cm = _holding(packed)
    tracemalloc.start()
    try:
        with pytest.raises(results.ResultError) as no_pointer:
            results.read_configmap(cm, output_limit=MIB)
        honest = results.Pointer("job-1-result", "0" * 64, 64 * MIB)
        with pytest.raises(results.ResultError) as too_big:
            results.read_configmap(cm, honest, output_limit=MIB)
        lying = results.Pointer("job-1-result", "0" * 64, 100)
        with pytest.raises(results.ResultError) as small:
            results.read_configmap(cm, lying, output_limit=MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < results.read_limit(MIB) * 1.25 + MIB, peak  # never the 64 MiB
    assert str(no_pointer.value).startswith(
        "result is more than 3145728 bytes, larger than the 3145728-byte result limit for the "
        "1048576-byte output limit ("
    )
    assert str(too_big.value).startswith(f"result is {64 * MIB} bytes, larger than")
    assert "holds more than the 100 bytes the pod reported" in str(small.value)


def test_inflate_stops_one_byte_past_the_bound() -> None:
    packed = gzip.compress(b"x" * 1000)
    assert results.inflate(packed, 1000, "r") == b"x" * 1000
    with pytest.raises(results.TooLarge, match="more than 999 bytes"):
        results.inflate(packed, 999, "r")


@pytest.mark.parametrize(
    ("packed", "reason"),
    [
        (gzip.compress(b"{}")[:-4], "truncated"),
        (gzip.compress(b"{}") + gzip.compress(b"{}"), "data after the gzip stream"),
        (zlib.compress(b"{}"), "unreadable result"),
    ],
)
def test_a_damaged_gzip_stream_is_unreadable(packed: bytes, reason: str) -> None:
    with pytest.raises(results.ResultError, match=reason):
        results.inflate(packed, 100, "r")


def test_a_binary_value_larger_than_any_configmap_is_refused_before_decoding() -> None:
    cm = _holding(b"\0" * (results.APISERVER_CONFIGMAP_BYTES + 3))
    with pytest.raises(results.ResultError, match="holds more than 1048576 bytes"):
        results.read_configmap(cm)


def test_a_pointer_must_name_its_attempts_configmap_and_fit_the_limit() -> None:
    ok = results.Pointer("job-7-result", "ab" * 32, 10)
    assert results.check_pointer(ok, "job-7", MIB) is None
    wrong = results.Pointer("job-8-result", "ab" * 32, 10)
    assert results.check_pointer(wrong, "job-7", MIB) == (
        "the pod points to ConfigMap 'job-8-result', not to its attempt's result ConfigMap "
        "'job-7-result'"
    )
    huge = results.Pointer("job-7-result", "ab" * 32, 700 * MIB)
    reason = results.check_pointer(huge, "job-7", MIB)
    assert reason is not None and reason.startswith(f"result is {700 * MIB} bytes, larger than")


def test_same_result_compares_owner_annotation_and_content() -> None:
    wanted, _ = _cm(StepExecutorResult(success=True, output={"v": 1}))
    assert results.same_result(wanted, wanted)
    other, _ = _cm(StepExecutorResult(success=True, output={"v": 2}))
    assert not results.same_result(other, wanted)
    unowned = {**wanted, "metadata": {**wanted["metadata"], "ownerReferences": []}}
    assert not results.same_result(unowned, wanted)
    # the right annotation over other content
    lying = {**other, "metadata": wanted["metadata"]}
    assert not results.same_result(lying, wanted)
    assert hashlib.sha256(b"").hexdigest() != results.stored_sha256(wanted)


def test_garbage_in_a_result_configmap_is_a_result_error() -> None:
    cm, _ = _cm(StepExecutorResult(success=True))
    cm["binaryData"][results.RESULT_KEY] = "not-base64-gzip!"
    with pytest.raises(results.ResultError, match="unreadable"):
        results.read_configmap(cm)
    cm["binaryData"][results.RESULT_KEY] = base64.b64encode(b"not gzip").decode()
    with pytest.raises(results.ResultError, match="unreadable"):
        results.read_configmap(cm)


def test_a_result_too_large_for_a_configmap_is_refused_with_its_size() -> None:
    import os

    noise = base64.b64encode(os.urandom(1_500_000)).decode()  # barely compresses
    raw, sha = results.encode(StepExecutorResult(success=True, output={"noise": noise}))
    with pytest.raises(results.ResultError, match=r"over what a ConfigMap holds"):
        results.configmap("x", raw, sha, {}, None)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (None, None),
        ("", None),
        ("plain text from a crashing image", None),
        ("[1, 2]", None),
        ('{"resultConfigMap": "r", "sha256": "ab", "bytes": 3}', results.Pointer("r", "ab", 3)),
    ],
)
def test_termination_messages(message: str | None, expected: object) -> None:
    assert results.parse_termination_message(message) == expected


def test_an_inline_result_from_a_custom_image_is_accepted() -> None:
    text = json.dumps({"success": True, "output": {"ok": 1}})
    parsed = results.parse_termination_message(text)
    assert isinstance(parsed, StepExecutorResult)
    assert parsed.output == {"ok": 1}


def test_a_broken_pointer_or_inline_result_says_why() -> None:
    with pytest.raises(results.ResultError, match="not a result pointer"):
        results.parse_termination_message('{"resultConfigMap": "r"}')
    with pytest.raises(results.ResultError, match="not a StepExecutorResult: success"):
        results.parse_termination_message('{"success": "maybe"}')
