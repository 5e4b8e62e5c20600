"""APPROVAL steps in `runbookctl run`: flags, a decisions file, no terminal, and a real
terminal (a pseudo-terminal) answering the rich prompt. docs/approvals.md."""

from __future__ import annotations

import getpass
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

RUNBOOKCTL = [sys.executable, "-m", "runbookctl.cli"]
pytestmark = pytest.mark.timeout(120)


def gated(tmp_path: Path, **config: Any) -> Path:
    doc = {
        "id": "gated",
        "steps": [
            {"id": "prepare", "actionType": "TRANSFORM", "config": {}},
            {
                "id": "gate",
                "actionType": "APPROVAL",
                "dependsOn": ["prepare"],
                "config": {"instructions": "Block the listed infrastructure?", **config},
            },
            {"id": "act", "actionType": "TRANSFORM", "dependsOn": ["gate"], "config": {}},
        ],
    }
    path = tmp_path / "runbook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(*args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [*RUNBOOKCTL, "run", *args, "-q", "-o", "json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout else {}), proc.stderr


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["stepId"]: s for s in result["steps"]}


def test_without_a_terminal_the_step_fails_naming_the_flags(tmp_path: Path) -> None:
    code, result, _ = run(str(gated(tmp_path)))
    assert code == 1
    gate = steps(result)["gate"]
    assert gate["status"] == "FAILED"
    assert "--approve gate" in gate["message"] and "--decisions FILE" in gate["message"]
    assert steps(result)["act"]["status"] == "SKIPPED"


def test_approve_flag_completes_and_the_ledger_records_the_decision(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    code, result, err = run(str(gated(tmp_path)), "--approve", "gate", "--ledger", str(ledger))
    assert code == 0, err
    assert result["outputs"]["gate"]["decisions"][0]["user"] == getpass.getuser()
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    kinds = [e["eventType"] for e in entries]
    assert "APPROVAL_REQUESTED" in kinds
    (decision,) = [e for e in entries if e["eventType"] == "APPROVAL_DECISION"]
    assert decision["details"]["counted"] is True
    assert decision["details"]["decision"] == "approve"
    verify = subprocess.run(
        [*RUNBOOKCTL, "verify", "--ledger", str(ledger)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout


def test_reject_flag_fails_the_step(tmp_path: Path) -> None:
    code, result, _ = run(str(gated(tmp_path)), "--reject", "gate")
    assert code == 1
    assert "rejected by" in steps(result)["gate"]["message"]


def test_a_flag_naming_no_approval_step_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run(str(gated(tmp_path)), "--approve", "prepare")
    assert code == 2
    assert "--approve prepare: no APPROVAL step 'prepare'" in err


def test_a_quorum_needs_a_decisions_file_and_says_so(tmp_path: Path) -> None:
    path = gated(tmp_path, required=2)
    code, result, _ = run(str(path), "--approve", "gate")
    assert code == 1
    assert "needs 2 approval(s)" in steps(result)["gate"]["message"]
    assert "--decisions FILE" in steps(result)["gate"]["message"]
    decisions = tmp_path / "decisions.yaml"
    decisions.write_text(
        yaml.safe_dump(
            {
                "decisions": [
                    {"step": "gate", "user": "alice", "groups": ["sre"], "decision": "approve"},
                    {"step": "gate", "user": "alice", "decision": "approve"},
                    {"step": "gate", "user": "bob", "decision": "approve", "comment": "ok"},
                ]
            }
        )
    )
    code, result, err = run(str(path), "--decisions", str(decisions))
    assert code == 0, err
    assert [d["user"] for d in result["outputs"]["gate"]["decisions"]] == ["alice", "bob"]


def test_a_bad_decisions_file_names_the_field(tmp_path: Path) -> None:
    decisions = tmp_path / "decisions.yaml"
    decisions.write_text(
        yaml.safe_dump({"decisions": [{"step": "gate", "user": "a", "decision": "maybe"}]})
    )
    code, _, err = run(str(gated(tmp_path)), "--decisions", str(decisions))
    assert code == 2
    assert "decisions[0].decision" in err


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while needle not in seen:
        left = end - time.monotonic()
        assert left > 0, f"no {needle!r} on the terminal; got:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)


@pytest.mark.parametrize(("answer", "phase"), [("approve", "COMPLETED"), ("reject", "FAILED")])
def test_on_a_terminal_the_prompt_shows_the_instructions_and_takes_the_answer(
    tmp_path: Path, answer: str, phase: str
) -> None:
    out = tmp_path / "result.json"
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*RUNBOOKCTL, "run", str(gated(tmp_path)), "-o", "json"],
        stdin=secondary,
        stdout=out.open("w"),
        stderr=secondary,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(secondary)
    seen = bytearray()
    try:
        _read_until(main, b"Block the listed infrastructure?", seen)
        _read_until(main, b"approve step gate?", seen)
        os.write(main, answer.encode() + b"\r")
        _read_until(main, b"comment", seen)
        os.write(main, b"looked at it\r")
        assert proc.wait(60) == (0 if phase == "COMPLETED" else 1)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    result = json.loads(out.read_text())
    assert result["phase"] == phase
    if phase == "COMPLETED":
        (decision,) = result["outputs"]["gate"]["decisions"]
        assert decision["comment"] == "looked at it"
        assert decision["user"] == getpass.getuser()
