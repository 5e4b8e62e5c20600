"""`runbookctl rerun --result` locally: real processes, a real ledger file, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbook_engine.canonical import canonical_json

RUNBOOKCTL = [sys.executable, "-m", "runbookctl.cli"]
pytestmark = pytest.mark.timeout(120)

GATE_SCHEMA = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "input": {
            "type": "object",
            "required": ["ok"],
            "properties": {"ok": {"const": True}},
        }
    },
}


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNBOOKCTL, *args], capture_output=True, text=True, check=False)


def write_runbook(path: Path, *, gate_schema: dict[str, Any] = GATE_SCHEMA) -> Path:
    """prepare → gate (fails unless input.ok is true) → finish; side stands alone."""
    doc = {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": "gated"},
        "spec": {
            "id": "gated",
            "steps": [
                {
                    "id": "prepare",
                    "actionType": "TRANSFORM",
                    "config": {"expressions": {"n": "input.n", "z": "input.name"}},
                },
                {
                    "id": "side",
                    "actionType": "TRANSFORM",
                    "config": {"expressions": {"n": "input.n"}},
                },
                {
                    "id": "gate",
                    "actionType": "VALIDATE",
                    "dependsOn": ["prepare"],
                    "config": {"schema": gate_schema},
                },
                {
                    "id": "finish",
                    "actionType": "TRANSFORM",
                    "dependsOn": ["gate"],
                    "config": {"expressions": {"ok": "input.ok"}},
                },
            ],
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def failed_parent(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    runbook = write_runbook(tmp_path / "runbook.yaml")
    ledger = tmp_path / "ledger.jsonl"
    (tmp_path / "input.json").write_text(json.dumps({"n": 3, "name": "é", "ok": False}))
    proc = ctl(
        "run",
        str(runbook),
        "-f",
        str(tmp_path / "input.json"),
        "--ledger",
        str(ledger),
        "--isolation",
        "inline",
        "-q",
        "-o",
        "json",
    )
    assert proc.returncode == 1, proc.stderr
    result = tmp_path / "parent.json"
    result.write_text(proc.stdout)
    doc = json.loads(proc.stdout)
    assert doc["phase"] == "FAILED"
    assert doc["runbook"] == str(runbook.resolve()) and doc["request"]["input"]["ok"] is False
    return result, ledger, doc


def chains(ledger: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in ledger.read_text().splitlines():
        entry = json.loads(line)
        out.setdefault(entry["executionId"], []).append(entry)
    return out


def test_rerun_from_a_result_file_runs_only_what_failed(tmp_path: Path) -> None:
    result, ledger, parent = failed_parent(tmp_path)
    proc = ctl(
        "rerun", "--result", str(result), "-i", "ok=true", "--isolation", "inline", "-q",
        "-o", "json", "--execution-id", "again-1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["phase"] == "COMPLETED"
    steps = {s["stepId"]: s for s in again["steps"]}
    assert steps["prepare"]["reusedFrom"] == parent["executionId"]
    assert steps["side"]["reusedFrom"] == parent["executionId"]
    assert "reusedFrom" not in steps["gate"] and "reusedFrom" not in steps["finish"]
    for sid in ("prepare", "side"):
        assert canonical_json(again["outputs"][sid]) == canonical_json(parent["outputs"][sid])
    assert again["outputs"]["finish"] == {"ok": True}
    entries = chains(ledger)
    new = entries["again-1"]
    started = [e["stepId"] for e in new if e["eventType"] == "STEP_STARTED"]
    assert started == ["gate", "finish"]
    link = new[0]["details"]["rerunOf"]
    assert new[0]["eventType"] == "EXECUTION_STARTED"
    assert link["executionId"] == parent["executionId"]
    assert link["ledgerHead"] == parent["auditHead"]
    assert link["ledgerCount"] == parent["auditEntries"]
    assert link["inputSource"] == "given" and link["definition"] == "pinned"
    assert link["run"] == ["gate", "finish"] and link["reused"] == ["prepare", "side"]
    assert [e["stepId"] for e in new if e["eventType"] == "STEP_REUSED"] == ["prepare", "side"]
    verified = ctl("verify", "--ledger", str(ledger))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count("OK ") == 2


def test_rerun_with_the_parents_input_records_so_and_fails_again(tmp_path: Path) -> None:
    result, ledger, _ = failed_parent(tmp_path)
    proc = ctl("rerun", "--result", str(result), "--only", "gate", "--isolation", "inline",
               "-q", "-o", "json", "--execution-id", "same-input")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    again = json.loads(proc.stdout)
    steps = {s["stepId"]: s for s in again["steps"]}
    assert steps["gate"]["status"] == "FAILED"
    assert steps["finish"]["status"] == "SKIPPED" and steps["finish"]["blockedBy"] == (
        "<not-selected>"
    )
    link = chains(ledger)["same-input"][0]["details"]["rerunOf"]
    assert link["inputSource"] == "parent" and link["only"] == ["gate"]


def test_a_tampered_parent_output_refuses_the_rerun(tmp_path: Path) -> None:
    result, ledger, parent = failed_parent(tmp_path)
    parent["outputs"]["prepare"]["n"] = 4
    result.write_text(json.dumps(parent))
    proc = ctl("rerun", "--result", str(result), "-i", "ok=true", "-q")
    assert proc.returncode == 1
    assert "re-run refused (OutputTampered)" in proc.stderr
    assert "steps.prepare" in proc.stderr and "changed after the step ran" in proc.stderr
    assert len(chains(ledger)) == 1  # nothing ran, nothing was written


def test_a_tampered_parent_ledger_refuses_the_rerun(tmp_path: Path) -> None:
    result, ledger, _ = failed_parent(tmp_path)
    lines = ledger.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["actorId"] = "mallory"
    lines[1] = json.dumps(entry)
    ledger.write_text("\n".join(lines) + "\n")
    proc = ctl("rerun", "--result", str(result), "-i", "ok=true", "-q")
    assert proc.returncode == 1
    assert "re-run refused (LedgerTampered)" in proc.stderr


def test_a_parent_still_running_is_refused(tmp_path: Path) -> None:
    result, _, parent = failed_parent(tmp_path)
    parent["phase"] = "RUNNING"
    result.write_text(json.dumps(parent))
    proc = ctl("rerun", "--result", str(result), "-q")
    assert proc.returncode == 1
    assert "re-run refused (ParentNotFinished)" in proc.stderr


def test_a_changed_runbook_needs_latest(tmp_path: Path) -> None:
    result, ledger, _ = failed_parent(tmp_path)
    # The gate now accepts any input: only --latest may run the runbook as it is now.
    write_runbook(tmp_path / "runbook.yaml", gate_schema={"type": "object"})
    refused = ctl("rerun", "--result", str(result), "-q")
    assert refused.returncode == 1
    assert "re-run refused (DefinitionChanged)" in refused.stderr and "--latest" in refused.stderr
    proc = ctl("rerun", "--result", str(result), "--latest", "--isolation", "inline", "-q",
               "-o", "json", "--execution-id", "latest-1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    link = chains(ledger)["latest-1"][0]["details"]["rerunOf"]
    assert link["definition"] == "latest" and link["inputSource"] == "parent"


def test_name_and_result_are_exclusive(tmp_path: Path) -> None:
    proc = ctl("rerun", "x", "--result", str(tmp_path / "r.json"))
    assert proc.returncode == 2 and "not both" in proc.stderr
    proc = ctl("rerun")
    assert proc.returncode == 2


def test_the_cluster_rerun_manifest_copies_the_request_but_not_the_input() -> None:
    from runbookctl.cluster import rerun_manifest

    parent = {
        "metadata": {"name": "case-1", "namespace": "soc", "uid": "u"},
        "spec": {
            "runbookRef": {"name": "gated"},
            "input": {"secret-ish": 1},
            "legalBasis": "consent",
            "dataLicenses": ["cc0"],
            "paused": True,
            "cancel": True,
        },
    }
    made = rerun_manifest(parent, rerun_from=["gate"], only=[], latest=True, new_input=None)
    assert made["metadata"] == {"generateName": "case-1-rerun-", "namespace": "soc"}
    assert made["spec"] == {
        "runbookRef": {"name": "gated"},
        "legalBasis": "consent",
        "dataLicenses": ["cc0"],
        "rerunOf": {"name": "case-1"},
        "from": ["gate"],
        "latest": True,
    }
    given = rerun_manifest(parent, rerun_from=[], only=["x"], latest=False, new_input={"ok": 1})
    assert given["spec"]["input"] == {"ok": 1} and given["spec"]["only"] == ["x"]
    assert "from" not in given["spec"] and "latest" not in given["spec"]
