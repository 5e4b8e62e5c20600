"""The step pod's side: the context it builds from mounted files, and the output limit."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest

from runbook_engine.contract import StepExecutorResult
from runbook_operator.steps import pod, results

DEFINITION = {
    "id": "rb",
    "steps": [
        {"id": "a", "actionType": "TRANSFORM", "config": {"expressions": {"n": "input.n"}}},
        {
            "id": "b",
            "actionType": "TRANSFORM",
            "dependsOn": ["a"],
            "config": {"expressions": {"seen": "outputs.a.n"}},
            "timeoutMs": 5000,
        },
    ],
}
ENV = {"RUNBOOK_EXECUTION_ID": "ns/x/1234", "RUNBOOK_STEP_ID": "b", "RUNBOOK_ATTEMPT": "2"}


def _mount(tmp_path: Path) -> Path:
    (tmp_path / "definition").mkdir()
    (tmp_path / "definition" / "definition.json").write_text(json.dumps(DEFINITION))
    request = {"runbookRef": {"name": "rb"}, "input": {"n": 7}, "startedBy": "alice"}
    (tmp_path / "definition" / "request.json").write_text(json.dumps(request))
    (tmp_path / "upstream").mkdir()
    raw, _ = results.encode(StepExecutorResult(success=True, output={"n": 7}))
    (tmp_path / "upstream" / "a.json.gz").write_bytes(gzip.compress(raw))
    return tmp_path


def test_the_pod_builds_the_same_context_as_the_local_runner(tmp_path: Path) -> None:
    ctx = pod.pod_context(ENV, _mount(tmp_path))
    assert (ctx.execution_id, ctx.step_id, ctx.attempt) == ("ns/x/1234", "b", 2)
    assert ctx.input == {"n": 7}
    assert ctx.previous_outputs == {"a": {"n": 7}}
    assert ctx.config == {"expressions": {"seen": "outputs.a.n"}}
    assert ctx.timeout_ms == 5000
    assert ctx.started_by == "alice"


def test_the_pod_runs_the_executor_through_the_shared_entrypoint(tmp_path: Path) -> None:
    ctx = pod.pod_context(ENV, _mount(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    result = pod.run_step(ctx, work)
    assert result.success and result.output == {"seen": 7}


def test_an_output_over_the_limit_fails_with_size_and_limit() -> None:
    big = StepExecutorResult(success=True, output={"blob": "x" * 100})
    failed = pod.over_limit(big, 50)
    assert not failed.success
    assert failed.error is not None
    assert failed.error.startswith("output is 111 bytes, over the limit of 50 bytes (")
    assert pod.over_limit(big, 111) is big


def test_values_injected_from_secret_keys_are_scrubbed_from_the_result(tmp_path: Path) -> None:
    """Whatever an executor does with a variable it got from a Secret, the value does not reach
    the result ConfigMap (nor the status, ledger or Events built from it)."""
    definition = {
        "id": "rb",
        "steps": [
            {
                "id": "b",
                "actionType": "CUSTOM",
                "container": {
                    "env": [
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}},
                        {"name": "HOOK", "valueFrom": {"secretKeyRef": {"name": "s", "key": "u"}}},
                        {"name": "MODE", "value": "fast-mode"},
                        {
                            "name": "LEVEL",
                            "valueFrom": {"configMapKeyRef": {"name": "c", "key": "l"}},
                        },
                    ]
                },
            }
        ],
    }
    mount = _mount(tmp_path)
    (mount / "definition" / "definition.json").write_text(json.dumps(definition))
    env = {
        **ENV,
        "TOKEN": "tok-4f9a8b7c",
        "HOOK": "https://hooks.example/services/T0/B1/sekret-path?sig=abcdef12",
        "MODE": "fast-mode",
        "LEVEL": "debug-level",
    }
    _, step = pod.pod_step(env, mount)
    leaked = StepExecutorResult(
        success=False,
        error=f"failed with tok-4f9a8b7c at {env['HOOK']} (fast-mode, debug-level)",
        output={"echo": "tok-4f9a8b7c", "path": "services/T0/B1/sekret-path?sig=abcdef12"},
    )
    scrubbed = pod.scrub_injected(leaked, step, env)
    text = scrubbed.model_dump_json()
    assert "tok-4f9a8b7c" not in text and "sekret-path" not in text and "abcdef12" not in text
    assert "fast-mode" in text and "debug-level" in text  # plain and ConfigMap values stay
    assert scrubbed.output["echo"] == "[redacted]"
    assert pod.scrub_injected(leaked, None, env) is leaked


def test_an_upstream_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    mount = _mount(tmp_path)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join([*(packer.compress(bytes(1 << 20)) for _ in range(16)), packer.flush()])
    (mount / "upstream" / "a.json.gz").write_bytes(bomb)
    with pytest.raises(results.ResultError, match="inflates to more than 3146752 bytes"):
        pod.upstream_outputs(mount / "upstream", 1024 * 1024 + 512)
    env = {**ENV, "RUNBOOK_MAX_OUTPUT_BYTES": "1024"}
    with pytest.raises(ValueError, match=r"upstream a\.json\.gz: result inflates to more than"):
        pod.pod_context(env, mount)
