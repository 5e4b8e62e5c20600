"""Signed attribution reports end to end: keygen, run with a signing key, verify-report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RUNBOOKCTL = [sys.executable, "-m", "runbookctl.cli"]

pytestmark = pytest.mark.timeout(300)


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNBOOKCTL, *args], capture_output=True, text=True)


def test_signed_report_verifies_and_tampering_is_caught(tmp_path: Path) -> None:
    example = tmp_path / "ra"
    shutil.copytree(REPO / "examples" / "rapid-attribution", example)
    assert ctl("keygen", "--out", str(tmp_path / "keys")).returncode == 0
    assert ctl("keygen", "--out", str(tmp_path / "keys")).returncode == 1  # never overwrites
    manifest = yaml.safe_load((example / "runbook.yaml").read_text())
    for step in manifest["spec"]["steps"]:
        if step["actionType"] == "GENERATE_REPORT":
            step["config"]["signingKeyFile"] = str(tmp_path / "keys" / "signing-key.pem")
    (example / "runbook.yaml").write_text(yaml.safe_dump(manifest))
    run = ctl(
        "run",
        str(example / "runbook.yaml"),
        "--input-file",
        str(example / "input.json"),
        "--legal-basis",
        "legitimate_interests",
        "--data-license",
        "internal_use_only",
        "-o",
        "json",
        "-q",
    )
    assert run.returncode == 0, run.stderr
    result_file = tmp_path / "result.json"
    result_file.write_text(run.stdout)
    public = str(tmp_path / "keys" / "signing-key.pub.pem")
    ok = ctl("verify-report", str(result_file), "--public-key", public)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: signature"), ok.stdout + ok.stderr

    result = json.loads(run.stdout)
    report = result["outputs"]["generate_report"]["report"]
    report["evidenceChain"][0]["hash"] = "0" * 64
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(report))
    bad = ctl("verify-report", str(tampered), "--public-key", public)
    assert bad.returncode == 1 and "INVALID" in bad.stdout
