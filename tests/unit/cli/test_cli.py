"""`runbookctl` as a user runs it: real processes, exit codes, files."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.conftest import WriteRunbook
from tests.unit.helpers import pid_alive, wait_for

REPO = Path(__file__).resolve().parents[3]
RUNBOOKCTL = [sys.executable, "-m", "runbookctl.cli"]
GENERIC = REPO / "examples" / "generic"

pytestmark = pytest.mark.timeout(120)


def ctl(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNBOOKCTL, *args], capture_output=True, text=True, check=check)


def test_run_json_output_and_ledger_verifies(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    proc = ctl(
        "run",
        str(GENERIC / "runbook.yaml"),
        "--input-file",
        str(GENERIC / "input.json"),
        "--ledger",
        str(ledger),
        "-o",
        "json",
        "--started-by",
        "tester",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["phase"] == "COMPLETED"
    assert [s["stepId"] for s in result["steps"]] == [
        "validate_input",
        "extract_fields",
        "score_tickets",
        "summarise",
    ]
    for step in result["steps"]:
        assert {"stepId", "status", "attempt", "startedAt", "finishedAt"} <= set(step)
    assert result["outputs"]["summarise"]["ranked"] == ["T-1", "T-3", "T-4", "T-2"]
    assert result["kpis"]["ticketCount"] == 4
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    # The OS user is who ran it (authenticated); --started-by is only what was claimed.
    started = entries[0]
    os_user = getpass.getuser()
    assert started["eventType"] == "EXECUTION_STARTED" and started["actorId"] == os_user
    assert started["details"]["startedBy"] == "tester"
    assert started["details"]["authenticatedUser"]["username"] == os_user
    assert started["details"]["authenticatedUser"]["source"] == "os"
    assert entries[-1]["hash"] == result["auditHead"]
    ok = ctl("verify", "--ledger", str(ledger))
    assert ok.returncode == 0 and ok.stdout.startswith("OK ")


def test_input_pairs_and_failed_exit_code(tmp_path: Path) -> None:
    proc = ctl("run", str(GENERIC / "runbook.yaml"), "-i", "tickets=[]", "-o", "json", "-q")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["phase"] == "FAILED"
    by_id = {s["stepId"]: s for s in result["steps"]}
    assert by_id["validate_input"]["status"] == "FAILED"
    assert by_id["summarise"]["status"] == "SKIPPED"
    assert "validate_input" in by_id["extract_fields"]["message"]


def test_verify_names_the_first_tampered_entry(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    ctl(
        "run",
        str(GENERIC / "runbook.yaml"),
        "--input-file",
        str(GENERIC / "input.json"),
        "--ledger",
        str(ledger),
        "-q",
        check=True,
    )
    lines = ledger.read_text().splitlines()
    entry = json.loads(lines[3])
    entry["actorId"] = "mallory"
    lines[3] = json.dumps(entry)
    ledger.write_text("\n".join(lines) + "\n")
    proc = ctl("verify", "--ledger", str(ledger))
    assert proc.returncode == 1
    assert "TAMPERED" in proc.stdout and "entry 3" in proc.stdout and ":4)" in proc.stdout
    # Deleting an entry is caught too.
    del lines[3]
    ledger.write_text("\n".join(lines) + "\n")
    assert ctl("verify", "--ledger", str(ledger)).returncode == 1


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            [
                {"id": "a", "actionType": "CUSTOM", "dependsOn": ["c"]},
                {"id": "b", "actionType": "CUSTOM", "dependsOn": ["a"]},
                {"id": "c", "actionType": "CUSTOM", "dependsOn": ["b"]},
            ],
            "dependency cycle: a -> c -> b -> a",
        ),
        (
            [{"id": "a", "actionType": "CUSTOM", "dependsOn": ["zz"]}],
            "spec.steps[0].dependsOn[0]: unknown step 'zz'",
        ),
        (
            [{"id": "a", "actionType": "NOPE"}],
            "spec.steps[0].actionType: unknown actionType 'NOPE'",
        ),
        (
            [{"id": "a", "actionType": "CUSTOM", "retryPolicy": {"maxAttempts": 0}}],
            "spec.steps[0].retryPolicy.maxAttempts",
        ),
        ([], "spec.steps: a runbook needs at least one step"),
    ],
)
def test_validate_reports_field_and_reason(
    tmp_path: Path, steps: list[dict[str, object]], expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"kind": "Runbook", "metadata": {"name": "bad"}, "spec": {"steps": steps}})
    )
    proc = ctl("validate", str(path))
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


def test_validate_ok_and_graph_formats() -> None:
    ok = ctl("validate", str(GENERIC / "runbook.yaml"))
    assert ok.returncode == 0 and "valid runbook 'ticket_triage'" in ok.stdout
    mer = ctl("graph", str(GENERIC / "runbook.yaml"), check=True).stdout
    assert mer.startswith("flowchart TD") and "s_validate_input --> s_extract_fields" in mer
    dot = ctl("graph", str(GENERIC / "runbook.yaml"), "--format", "dot", check=True).stdout
    assert dot.startswith('digraph "ticket_triage"') and '"extract_fields" -> "summarise";' in dot


def test_missing_file_is_a_clear_usage_error(tmp_path: Path) -> None:
    proc = ctl("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "cannot read file" in proc.stderr


def test_ctrl_c_cancels_cleanly_and_is_audited(write_runbook: WriteRunbook, workdir: Path) -> None:
    path = write_runbook([{"id": "slow", "config": {"function": "runner_steps:sleeper"}}])
    ledger = workdir / "ledger.jsonl"
    proc = subprocess.Popen(
        [*RUNBOOKCTL, "run", str(path), "--ledger", str(ledger), "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert wait_for(lambda: (workdir / "slow.1.pid").exists(), 30)
    proc.send_signal(signal.SIGINT)
    out, errout = proc.communicate(timeout=30)
    assert proc.returncode == 130, errout
    assert json.loads(out)["phase"] == "CANCELLED"
    kinds = [json.loads(line)["eventType"] for line in ledger.read_text().splitlines()]
    assert "EXECUTION_CANCELLED" in kinds and "STEP_CANCELLED" in kinds
    own, child = (int(x) for x in (workdir / "slow.1.pid").read_text().split())
    assert wait_for(lambda: not pid_alive(own) and not pid_alive(child), 10)
    assert ctl("verify", "--ledger", str(ledger)).returncode == 0
