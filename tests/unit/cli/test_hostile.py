"""Issue 10: hostile and oversized input through `runbookctl`, as a user (or attacker) runs it.

Every run here is a real `runbookctl` process under a 1 GiB address-space limit: none of these
inputs may make it die of memory, hang, or show a Python traceback.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.engine.test_documents import alias_bomb, nested
from tests.unit.helpers import pid_alive, wait_for

REPO = Path(__file__).resolve().parents[3]
RUNBOOKCTL = [sys.executable, "-m", "runbookctl.cli"]
GENERIC = REPO / "examples" / "generic"
ONE_GIB = 1024**3

pytestmark = pytest.mark.timeout(180)

HOSTILE_STEPS = '''
import os, subprocess, sys, time, pathlib

def big_output(ctx):
    return {"blob": "a" * int(ctx.config["bytes"])}

def chatter(ctx):
    chunk = b"x" * (1 << 20)
    for _ in range(int(ctx.config.get("megabytes", 300))):
        os.write(1, chunk)
    os._exit(5)

def long_error(ctx):
    raise RuntimeError("e" * 10_000_000)

def a_set(ctx):
    return {"tags": {"c", "a", "b"}}

def session_leader(ctx):
    """Start a grandchild in its own session (escapes the step's process group), then wait."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
    )
    out = pathlib.Path(ctx.config["dir"])
    (out / "pids").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(float(ctx.config.get("seconds", 300)))
    return {"done": True}

def score(ctx):
    return {"from": "runbook folder"}
'''


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ONE_GIB, ONE_GIB))


def ctl(
    *args: str, cwd: Path | None = None, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    """`runbookctl ARGS` under a 1 GiB address-space limit; never shows a traceback."""
    proc = subprocess.run(
        [*RUNBOOKCTL, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        preexec_fn=_limit_memory,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "MemoryError" not in proc.stderr
    return proc


def write_runbook(folder: Path, steps: list[dict[str, Any]], **spec: Any) -> Path:
    (folder / "hostile_steps.py").write_text(HOSTILE_STEPS)
    for step in steps:
        step.setdefault("actionType", "CUSTOM")
    doc = {"kind": "Runbook", "metadata": {"name": "hostile"}, "spec": {"steps": steps, **spec}}
    path = folder / "runbook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_json(path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = ctl("run", str(path), "-o", "json", "-q", *extra)
    return proc, json.loads(proc.stdout)


# -- YAML alias bomb, depth -------------------------------------------------------------------
@pytest.mark.parametrize("command", ["validate", "run"])
def test_alias_bomb_is_refused_by_validate_and_run(tmp_path: Path, command: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))
    started = time.monotonic()
    proc = ctl(command, str(path))
    assert proc.returncode == 2
    assert "alias bomb" in proc.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("depth", [300, 500])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_deep_config_is_refused_with_the_field(tmp_path: Path, depth: int, command: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(nested(depth))
    proc = ctl(command, str(path))
    assert proc.returncode == 1
    assert "spec.steps[0].config.x[0]" in proc.stderr and "nested deeper than" in proc.stderr


def test_deep_input_is_refused(tmp_path: Path) -> None:
    deep = json.dumps(json.loads("[" * 400 + "]" * 400))
    proc = ctl("run", str(GENERIC / "runbook.yaml"), "-i", f"x={deep}", "-q")
    assert proc.returncode == 2 and "input: nested deeper than" in proc.stderr


# -- outputs ----------------------------------------------------------------------------------
def test_a_50_mb_custom_output_fails_the_attempt_with_size_and_limit(tmp_path: Path) -> None:
    path = write_runbook(
        tmp_path,
        [{"id": "big", "config": {"function": "hostile_steps:big_output", "bytes": 50_000_000}}],
    )
    proc, result = run_json(path)
    assert proc.returncode == 1
    message = result["steps"][0]["message"]
    assert "result file is" in message and f"output limit of {1024 * 1024} bytes" in message
    assert "big" not in result["outputs"]


def test_output_limit_is_the_runbooks_and_the_shell_caps_it(tmp_path: Path) -> None:
    step = {"id": "mid", "config": {"function": "hostile_steps:big_output", "bytes": 2_000_000}}
    default = write_runbook(tmp_path, [dict(step)])
    proc, result = run_json(default, "--isolation", "inline")
    assert proc.returncode == 1
    assert f"over the limit of {1024 * 1024} bytes" in result["steps"][0]["message"]
    raised = write_runbook(tmp_path, [dict(step)], maxOutputBytes=4 * 1024 * 1024)
    proc, result = run_json(raised)
    assert proc.returncode == 0, result["steps"][0].get("message")
    capped, result = run_json(raised, "--max-output-bytes", "100000")
    assert capped.returncode == 1
    assert "output limit of 100000 bytes" in result["steps"][0]["message"]


def test_a_chain_of_default_transforms_stays_small(tmp_path: Path) -> None:
    steps = [{"id": "s0", "actionType": "TRANSFORM"}]
    steps += [
        {"id": f"s{i}", "actionType": "TRANSFORM", "dependsOn": [f"s{i - 1}"]} for i in range(1, 20)
    ]
    path = write_runbook(tmp_path, steps)
    proc, result = run_json(path, "--isolation", "inline", "-i", "seed=" + "x" * 1000)
    assert proc.returncode == 0 and result["phase"] == "COMPLETED"
    assert len(proc.stdout) < 200_000  # n=20 used to be 51.6 MB in one output alone


# -- unbounded reads --------------------------------------------------------------------------
def test_a_step_printing_800_mb_costs_no_memory(tmp_path: Path) -> None:
    """The runner used to hold a step's whole output to keep a 500-character tail (300 MB
    printed: 665 MB held); 800 MB under the 1 GiB limit only passes when it streams."""
    path = write_runbook(
        tmp_path,
        [{"id": "loud", "config": {"function": "hostile_steps:chatter", "megabytes": 800}}],
    )
    proc, result = run_json(path)
    assert proc.returncode == 1
    message = result["steps"][0]["message"]
    assert "exited with code 5 without a result" in message and len(message) < 1000


def test_a_10_mb_error_is_clipped_in_ledger_output_and_stderr(tmp_path: Path) -> None:
    path = write_runbook(
        tmp_path, [{"id": "err", "config": {"function": "hostile_steps:long_error"}}]
    )
    ledger = tmp_path / "ledger.jsonl"
    started = time.monotonic()
    proc = ctl("run", str(path), "--ledger", str(ledger))
    assert proc.returncode == 1
    assert time.monotonic() - started < 60
    assert ledger.stat().st_size < 100_000  # was 21 MB
    assert len(proc.stdout) + len(proc.stderr) < 100_000
    assert "characters cut" in ledger.read_text()


def test_bundle_path_dev_zero_is_refused_not_read(tmp_path: Path) -> None:
    path = write_runbook(
        tmp_path, [{"id": "g", "actionType": "LOOKUP_GRAPH", "config": {"bundlePath": "/dev/zero"}}]
    )
    proc, result = run_json(path)
    assert proc.returncode == 1
    assert "larger than" in result["steps"][0]["message"]


# -- crash-safe ledger ------------------------------------------------------------------------
def run_generic(ledger: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The generic example (12 ledger entries) appended to `ledger`."""
    example = (str(GENERIC / "runbook.yaml"), "-f", str(GENERIC / "input.json"), "-q")
    return ctl("run", *example, "--ledger", str(ledger), *extra)


def test_a_partial_last_line_does_not_swallow_the_next_run(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    first = run_generic(ledger)
    assert first.returncode == 0
    with ledger.open("a") as fh:
        fh.write('{"seq": 14, "logId": "crash')  # a crash in the middle of a write
    second = run_generic(ledger)
    assert second.returncode == 0
    verify = ctl("verify", "--ledger", str(ledger))
    assert verify.returncode == 1
    assert "TAMPERED at line 13" in verify.stdout  # the generic run writes 12 entries
    assert verify.stdout.count("OK ") == 2  # both chains still verify


def test_a_second_chain_under_the_same_execution_id_is_refused(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    assert run_generic(ledger, "--execution-id", "x-1").returncode == 0
    again = run_generic(ledger, "--execution-id", "x-1")
    assert again.returncode == 2 and "already holds a chain" in again.stderr
    assert ctl("verify", "--ledger", str(ledger)).returncode == 0


def test_verify_expect_count_and_head_and_missing_final_event(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    run_generic(ledger)
    lines = ledger.read_text().splitlines()
    head, count = json.loads(lines[-1])["hash"], len(lines)
    ok = ctl("verify", "--ledger", str(ledger), "--expect-head", head, "--expect-count", str(count))
    assert ok.returncode == 0
    ledger.write_text("\n".join(lines[:-2]) + "\n")  # the tail cut off
    cut = ctl(
        "verify", "--ledger", str(ledger), "--expect-head", head, "--expect-count", str(count)
    )
    assert cut.returncode == 1 and "truncated" in cut.stdout
    plain = ctl("verify", "--ledger", str(ledger))
    assert plain.returncode == 0 and "has no final event" in plain.stderr


def test_verify_reports_a_non_utf8_line_as_tampered(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    run_generic(ledger)
    data = ledger.read_bytes().splitlines(keepends=True)
    data[2] = data[2].replace(b'"', b"\xff", 1)
    ledger.write_bytes(b"".join(data))
    proc = ctl("verify", "--ledger", str(ledger))
    assert proc.returncode == 1 and "TAMPERED at line 3" in proc.stdout


# -- tracebacks where messages belong ---------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.json", "cannot read file"),
        (lambda d: (d / "bad.json").write_bytes(b'{"a": "\xff"}') and d / "bad.json", "not UTF-8"),
        (
            lambda d: (d / "list.json").write_text("[1, 2]") and d / "list.json",
            "one JSON/YAML object",
        ),
        (lambda d: (d / "dup.yaml").write_text("a: 1\na: 2\n") and d / "dup.yaml", "duplicate key"),
    ],
)
def test_bad_input_file_is_exit_2_with_a_reason(tmp_path: Path, make: Any, reason: str) -> None:
    proc = ctl("run", str(GENERIC / "runbook.yaml"), "--input-file", str(make(tmp_path)))
    assert proc.returncode == 2 and reason in proc.stderr


def test_ledger_pointing_at_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    proc = ctl(
        "run",
        str(GENERIC / "runbook.yaml"),
        "-f",
        str(GENERIC / "input.json"),
        "--ledger",
        str(tmp_path),
    )
    assert proc.returncode == 2 and "--ledger" in proc.stderr


def test_non_utf8_runbook_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_bytes(b"id: caf\xe9\nsteps: []\n")
    proc = ctl("validate", str(path))
    assert proc.returncode == 2 and "not UTF-8" in proc.stderr


def test_custom_returning_a_set_fails_instead_of_a_random_order(tmp_path: Path) -> None:
    path = write_runbook(tmp_path, [{"id": "s", "config": {"function": "hostile_steps:a_set"}}])
    proc, result = run_json(path)
    assert proc.returncode == 1
    assert "a set at output.tags" in result["steps"][0]["message"]


# -- module resolution ------------------------------------------------------------------------
@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_custom_modules_come_from_the_runbook_folder_not_the_cwd(
    tmp_path: Path, isolation: str
) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    (cwd / "triage_steps.py").write_text(
        "def score(ctx):\n    return {'hijacked': True}\n"
        "def summarise(ctx):\n    return {'hijacked': True}\n"
    )
    proc = ctl(
        "run",
        str(GENERIC / "runbook.yaml"),
        "-f",
        str(GENERIC / "input.json"),
        "-o",
        "json",
        "-q",
        "--isolation",
        isolation,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    outputs = json.loads(proc.stdout)["outputs"]
    assert outputs["summarise"]["ranked"] == ["T-1", "T-3", "T-4", "T-2"]


def test_a_module_next_to_the_runbook_does_not_shadow_a_library(tmp_path: Path) -> None:
    (tmp_path / "jsonschema.py").write_text("raise ImportError('shadowed!')\n")
    path = write_runbook(
        tmp_path,
        [
            {"id": "v", "actionType": "VALIDATE", "config": {"schema": {"type": "object"}}},
            {"id": "c", "dependsOn": ["v"], "config": {"function": "hostile_steps:score"}},
        ],
    )
    proc, result = run_json(path)
    assert proc.returncode == 0, result["steps"]
    assert result["outputs"]["c"] == {"from": "runbook folder"}


# -- signals and orphans ----------------------------------------------------------------------
def _start_run(tmp_path: Path, ledger: Path) -> tuple[subprocess.Popen[str], int, int]:
    path = write_runbook(
        tmp_path,
        [{"id": "s", "config": {"function": "hostile_steps:session_leader", "dir": str(tmp_path)}}],
    )
    proc = subprocess.Popen(
        [*RUNBOOKCTL, "run", str(path), "--ledger", str(ledger), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    pids = tmp_path / "pids"
    assert wait_for(pids.exists, 60), "the step never started"
    time.sleep(0.2)
    step, grandchild = (int(p) for p in pids.read_text().split())
    return proc, step, grandchild


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_cancels_records_itself_and_stops_every_process(
    tmp_path: Path, sig: signal.Signals
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    proc, step, grandchild = _start_run(tmp_path, ledger)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    cancelled = [e for e in entries if e["eventType"] == "EXECUTION_CANCELLED"]
    assert cancelled and cancelled[0]["actorId"] == sig.name
    assert wait_for(lambda: not pid_alive(step) and not pid_alive(grandchild), 15)


def test_sigkill_of_the_runner_stops_the_step_and_its_session_leader(tmp_path: Path) -> None:
    proc, step, grandchild = _start_run(tmp_path, tmp_path / "ledger.jsonl")
    proc.kill()
    proc.communicate(timeout=30)
    assert wait_for(lambda: not pid_alive(step) and not pid_alive(grandchild), 15)
