"""The result hand-over: a ConfigMap checked against the pod's pointer, or an inline result."""

from __future__ import annotations

import json

import pytest

from runbook_engine.contract import StepExecutorResult
from runbook_operator.steps import results


def _cm(result: StepExecutorResult) -> tuple[dict, results.Pointer]:  # type: ignore[type-arg]
    raw, sha = results.encode(result)
    cm = results.configmap("job-1-result", raw, sha, {"a": "b"}, None)
    return cm, results.Pointer("job-1-result", sha, len(raw))


def test_a_result_round_trips_through_its_configmap() -> None:
    result = StepExecutorResult(success=True, output={"x": [1, 2, "é"]}, kpis={"n": 3})
    cm, pointer = _cm(result)
    assert cm["immutable"] is True
    assert results.read_configmap(cm, pointer.sha256) == result


def test_a_configmap_that_does_not_match_the_pointer_is_refused() -> None:
    cm, pointer = _cm(StepExecutorResult(success=True, output={"verdict": "benign"}))
    forged, _ = _cm(StepExecutorResult(success=True, output={"verdict": "malicious"}))
    with pytest.raises(results.ResultError, match="does not match the pod's report"):
        results.read_configmap(forged, pointer.sha256)
    assert results.read_configmap(cm, pointer.sha256).output == {"verdict": "benign"}


def test_garbage_in_a_result_configmap_is_a_result_error() -> None:
    cm, _ = _cm(StepExecutorResult(success=True))
    cm["binaryData"][results.RESULT_KEY] = "not-base64-gzip!"
    with pytest.raises(results.ResultError, match="unreadable"):
        results.read_configmap(cm)


def test_a_result_too_large_for_a_configmap_is_refused_with_its_size() -> None:
    import base64
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
