"""The Argo CD health scripts on the fixtures captured from live e2e objects (issue 20).

Each kind's health_test.yaml is Argo CD's own test format (inputPath → healthStatus); the
verdicts in it were computed by gopher-lua, Argo CD's interpreter, when the fixtures were
captured (tests/e2e/test_gitops_health.py). Here the same scripts run in Lua 5.1 with Argo
CD's restricted libraries (tests/unit/argocd_lua.py) and must agree, message included.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import lupa.lua51
import pytest
import yaml

from runbook_operator.crd.runbook_status import runbook_status
from runbook_operator.execution.status import with_ready_false
from tests.unit import argocd_lua
from tests.unit.argocd_lua import KINDS, fixture, health, health_tests, kind_dir
from tests.unit.kstatus_rules import kstatus

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: What each captured case must be, independent of the recorded verdicts.
INTENDED = {
    "RunbookExecution": {
        "running": "Progressing",
        "paused": "Suspended",
        "completed": "Healthy",
        "failed": "Degraded",
        "cancelled": "Degraded",
        "rejected": "Degraded",
        "generation-behind": "Progressing",
        "no-status": "Progressing",
        "paused-after-restart": "Suspended",
    },
    "RunbookTrigger": {
        "armed": "Healthy",
        "suspended": "Suspended",
        "no-runbook": "Progressing",
        "invalid": "Degraded",
        "no-status": "Progressing",
    },
    "Runbook": {
        "valid": "Healthy",
        "invalid": "Degraded",
        "generation-behind": "Progressing",
        "no-status": "Progressing",
    },
}
CASES = [
    pytest.param(kind, test, id=f"{kind}/{test['inputPath']}")
    for kind in KINDS
    for test in health_tests(kind)
]


@pytest.mark.parametrize(("kind", "test"), CASES)
def test_health_test_yaml_holds_in_lua_5_1(kind: str, test: dict[str, Any]) -> None:
    assert health(kind, fixture(kind, test["inputPath"])) == test["healthStatus"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_case_is_captured_and_means_what_it_is_named(kind: str) -> None:
    recorded = {t["inputPath"]: t["healthStatus"]["status"] for t in health_tests(kind)}
    files = {f"testdata/{p.name}" for p in (kind_dir(kind) / "testdata").glob("*.yaml")}
    assert set(recorded) == files, "a fixture without a test, or a test without its fixture"
    assert recorded == {f"testdata/{case}.yaml": s for case, s in INTENDED[kind].items()}


@pytest.mark.parametrize("kind", KINDS)
def test_the_kstatus_transcription_agrees_with_the_real_library_on_the_fixtures(
    kind: str,
) -> None:
    doc = yaml.safe_load((kind_dir(kind) / "kstatus_test.yaml").read_text())
    verdicts = {t["inputPath"]: t["kstatus"]["status"] for t in doc["tests"]}
    assert set(verdicts) == {t["inputPath"] for t in health_tests(kind)}
    for path, verdict in verdicts.items():
        assert kstatus(fixture(kind, path)) == verdict, path


# -- branches no live phase reaches, built from the captured objects ------------------------
def execution(case: str) -> dict[str, Any]:
    return copy.deepcopy(fixture("RunbookExecution", f"testdata/{case}.yaml"))


def test_a_tampered_ledger_is_degraded_where_it_stood() -> None:
    obj = execution("running")
    gen = obj["metadata"]["generation"]
    obj["status"] = with_ready_false(obj["status"], "LedgerTampered", "entry 0 rewritten", gen, NOW)
    assert obj["status"]["phase"] == "RUNNING"
    assert health("RunbookExecution", obj) == {
        "status": "Degraded",
        "message": "LedgerTampered: entry 0 rewritten",
    }
    assert kstatus(obj) == "Failed"


def test_a_reconcile_error_is_progressing_and_says_why() -> None:
    obj = execution("running")
    gen = obj["metadata"]["generation"]
    obj["status"] = with_ready_false(obj["status"], "ReconcileError", "KubeError: 500", gen, NOW)
    assert health("RunbookExecution", obj) == {
        "status": "Progressing",
        "message": "ReconcileError: KubeError: 500",
    }
    assert kstatus(obj) == "InProgress"


def test_a_status_without_the_gitops_conditions_is_judged_by_its_phase() -> None:
    """Objects last written by an operator before these conditions existed."""
    for case, expected in (
        ("failed", "Degraded"),
        ("cancelled", "Degraded"),
        ("completed", "Healthy"),
        ("paused", "Suspended"),
        ("running", "Progressing"),
    ):
        obj = execution(case)
        obj["status"]["conditions"] = [
            c for c in obj["status"]["conditions"] if c["type"] not in ("Stalled", "Reconciling")
        ]
        assert health("RunbookExecution", obj)["status"] == expected, case
    obj = execution("failed")
    del obj["status"]["conditions"], obj["status"]["progress"]
    assert health("RunbookExecution", obj) == {
        "status": "Degraded",
        "message": f"FAILED: {obj['status']['message']}",
    }


def test_a_runbook_with_only_its_valid_condition_is_judged_by_it() -> None:
    for case, expected in (("valid", "Healthy"), ("invalid", "Degraded")):
        obj = copy.deepcopy(fixture("Runbook", f"testdata/{case}.yaml"))
        obj["status"]["conditions"] = [
            c for c in obj["status"]["conditions"] if c["type"] == "Valid"
        ]
        valid = obj["status"]["conditions"][0]
        expected_message = (
            valid["message"] if expected == "Healthy" else (f"InvalidGraph: {valid['message']}")
        )
        assert health("Runbook", obj) == {"status": expected, "message": expected_message}


def test_a_runbook_status_as_the_operator_computes_it_now() -> None:
    """The pure status function, not a capture: the scripts follow the code as it changes."""
    live = fixture("Runbook", "testdata/invalid.yaml")
    spec, gen = live["spec"], live["metadata"]["generation"]
    obj = {**live, "status": runbook_status(spec, gen, NOW)}
    assert health("Runbook", obj)["status"] == "Degraded"
    fixed = {**spec, "steps": [{**spec["steps"][0], "dependsOn": []}, spec["steps"][1]]}
    obj = {**live, "status": runbook_status(fixed, gen, NOW)}
    assert health("Runbook", obj) == {"status": "Healthy", "message": "2 step(s), graph checked"}


def test_the_sandbox_refuses_what_argocd_does_not_give_a_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A script using the string library or string methods fails here, as in Argo CD."""
    obj = execution("running")
    for body in (
        'return {status = string.upper("healthy"), message = ""}',
        'local s = "Healthy"; return {status = s:sub(1), message = ""}',
        "return {status = math.floor(1) .. '', message = ''}",
    ):
        folder = tmp_path / argocd_lua.GROUP / "RunbookExecution"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "health.lua").write_text(body)
        monkeypatch.setattr(argocd_lua, "CUSTOMIZATIONS", tmp_path)
        with pytest.raises(lupa.lua51.LuaError):
            health("RunbookExecution", obj)


def test_a_trigger_whose_new_generation_is_not_yet_armed_is_progressing() -> None:
    behind = copy.deepcopy(fixture("RunbookTrigger", "testdata/armed.yaml"))
    behind["metadata"]["generation"] = 2
    assert health("RunbookTrigger", behind) == {
        "status": "Progressing",
        "message": "Waiting for the operator to arm generation 2",
    }
    assert kstatus(behind) == "InProgress"


def test_a_suspended_trigger_with_an_invalid_spec_is_degraded_not_suspended() -> None:
    broken = copy.deepcopy(fixture("RunbookTrigger", "testdata/invalid.yaml"))
    broken["spec"]["suspend"] = True
    assert health("RunbookTrigger", broken)["status"] == "Degraded"
