"""NOTIFY against a real HTTP server on 127.0.0.1: delivery, retries, timeouts, Slack, secrets."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic.notify import NotifyStepExecutor, redact_url
from runbook_executors.secrets import ENV_HINT

MakeCtx = Callable[..., StepExecutorContext]
RunStep = Callable[[BaseStepExecutor, StepExecutorContext], StepExecutorResult]
Run = Callable[..., StepExecutorResult]

SECRET = "tok-8c1f3e-very-secret-value"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Hook:
    """A webhook server: replies follow `script` (status or (status, delay)), then 200."""

    server: ThreadingHTTPServer
    script: list[int | tuple[int, float]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def hook(no_proxy: None) -> Iterator[Hook]:
    state: dict[str, Hook] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            current = state["hook"]
            current.received.append(
                Received(self.path, dict(self.headers.items()), json.loads(raw or b"null"))
            )
            step = current.script.pop(0) if current.script else 200
            status, delay = step if isinstance(step, tuple) else (step, 0.0)
            if delay:
                time.sleep(delay)
            self.send_response(status)
            if status in (301, 302, 307, 308):
                self.send_header("Location", f"{current.url}/elsewhere")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true, "echo": "' + SECRET.encode() + b'"}')

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["hook"] = Hook(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state["hook"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def run(run_step: RunStep, make_ctx: MakeCtx) -> Run:
    def go(config: dict[str, Any], **kw: Any) -> StepExecutorResult:
        kw.setdefault("previous_outputs", {"ingest": {"indicators": [1], "count": 1}})
        return run_step(NotifyStepExecutor(), make_ctx("NOTIFY", config=config, **kw))

    return go


def wire_text(result: Any) -> str:
    return json.dumps(result.wire())


def test_success_default_body(hook: Hook, run: Run) -> None:
    result = run({"url": f"{hook.url}/hooks/abc", "message": "done {stepId} of {executionId}"})
    assert result.success, result.error
    assert result.output == {
        "delivered": True,
        "status": 200,
        "url": hook.url,
        "attempts": 1,
        "format": "json",
    }
    assert result.kpis == {"notificationsSent": 1, "attempts": 1}
    (evidence,) = result.evidence
    assert evidence.type == "notification"
    assert evidence.data == {
        "executionId": "exec-1",
        "stepId": "step-1",
        "url": hook.url,
        "status": 200,
        "format": "json",
    }
    (request,) = hook.received
    assert request.path == "/hooks/abc"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {
        "executionId": "exec-1",
        "runbookId": "rb-1",
        "stepId": "step-1",
        "attempt": 1,
        "upstream": {"ingest": ["count", "indicators"]},  # keys only, never upstream values
        "message": "done step-1 of exec-1",
    }


def test_custom_body_and_headers(hook: Hook, run: Run) -> None:
    result = run({"url": hook.url, "body": {"x": [1, 2]}, "headers": {"X-Team": "cti"}})
    assert result.success
    assert hook.received[0].body == {"x": [1, 2]}
    assert hook.received[0].headers["X-Team"] == "cti"


def test_retry_after_500_then_200(hook: Hook, run: Run) -> None:
    hook.script = [500]
    result = run({"url": hook.url, "backoffSeconds": 0.01})
    assert result.success, result.error
    assert result.output["attempts"] == 2
    assert len(hook.received) == 2


def test_gives_up_after_retries(hook: Hook, run: Run) -> None:
    hook.script = [503, 502, 500, 200]
    result = run({"url": hook.url, "retries": 2, "backoffSeconds": 0})
    assert not result.success
    assert result.output["delivered"] is False
    assert result.output["attempts"] == 3
    assert result.output["status"] == 500
    assert result.kpis["notificationsSent"] == 0
    assert result.error == f"NOTIFY to {hook.url} failed after 3 attempt(s): HTTP 500 " + (
        "Internal Server Error"
    )
    assert len(hook.received) == 3


def test_client_error_is_not_retried(hook: Hook, run: Run) -> None:
    hook.script = [404]
    result = run({"url": hook.url, "backoffSeconds": 0})
    assert not result.success
    assert result.output["attempts"] == 1 and result.output["status"] == 404


def test_429_is_retried(hook: Hook, run: Run) -> None:
    hook.script = [429]
    result = run({"url": hook.url, "backoffSeconds": 0})
    assert result.success and result.output["attempts"] == 2


def test_timeout(hook: Hook, run: Run) -> None:
    hook.script = [(200, 1.5)]
    started = time.monotonic()
    result = run({"url": hook.url, "timeoutSeconds": 0.3, "retries": 0})
    assert time.monotonic() - started < 1.4
    assert not result.success
    assert result.output["status"] is None
    assert "timed out after 0.3s" in (result.error or "")


def test_timeout_is_retried(hook: Hook, run: Run) -> None:
    hook.script = [(200, 1.0)]
    result = run({"url": hook.url, "timeoutSeconds": 0.3, "retries": 1, "backoffSeconds": 0})
    assert result.success, result.error
    assert result.output["attempts"] == 2


def test_connection_refused_is_retried_then_fails(run: Run, no_proxy: None) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run({"url": f"http://127.0.0.1:{port}/x", "retries": 1, "backoffSeconds": 0})
    assert not result.success
    assert result.output["attempts"] == 2
    assert "connection failed" in (result.error or "")


def test_redirect_is_refused(hook: Hook, run: Run) -> None:
    hook.script = [302]
    result = run({"url": hook.url, "headers": {"Authorization": "x"}, "backoffSeconds": 0})
    assert not result.success
    assert result.output["status"] == 302
    assert len(hook.received) == 1  # the Location was not followed


def test_slack_format(hook: Hook, run: Run) -> None:
    config = {
        "url": hook.url,
        "format": "slack",
        "message": "Attribution ready for {runbookId}",
        "body": {"channel": "#cti"},
    }
    result = run(config)
    assert result.success and result.output["format"] == "slack"
    body = hook.received[0].body
    assert body["text"] == "Attribution ready for rb-1"
    assert body["channel"] == "#cti"
    section, context = body["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": body["text"]}}
    assert context["type"] == "context"
    assert "`exec-1`" in context["elements"][0]["text"]
    assert "upstream: ingest" in context["elements"][0]["text"]


def test_secret_header_from_env_reaches_server_but_not_result(
    hook: Hook, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", SECRET)
    config = {
        "url": f"{hook.url}/services/T000/B000/{SECRET}",
        "headers": {"Authorization": {"secretFrom": {"env": "HOOK_TOKEN"}}},
        "body": {"note": {"secretFrom": {"env": "HOOK_TOKEN"}}},
    }
    result = run(config)
    assert result.success, result.error
    assert hook.received[0].headers["Authorization"] == SECRET
    assert hook.received[0].body == {"note": SECRET}
    assert SECRET not in wire_text(result)
    assert "services" not in wire_text(result)  # the URL path is never reported
    assert result.output["url"] == hook.url


def test_secret_absent_from_failed_result(
    hook: Hook, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(SECRET + "\n")
    hook.script = [500, 500]
    config = {
        "url": f"{hook.url}/{SECRET}",
        "headers": {"X-Token": {"secretFrom": {"file": str(secret_file)}}},
        "retries": 1,
        "backoffSeconds": 0,
    }
    result = run(config)
    assert not result.success
    assert hook.received[0].headers["X-Token"] == SECRET  # trailing newline dropped
    assert SECRET not in wire_text(result)


def test_url_from_env(hook: Hook, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", f"{hook.url}/from-env\n")
    result = run({"urlFrom": {"env": "HOOK_URL"}})
    assert result.success, result.error
    assert hook.received[0].path == "/from-env"


def test_missing_secret_env_names_variable(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABSENT_TOKEN_Q", raising=False)
    config = {
        "url": "http://127.0.0.1:9/",
        "headers": {"Authorization": {"secretFrom": {"env": "ABSENT_TOKEN_Q"}}},
    }
    result = run(config)
    assert result.error == (
        "config.headers.Authorization.secretFrom: environment variable ABSENT_TOKEN_Q is not set"
        + ENV_HINT
    )
    assert "secretKeyRef" in result.error


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "config: NOTIFY needs exactly one of 'url' or 'urlFrom'"),
        ({"url": "http://h", "urlFrom": {"env": "X"}}, "config: NOTIFY needs exactly one"),
        ({"url": "file:///etc/passwd"}, "config.url: expected an http(s) URL"),
        ({"url": "http://"}, "config.url: expected an http(s) URL"),
        ({"url": "http://h", "format": "teams"}, "config.format: expected 'json' or 'slack'"),
        ({"url": "http://h", "retries": -1}, "config.retries: expected an integer from 0 to 10"),
        ({"url": "http://h", "retries": True}, "config.retries"),
        ({"url": "http://h", "timeoutSeconds": 0}, "config.timeoutSeconds: expected a positive"),
        ({"url": "http://h", "headers": {"A": "x\r\nB: y"}}, "config.headers.A: contains a line"),
        ({"url": "http://h", "format": "slack", "body": [1]}, "config.body: a Slack body"),
        ({"url": "http://h", "message": 3}, "config.message: expected a string"),
        ({"url": "http://h", "body": {"x": float("nan")}}, "config.body: not serialisable"),
    ],
)
def test_config_errors(run: Run, config: Any, message: Any) -> None:
    result = run(config)
    assert not result.success
    assert (result.error or "").startswith(message)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/services/T/B/secret?x=1", "https://hooks.example.com"),
        ("http://user:pw@10.0.0.1:8080/p", "http://10.0.0.1:8080"),
        ("http://[::1]:81/p", "http://[::1]:81"),
    ],
)
def test_redact_url(url: Any, shown: Any) -> None:
    assert redact_url(url) == shown
