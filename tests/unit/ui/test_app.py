"""The console's HTTP layer with a source in memory (Starlette's TestClient): security
headers, the write checks (token, same origin, loopback Host), escaping of everything from the
cluster, the apiserver's answer shown, and `--results DIR` on a real local run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from runbook_engine.enums import ControlAction
from runbook_engine.plan import Plan
from runbookctl.ui import actions, model
from runbookctl.ui.app import CSP, build_app
from runbookctl.ui.results import ResultsSource
from runbookctl.ui.source import Answer, Page

XSS = "<script>alert(1)</script>"
REPO = Path(__file__).resolve().parents[3]
PAUSED = Answer(200, "pause requested")


def _obj(name: str, phase: str, message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "soc", "uid": f"uid-{name}"},
        "spec": {"runbookRef": {"name": XSS}},
        "status": {
            "phase": phase,
            "progress": "1/2",
            "message": message,
            "steps": [{"stepId": "s1", "status": "FAILED", "attempt": 1, "message": XSS}],
        },
    }


class Memory:
    """A cluster in memory; records the control writes it was asked for."""

    read_only = False

    def __init__(self, answer: Answer = PAUSED) -> None:
        self.objects = {"x": _obj("x", "RUNNING", XSS)}
        self.answer = answer
        self.writes: list[tuple[str, str, ControlAction]] = []

    def whoami(self) -> str:
        return "alice"

    def namespaces(self) -> list[str]:
        return ["soc"]

    def list_executions(
        self, namespace: str, limit: int, token: str, filters: Mapping[str, str]
    ) -> Page:
        return Page(list(self.objects.values()), "")

    def execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    def pinned(self, namespace: str, obj: Mapping[str, Any]) -> tuple[Plan | None, str | None]:
        return None, "not pinned"

    def ledger(self, namespace: str, name: str, uid: str) -> tuple[list[Any], model.Badge]:
        entry = {
            "seq": 0,
            "timestamp": "2026-01-15T10:00:00.000Z",
            "eventType": "STEP_FAILED",
            "stepId": "s1",
            "actorId": XSS,
            "details": {"error": XSS},
        }
        return [entry, {"damaged": True}], model.badge_from_report(
            False, 1, True, "TAMPERED at entry 1"
        )

    def output(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[Any, str | None]:
        return None, "none"

    def pod_logs(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[str | None, str]:
        return XSS, "pod p"

    def control(self, namespace: str, name: str, action: ControlAction) -> Answer:
        self.writes.append((namespace, name, action))
        return self.answer

    def runbooks(self, namespace: str) -> tuple[list[dict[str, Any]], str | None]:
        return [], None

    def runbook(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def recent_executions(self, namespace: str, runbook: str) -> list[dict[str, Any]]:
        return []

    def start(
        self, namespace: str, runbook: str, spec: Mapping[str, Any]
    ) -> tuple[Answer, str | None]:
        return Answer(403, "forbidden"), None


def _client(source: Any) -> TestClient:
    return TestClient(build_app(source), base_url="http://127.0.0.1:8000")


def _token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_every_page_carries_the_strict_policy_and_escapes_the_cluster() -> None:
    client = _client(Memory())
    listing = client.get("/executions")
    assert listing.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert XSS not in listing.text and "&lt;script&gt;" in listing.text
    page = client.get("/executions/soc/x?step=s1")
    assert page.status_code == 200
    body = page.text
    assert body.count("<script") == 1  # our own /static/console.js, nothing else
    assert '<script src="/static/console.js" defer></script>' in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "TAMPERED at entry 1" in body and "(damaged)" in body
    assert client.get("/static/console.js").status_code == 200


def test_a_foreign_host_is_refused() -> None:
    client = TestClient(build_app(Memory()), base_url="http://evil.example:8000")
    assert client.get("/executions").status_code == 400


def test_writes_need_the_token_and_the_same_origin() -> None:
    source = Memory()
    client = _client(source)
    token = _token(client.get("/executions/soc/x").text)
    assert client.post("/executions/soc/x/actions/pause", data={}).status_code == 403
    cross = client.post(
        "/executions/soc/x/actions/pause",
        data={"csrf": token},
        headers={"origin": "http://evil.example"},
    )
    assert cross.status_code == 403 and source.writes == []
    done = client.post("/executions/soc/x/actions/pause", data={"csrf": token})
    assert done.status_code == 200 and "the apiserver answered 200" in done.text
    assert source.writes == [("soc", "x", ControlAction.PAUSE)]
    assert client.post("/executions/soc/x/actions/nope", data={"csrf": token}).status_code == 404


def test_the_apiservers_403_is_shown() -> None:
    source = Memory(Answer(403, 'Forbidden: user "bob" cannot patch'))
    client = _client(source)
    token = _token(client.get("/executions/soc/x").text)
    page = client.post("/executions/soc/x/actions/cancel", data={"csrf": token})
    assert "answered 403 Forbidden" in page.text and "cannot patch" in page.text


def test_buttons_follow_the_phase_and_the_registry() -> None:
    running = _obj("r", "RUNNING")
    paused = {**_obj("p", "PAUSED"), "spec": {"paused": True}}
    done = _obj("d", "COMPLETED")
    assert [a.key for a in actions.offered(running)] == ["pause", "cancel"]
    assert [a.key for a in actions.offered(paused)] == ["resume", "cancel"]
    assert [a.key for a in actions.offered(done)] == ["rerun"]
    assert actions.find("pause") is not None and actions.find("nope") is None


def test_results_folder_is_read_only(tmp_path: Path) -> None:
    generic = REPO / "examples" / "generic"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runbookctl.cli",
            "run",
            str(generic / "runbook.yaml"),
            "--input-file",
            str(generic / "input.json"),
            "--ledger",
            str(tmp_path / "ledger.jsonl"),
            "-o",
            "json",
            "--quiet",
            "--execution-id",
            "local-1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "local-1.json").write_text(proc.stdout)
    client = _client(ResultsSource(tmp_path))
    listing = client.get("/executions")
    assert "local-1" in listing.text and "COMPLETED" in listing.text
    page = client.get("/executions/local/local-1?step=summarise")
    assert page.status_code == 200
    assert 'id="ledger-badge"' in page.text and ">OK, unsigned<" in page.text
    assert "ranked" in page.text  # the step's output preview
    assert "action-pause" not in page.text
    assert client.post("/executions/local/local-1/actions/pause", data={}).status_code == 405
    # a tampered local ledger: the badge names the entry, as `runbookctl verify --ledger`
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    entry = json.loads(lines[1])
    entry["actorId"] = "someone-else"
    lines[1] = json.dumps(entry)
    (tmp_path / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    assert ">TAMPERED at entry 1<" in client.get("/executions/local/local-1").text


@pytest.mark.parametrize("path", ["/executions/soc/missing", "/runbooks/soc/missing"])
def test_missing_objects_are_404(path: str) -> None:
    assert _client(Memory()).get(path).status_code == 404
