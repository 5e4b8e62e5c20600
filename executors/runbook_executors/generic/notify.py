"""NOTIFY: POST a JSON (or Slack-compatible) message to a webhook, standard library only.

Config:
  url | urlFrom:   the webhook (`urlFrom: {env: NAME}` or `{file: PATH}`); http(s) only
  body:            JSON to send (default: a summary of the execution, step and upstream keys)
  message:         text for the default body / Slack text; {executionId} {runbookId} {stepId}
                   {attempt} are substituted
  format:          "json" (default) or "slack" ({"text", "blocks"}; `body` keys are merged in)
  headers:         extra request headers
  timeoutSeconds:  per request (default 10)
  retries:         further tries on connection errors, timeouts, 429 and 5xx (default 2)
  backoffSeconds:  first retry delay, doubled each retry (default 0.5, capped at 10)

Any value may be `{"secretFrom": {...}}` (see runbook_executors.secrets). Secrets and the URL's
path/query never appear in the result: it reports only scheme://host[:port].
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from runbook_engine.contract import ActionType, StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic._common import ConfigError, describe_type
from runbook_executors.secrets import SecretError, SecretResolver, read_source

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
USER_AGENT = "runbook-operator-notify/1"

_PLACEHOLDER = re.compile(r"\{(executionId|runbookId|stepId|attempt)\}")


@dataclass
class Delivery:
    """What happened to one notification (never holds the URL path or any secret)."""

    delivered: bool
    status: int | None
    attempts: int
    error: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: they would forward secret headers to a host nobody configured."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def redact_url(url: str) -> str:
    """scheme://host[:port] only: webhook paths and queries often are the credential."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _check_url(url: object) -> None:
    """An http(s) URL with a host and a numeric port; the message never quotes the URL (it is
    often the credential)."""
    if not isinstance(url, str) or not url:
        raise ConfigError("config.url: expected a non-empty string")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ConfigError("config.url: contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError("config.url: malformed URL (host or port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"config.url: expected an http(s) URL with a host, got scheme "
            f"{parts.scheme if parts.scheme in ('http', 'https', 'ftp', 'file') else 'other'!r}"
        )


def _positive_number(value: Any, where: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {describe_type(value)}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(
            f"{where}: expected a {'non-negative' if allow_zero else 'positive'} number"
        )
    return float(value)


def _fill(template: str, ctx: StepExecutorContext) -> str:
    values = {
        "executionId": ctx.execution_id,
        "runbookId": ctx.runbook_id,
        "stepId": ctx.step_id,
        "attempt": str(ctx.attempt),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def default_body(ctx: StepExecutorContext, message: str | None) -> dict[str, Any]:
    """The summary sent when no `body` is configured: ids and upstream keys, not their values."""
    body: dict[str, Any] = {
        "executionId": ctx.execution_id,
        "runbookId": ctx.runbook_id,
        "stepId": ctx.step_id,
        "attempt": ctx.attempt,
        "upstream": {step: sorted(output) for step, output in ctx.previous_outputs.items()},
    }
    if message is not None:
        body["message"] = message
    return body


def slack_payload(ctx: StepExecutorContext, message: str | None) -> dict[str, Any]:
    """Slack incoming-webhook payload: `text` (fallback) plus section and context blocks."""
    text = message or f"Runbook {ctx.runbook_id}: step {ctx.step_id} reached"
    upstream = ", ".join(sorted(ctx.previous_outputs)) or "none"
    context = (
        f"execution `{ctx.execution_id}` · runbook `{ctx.runbook_id}` · "
        f"step `{ctx.step_id}` (attempt {ctx.attempt}) · upstream: {upstream}"
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def post_json(
    url: str, payload: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None, bool]:
    """One POST: (status, error, retryable). Blocking; run it in a thread."""
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
            status = int(response.status)
            return status, None, False
    except urllib.error.HTTPError as exc:
        exc.close()
        status = int(exc.code)
        retryable = status == 429 or status >= 500
        return status, f"HTTP {status} {exc.reason}", retryable
    except TimeoutError:
        return None, f"timed out after {timeout:g}s", True
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return None, f"timed out after {timeout:g}s", True
        return None, f"connection failed: {reason}", True
    except OSError as exc:
        return None, f"connection failed: {exc}", True


class NotifyStepExecutor(BaseStepExecutor):
    """Sends one webhook notification; see the module docstring for config."""

    action_type: ClassVar[str] = ActionType.NOTIFY

    async def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        secrets = SecretResolver()
        try:
            request = self._prepare(ctx, secrets)
        except ConfigError as exc:  # the same config fails the same way every attempt
            return self.failure(secrets.redact(str(exc)), retryable=False)
        except SecretError as exc:  # a secret may appear (be mounted) before the next attempt
            return self.failure(secrets.redact(str(exc)))
        url, payload, headers, timeout, retries, backoff, fmt = request

        delivery = await self.deliver(url, payload, headers, timeout, retries, backoff)
        shown = redact_url(url)
        output: dict[str, Any] = {
            "delivered": delivery.delivered,
            "status": delivery.status,
            "url": shown,
            "attempts": delivery.attempts,
            "format": fmt,
        }
        kpis: dict[str, int | float | bool | str] = {
            "notificationsSent": 1 if delivery.delivered else 0,
            "attempts": delivery.attempts,
        }
        if not delivery.delivered:
            error = f"NOTIFY to {shown} failed after {delivery.attempts} attempt(s): "
            return self.failure(
                secrets.redact(error + (delivery.error or "unknown error")),
                output=secrets.redact(output),
                kpis=kpis,
            )
        # executionId/stepId in the data keep ids distinct per step, yet stable across re-runs.
        evidence_data = {
            "executionId": ctx.execution_id,
            "stepId": ctx.step_id,
            "url": shown,
            "status": delivery.status,
            "format": fmt,
        }
        evidence = self.create_evidence(
            "notification", secrets.redact(evidence_data), step_id=ctx.step_id
        )
        return self.success(secrets.redact(output), kpis=kpis, evidence=[evidence])

    async def deliver(
        self,
        url: str,
        payload: bytes,
        headers: dict[str, str],
        timeout: float,
        retries: int,
        backoff: float,
    ) -> Delivery:
        """POST with retries; the blocking call runs in a thread so the event loop stays free."""
        attempts = 0
        status: int | None = None
        error: str | None = None
        delay = backoff
        while True:
            attempts += 1
            status, error, retryable = await asyncio.to_thread(
                post_json, url, payload, headers, timeout
            )
            if error is None:
                return Delivery(True, status, attempts)
            if not retryable or attempts > retries:
                return Delivery(False, status, attempts, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _prepare(
        self, ctx: StepExecutorContext, secrets: SecretResolver
    ) -> tuple[str, bytes, dict[str, str], float, int, float, str]:
        config = ctx.config
        url_value = config.get("url")
        url_from = config.get("urlFrom")
        if (url_value is None) == (url_from is None):
            raise ConfigError("config: NOTIFY needs exactly one of 'url' or 'urlFrom'")
        if url_from is not None:
            url = read_source(url_from, where="config.urlFrom").strip()
            secrets.add(url)
        else:
            url = secrets.resolve(url_value, where="config.url")
        _check_url(url)

        fmt = config.get("format", "json")
        if fmt not in ("json", "slack"):
            raise ConfigError(f"config.format: expected 'json' or 'slack', got {fmt!r}")
        message = config.get("message")
        if message is not None:
            message = secrets.resolve(message, where="config.message")
            if not isinstance(message, str):
                raise ConfigError("config.message: expected a string")
            message = _fill(message, ctx)
        body = secrets.resolve(config.get("body"), where="config.body")
        if fmt == "slack":
            if body is not None and not isinstance(body, dict):
                raise ConfigError("config.body: a Slack body must be an object (merged in)")
            document: Any = {**slack_payload(ctx, message), **(body or {})}
        else:
            document = default_body(ctx, message) if body is None else body
        try:
            payload = json.dumps(document, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config.body: not serialisable as JSON: {exc}") from None

        raw_headers = secrets.resolve(config.get("headers") or {}, where="config.headers")
        if not isinstance(raw_headers, dict):
            raise ConfigError("config.headers: expected an object")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        for name, value in raw_headers.items():
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ConfigError(f"config.headers.{name}: expected a string")
            if "\n" in str(value) or "\r" in str(value):
                raise ConfigError(f"config.headers.{name}: contains a line break")
            headers[str(name)] = str(value)

        timeout = _positive_number(
            config.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS), "config.timeoutSeconds"
        )
        retries = config.get("retries", DEFAULT_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ConfigError("config.retries: expected an integer from 0 to 10")
        backoff = _positive_number(
            config.get("backoffSeconds", DEFAULT_BACKOFF_SECONDS),
            "config.backoffSeconds",
            allow_zero=True,
        )
        return url, payload, headers, timeout, retries, backoff, fmt
