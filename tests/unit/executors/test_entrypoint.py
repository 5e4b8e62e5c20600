"""`python -m runbook_executors`: the Job pod's command line, exit codes and result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runbook_engine.contract import StepExecutorResult
from runbook_executors import entrypoint
from runbook_executors.entrypoint import EXIT_FAILED, EXIT_SUCCESS, EXIT_USAGE, main

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]

CTX: dict[str, Any] = {
    "executionId": "exec-9",
    "runbookId": "rb-9",
    "stepId": "shape",
    "actionType": "TRANSFORM",
    "attempt": 1,
    "input": {"caseId": "CASE-1"},
    "config": {"expressions": {"case": "input.caseId", "up": "outputs.ingest.n"}},
    "previousOutputs": {"ingest": {"n": 3}},
}


def write(tmp_path: Path, data: Any, name: str = "ctx.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_run_success_writes_camel_case_result(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    assert main(["run", "--context", write(tmp_path, CTX), "--result", str(out)]) == EXIT_SUCCESS
    result = read(out)
    assert result == {
        "success": True,
        "output": {"case": "CASE-1", "up": 3},
        "kpis": result["kpis"],
        "evidence": [],
        "citations": [],
        "retryable": True,
    }
    assert set(result["kpis"]) == {"inputSize", "outputSize"}
    assert StepExecutorResult.model_validate(result).success


def test_failed_attempt_exits_1_with_result(tmp_path: Path) -> None:
    ctx = {
        **CTX,
        "actionType": "VALIDATE",
        "config": {"rules": [{"field": "input.x", "required": True}]},
    }
    out = tmp_path / "out.json"
    assert main(["run", "--context", write(tmp_path, ctx), "--result", str(out)]) == EXIT_FAILED
    result = read(out)
    assert result["success"] is False
    assert result["output"]["violations"][0]["path"] == "input.x"
    assert result["error"].startswith("validation failed with 1 violation: ")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read context file"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object, not list"),
        ({**CTX, "attempt": 0}, "attempt: Input should be greater than or equal to 1"),
        ({k: v for k, v in CTX.items() if k != "stepId"}, "stepId: Field required"),
        ({**CTX, "actionType": "NO_SUCH"}, "no executor for actionType 'NO_SUCH' (known: "),
    ],
)
def test_start_errors_exit_2_with_message_and_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, fragment: Any
) -> None:
    ctx_path = str(tmp_path / "absent.json") if content is None else write(tmp_path, content)
    out = tmp_path / "out.json"
    assert main(["run", "--context", ctx_path, "--result", str(out)]) == EXIT_USAGE
    assert fragment in capsys.readouterr().err
    result = read(out)
    assert result["success"] is False
    assert fragment in result["error"]


def test_action_type_flag_fills_missing_and_rejects_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = {k: v for k, v in CTX.items() if k != "actionType"}
    out = tmp_path / "out.json"
    args = ["run", "--context", write(tmp_path, ctx), "--result", str(out)]
    assert main([*args, "--action-type", "TRANSFORM"]) == EXIT_SUCCESS
    assert read(out)["output"]["case"] == "CASE-1"

    args = ["run", "--context", write(tmp_path, CTX), "--result", str(out)]
    assert main([*args, "--action-type", "VALIDATE"]) == EXIT_USAGE
    assert "--action-type VALIDATE does not match the context's actionType TRANSFORM" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv",
    [[], ["run"], ["run", "--context", "x"], ["frobnicate"], ["run", "--result", "y"]],
)
def test_bad_usage_exits_2(argv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "run" in capsys.readouterr().out


def test_list_prints_action_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == EXIT_SUCCESS
    names = capsys.readouterr().out.split()
    assert {"VALIDATE", "TRANSFORM", "NOTIFY", "CUSTOM"} <= set(names)
    assert names == sorted(names)


def test_context_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(CTX)))
    out = tmp_path / "out.json"
    assert main(["run", "--context", "-", "--result", str(out)]) == EXIT_SUCCESS
    assert read(out)["output"]["up"] == 3


def test_timeout_ms_is_left_to_the_scheduler(tmp_path: Path, module_dir: Path) -> None:
    """One owner for the step timeout: the scheduler (its shell stops the pod or process).
    An in-pod timer would race it with the same message."""
    (module_dir / "rb_slow.py").write_text(
        "import asyncio\nasync def slow(ctx):\n    await asyncio.sleep(0.3)\n    return {'done': 1}\n"
    )
    ctx = {**CTX, "actionType": "CUSTOM", "config": {"function": "rb_slow:slow"}, "timeoutMs": 50}
    out = tmp_path / "out.json"
    assert main(["run", "--context", write(tmp_path, ctx), "--result", str(out)]) == EXIT_SUCCESS
    assert read(out)["output"] == {"done": 1}


def test_unserialisable_output_becomes_failed_result(tmp_path: Path, module_dir: Path) -> None:
    (module_dir / "rb_weird.py").write_text("def f(ctx):\n    return {'x': object()}\n")
    ctx = {**CTX, "actionType": "CUSTOM", "config": {"function": "rb_weird:f"}}
    out = tmp_path / "out.json"
    assert main(["run", "--context", write(tmp_path, ctx), "--result", str(out)]) == EXIT_FAILED
    result = read(out)
    assert result["success"] is False
    assert "not JSON-serialisable" in result["error"]


def test_non_finite_numbers_are_written_as_null(tmp_path: Path, module_dir: Path) -> None:
    """The wire model maps NaN/Infinity to null, so the file stays strict JSON."""
    (module_dir / "rb_nan.py").write_text("def f(ctx):\n    return {'x': float('nan')}\n")
    ctx = {**CTX, "actionType": "CUSTOM", "config": {"function": "rb_nan:f"}}
    out = tmp_path / "out.json"
    assert main(["run", "--context", write(tmp_path, ctx), "--result", str(out)]) == EXIT_SUCCESS
    assert "NaN" not in out.read_text()
    assert read(out)["output"] == {"x": None}


def test_broken_builtin_import_is_a_start_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runbook_executors.registry as registry

    def broken(*, plugins: bool = True, needed: Any = None) -> Any:
        raise ImportError("cannot import name 'x' from 'runbook_executors.cti'")

    monkeypatch.setattr(registry, "default_registry", broken)
    out = tmp_path / "out.json"
    assert main(["run", "--context", write(tmp_path, CTX), "--result", str(out)]) == EXIT_USAGE
    message = "loading the built-in executors failed: ImportError: cannot import name 'x'"
    assert message in capsys.readouterr().err
    assert message in read(out)["error"]
    assert main(["list"]) == EXIT_USAGE
    assert message in capsys.readouterr().err


# -- atomic result file --------------------------------------------------------------------------
def test_result_replaces_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("stale")
    entrypoint.write_result(str(out), StepExecutorResult(success=True, output={"a": 1}))
    assert read(out)["output"] == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_failed_rename_keeps_old_result_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.json"
    out.write_text('{"old": true}')

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        entrypoint.write_result(str(out), StepExecutorResult(success=True))
    assert read(out) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_unwritable_result_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing_dir = tmp_path / "no" / "out.json"
    assert main(["run", "--context", write(tmp_path, CTX), "--result", str(missing_dir)]) == 2
    assert "cannot write result file" in capsys.readouterr().err


# -- the real command ----------------------------------------------------------------------------
def test_module_command_end_to_end(tmp_path: Path, cli: RunCli) -> None:
    out = tmp_path / "out.json"
    proc = cli("run", "--context", write(tmp_path, CTX), "--result", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # results go to the file only; logs to stderr
    assert "running TRANSFORM step shape" in proc.stderr
    assert read(out)["output"] == {"case": "CASE-1", "up": 3}

    proc = cli("run", "--context", str(tmp_path / "missing.json"), "--result", str(out))
    assert proc.returncode == 2
    assert f"cannot read context file {tmp_path / 'missing.json'}" in proc.stderr


def test_import_is_dependency_light() -> None:
    """A Job pod imports the entrypoint before it knows the step: no executor libraries yet."""
    code = (
        "import sys, runbook_executors.entrypoint as e;"
        "print(sorted(m for m in ('jsonschema', 'jmespath', 'urllib.request',"
        " 'runbook_executors.generic.validate') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert proc.stdout.strip() == "[]"
