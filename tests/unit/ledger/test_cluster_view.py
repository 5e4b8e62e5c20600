"""What the cluster commands print: rows from RunbookExecution objects and ledger entries."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from runbookctl.cluster_view import (
    age,
    duration,
    entries_table,
    execution_row,
    executions_table,
    step_row,
    steps_table,
)

from .helpers import chain_of

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
OBJ = {
    "metadata": {"name": "rapid-1", "creationTimestamp": "2026-01-15T11:55:00Z", "uid": "u"},
    "spec": {"runbookRef": {"name": "rapid-attribution"}, "paused": True},
    "status": {
        "phase": "PAUSED",
        "progress": "2/5",
        "message": "paused by ops",
        "steps": [
            {
                "stepId": "ingest",
                "status": "SUCCEEDED",
                "attempt": 1,
                "startedAt": "2026-01-15T11:55:01.000Z",
                "finishedAt": "2026-01-15T11:55:02.500Z",
                "jobName": "rapid-1-ingest-abc123-1",
            },
            {
                "stepId": "enrich",
                "status": "RUNNING",
                "attempt": 2,
                "startedAt": "2026-01-15T11:56:00.000Z",
                "message": "attempt 1 failed: exit code 3",
            },
            {"stepId": "report", "status": "PENDING", "attempt": 0},
        ],
    },
}


def _text(renderable: object) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_age_like_kubectl() -> None:
    assert age("2026-01-15T11:59:15Z", NOW) == "45s"
    assert age("2026-01-15T11:58:01Z", NOW) == "119s"
    assert age("2026-01-15T11:58:00Z", NOW) == "2m"
    assert age("2026-01-15T11:48:00Z", NOW) == "12m"
    assert age("2026-01-15T07:00:00Z", NOW) == "5h"
    assert age("2026-01-12T12:00:00Z", NOW) == "3d"
    assert age(None, NOW) == "-" and age("garbage", NOW) == "-"


def test_duration_of_finished_and_running_steps() -> None:
    assert duration("2026-01-15T11:59:58.500Z", "2026-01-15T12:00:00Z", NOW) == "1.5s"
    assert duration("2026-01-15T11:55:55Z", "2026-01-15T12:00:00Z", NOW) == "4m05s"
    assert duration("2026-01-15T09:57:00Z", None, NOW) == "2h03m"
    assert duration(None, None, NOW) == "-"


def test_execution_row_and_table() -> None:
    row = execution_row(OBJ, NOW)
    assert row == {
        "name": "rapid-1",
        "runbook": "rapid-attribution",
        "phase": "PAUSED",
        "progress": "2/5",
        "paused": "yes",
        "age": "5m",
    }
    fresh = execution_row({"metadata": {"name": "x"}, "spec": {}}, NOW)
    assert fresh["phase"] == "PENDING" and fresh["progress"] == "-" and fresh["age"] == "-"
    text = _text(executions_table([OBJ], NOW))
    assert "NAME" in text and "rapid-1" in text and "2/5" in text


def test_step_rows_and_table() -> None:
    steps = OBJ["status"]["steps"]  # type: ignore[index]
    assert step_row(steps[0], NOW) == {
        "step": "ingest",
        "status": "SUCCEEDED",
        "attempt": "1",
        "duration": "1.5s",
        "job": "rapid-1-ingest-abc123-1",
        "message": "",
    }
    assert step_row(steps[1], NOW)["duration"] == "4m00s"
    assert step_row(steps[2], NOW)["job"] == "-"
    text = _text(steps_table(OBJ, NOW))
    assert "rapid-1 · rapid-attribution · PAUSED · 2/5 · paused by ops" in text
    assert "attempt 1 failed: exit code 3" in text


def test_entries_table_shows_each_entry_and_damage() -> None:
    entries: list[object] = list(chain_of(3).entries)
    entries.append("{not json")
    text = _text(entries_table(entries, "ns/demo/01234567 · 4 entries"))
    assert "STEP_STARTED s2" in text and "system:test" in text
    assert "damaged line" in text


def _ctl(*args: str, env_kubeconfig: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbookctl.cli", *args],
        capture_output=True,
        text=True,
        env={"KUBECONFIG": env_kubeconfig, "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        check=False,
    )


def test_cluster_commands_without_a_cluster_fail_cleanly(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-kubeconfig")
    for args in (("get",), ("status", "x"), ("pause", "x"), ("logs", "x"), ("verify", "x")):
        proc = _ctl(*args, env_kubeconfig=missing)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_verify_needs_a_name_or_a_ledger(tmp_path: Path) -> None:
    missing = str(tmp_path / "none")
    neither = _ctl("verify", env_kubeconfig=missing)
    assert neither.returncode == 2 and "NAME" in neither.stderr
    both = _ctl("verify", "x", "--ledger", str(tmp_path / "l.jsonl"), env_kubeconfig=missing)
    assert both.returncode == 2


def test_result_source_names_the_job_or_says_why_not() -> None:
    from runbookctl.cluster_view import result_source

    obj = {
        "status": {
            "steps": [
                {"stepId": "a", "status": "SUCCEEDED", "jobName": "x-a-1", "outputHash": "h"},
                {"stepId": "b", "status": "FAILED", "jobName": "x-b-2"},
            ]
        }
    }
    assert result_source(obj, "a") == ("x-a-1", "h")
    with pytest.raises(LookupError, match="'b' is FAILED: it has no output"):
        result_source(obj, "b")
    with pytest.raises(LookupError, match=r"no step 'c' in the status \(steps: a, b\)"):
        result_source(obj, "c")
    with pytest.raises(LookupError, match="steps: none yet"):
        result_source({}, "a")
