"""A secret read by a step never leaves it: not through an error, an exception, or a URL part.

The issue's case: NOTIFY with `urlFrom: {env: H}` where the URL is malformed
(`.../hook?token=SECRET x`, or the secret in the port position) put the secret into the step
message, `-o json`, stderr and the ledger, because redaction matched only the whole URL.
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.executors.conftest import build_ctx

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor, invoke
from runbook_executors.generic.notify import NotifyStepExecutor
from runbook_executors.secrets import read_source, url_parts

ENV = "RUNBOOK_TEST_HOOK_URL"

# Secrets drawn from an alphabet that none of the fixed message text uses in a run of 8.
secrets = st.text(alphabet="QXZJKVWqxzjkvw0123456789", min_size=8, max_size=24)

TEMPLATES = [
    "https://hooks.example/hook?token={s} x",  # whitespace makes the URL invalid
    "https://hooks.example:{s}/hook",  # the secret in the port position
    "https://hooks.example/services/{s}/x y",
    "https://user:{s}@hooks.example:99999999/h",
    "https://[{s}/hook",  # an invalid IPv6 host
    "http://127.0.0.1:9/hook?a=1&token={s}#frag",  # valid; delivery fails (nothing listens)
    "https://hooks.example/h#{s}\n",
    "ftp://hooks.example/{s}",
]


def notify(url: str, monkeypatch: pytest.MonkeyPatch) -> StepExecutorResult:
    monkeypatch.setenv(ENV, url)
    ctx = build_ctx("NOTIFY", config={"urlFrom": {"env": ENV}, "retries": 0, "timeoutSeconds": 2})
    return asyncio.run(invoke(NotifyStepExecutor(), ctx))


@pytest.mark.parametrize("template", TEMPLATES)
def test_issue_cases_do_not_leak(template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "SECRETtok3n99"
    result = notify(template.format(s=secret), monkeypatch)
    assert not result.success
    assert secret not in json.dumps(result.wire())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=secrets, template=st.sampled_from(TEMPLATES))
def test_no_secret_in_any_notify_result(
    secret: str, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = notify(template.format(s=secret), monkeypatch)
    assert secret not in json.dumps(result.wire())


def test_a_config_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    result = notify("https://hooks.example:SECRETport/x", monkeypatch)
    assert result.retryable is False
    assert "config.url" in (result.error or "")


class Leaky(BaseStepExecutor):
    """An executor that quotes its secret in an exception (any executor may)."""

    action_type: ClassVar[str] = "LEAKY"

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        token = read_source({"env": ENV}, where="config.tokenFrom")
        raise RuntimeError(f"upstream rejected token {token} for {token[:3]}")


def test_every_executor_result_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "zz-very-secret-zz")
    result = asyncio.run(invoke(Leaky(), build_ctx("LEAKY")))
    assert "zz-very-secret-zz" not in (result.error or "")
    assert "[redacted]" in (result.error or "")


def test_secrets_of_one_attempt_do_not_blank_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    asyncio.run(invoke(Leaky(), build_ctx("LEAKY")))

    class Echo(BaseStepExecutor):
        action_type: ClassVar[str] = "ECHO"

        def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
            return self.success({"n": "10"})

    assert asyncio.run(invoke(Echo(), build_ctx("ECHO"))).output == {"n": "10"}


def test_url_parts_of_a_malformed_url() -> None:
    parts = url_parts(
        "https://u:pw1234@host.example:PORTSECRET/a/longsegment99?t=tokval&x=1#fragment"
    )
    assert {"pw1234", "PORTSECRET", "longsegment99", "tokval", "fragment"} <= parts
    assert "host.example" not in parts and "https" not in parts
