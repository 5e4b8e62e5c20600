"""The Alertmanager webhook receiver: `POST /alertmanager/<namespace>/<trigger>` (the shell).

It answers 2xx only once every execution the message asks for is persisted (or already was),
5xx when the apiserver could not take one (Alertmanager retries; names are derived from the
alert, so a retry finds what the first try made), 4xx with a reason for a bad token or payload
(Alertmanager does not retry those). It reads exactly one Secret per request, the one the
trigger's `tokenSecretRef` names, in the trigger's namespace. docs/triggers.md.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from runbook_engine.model import ExecutionRequest
from runbook_engine.timeutil import format_time, utcnow
from runbook_operator import kube as k
from runbook_operator.execution.stamps import control_annotations
from runbook_operator.triggers import alert, plan
from runbook_operator.triggers.model import OnResolved, RunbookTriggerSpec, parse_spec
from runbook_operator.triggers.status import CountsDelta, with_counts

log = logging.getLogger("runbook_operator.triggers")

MAX_BODY_BYTES = 1024 * 1024
"""Largest message accepted (Alertmanager's own default for a group is far below)."""
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class Refused(Exception):
    """A request answered with a 4xx/5xx and a reason (no execution was created for it)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Outcome:
    started: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    ignored: int = 0

    def wire(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "duplicates": self.duplicates,
            "cancelled": self.cancelled,
            "skipped": self.skipped,
            "ignored": self.ignored,
        }

    def delta(self, received: int, now: datetime) -> CountsDelta:
        return CountsDelta(
            received=received,
            started=len(self.started),
            duplicates=len(self.duplicates),
            cancelled=len(self.cancelled),
            skipped={reason: len(names) for reason, names in self.skipped.items()},
            last_execution=self.started[-1] if self.started else None,
            last_triggered=format_time(now) if self.started else None,
        )


@dataclass
class TriggerReceiver:
    """Everything a request needs: the API connection, who this receiver is, per-trigger
    locks (read-decide-create is serialised per trigger, so maxConcurrent and rateLimit hold
    exactly for one receiver process: run one replica, docs/triggers.md)."""

    kube: k.Kube
    clock: Callable[[], datetime] = utcnow
    stamp_creator: bool = True
    """Write the created-by stamps ourselves (needed where no MutatingAdmissionPolicy does)."""
    _me: dict[str, Any] | None = None
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    async def identity(self) -> dict[str, Any]:
        if self._me is None:
            self._me = await run_in_threadpool(self.kube.whoami)
        return self._me

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    # -- steps of one request ------------------------------------------------------------------
    async def _trigger(
        self, namespace: str, name: str
    ) -> tuple[dict[str, Any], RunbookTriggerSpec]:
        try:
            body = await run_in_threadpool(self.kube.get, k.TRIGGERS, namespace, name)
        except k.NotFound:
            raise Refused(404, f"no RunbookTrigger {namespace}/{name}") from None
        except k.KubeError as exc:
            raise Refused(503, f"cannot read the trigger: {exc}") from None
        try:
            spec = parse_spec(body.get("spec") or {})
        except ValidationError as exc:
            raise Refused(422, f"RunbookTrigger {name} is invalid: {_first_error(exc)}") from None
        if spec.alertmanager is None:
            raise Refused(404, f"RunbookTrigger {name} has no spec.alertmanager")
        return body, spec

    async def _check_token(self, namespace: str, spec: RunbookTriggerSpec, given: str) -> None:
        assert spec.alertmanager is not None
        ref = spec.alertmanager.token_secret_ref
        try:
            secret = await run_in_threadpool(self.kube.get, k.SECRETS, namespace, ref.name)
        except k.NotFound:
            raise Refused(401, "the trigger's token Secret does not exist") from None
        except k.KubeError as exc:
            raise Refused(503, f"cannot read the token Secret: {exc}") from None
        expected = _secret_value(secret, ref.key)
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Refused(401, "bearer token does not match the trigger's tokenSecretRef")

    async def _existing(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await run_in_threadpool(self.kube.get, k.EXECUTIONS, namespace, name)
        except k.NotFound:
            return None
        except k.KubeError as exc:
            raise Refused(503, f"cannot read execution {name}: {exc}") from None

    async def _fire(
        self,
        trigger: dict[str, Any],
        spec: RunbookTriggerSpec,
        occurrence: alert.Occurrence,
        outcome: Outcome,
    ) -> None:
        meta = trigger["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        if await self._existing(namespace, occurrence.execution) is not None:
            outcome.duplicates.append(occurrence.execution)
            return
        try:
            mapped = alert.map_input(spec.input, occurrence.event)
            ExecutionRequest.model_validate({"runbookRef": {"name": "x"}, "input": mapped})
        except (alert.InputError, ValidationError) as exc:
            why = str(exc) if isinstance(exc, alert.InputError) else _first_error(exc)
            log.info(
                "trigger %s/%s: input of %s refused: %s",
                namespace,
                name,
                occurrence.execution,
                why,
            )
            outcome.skipped.setdefault(plan.SKIP_INVALID_INPUT, []).append(occurrence.execution)
            return
        creator = await self.identity() if self.stamp_creator else None
        async with self._lock(namespace, name):
            try:
                items = await run_in_threadpool(
                    self.kube.list, k.EXECUTIONS, namespace, plan.trigger_selector(name)
                )
            except k.KubeError as exc:
                raise Refused(503, f"cannot list the trigger's executions: {exc}") from None
            started = [plan.Started.of(i) for i in items]
            if any(s.name == occurrence.execution for s in started):
                outcome.duplicates.append(occurrence.execution)
                return
            reason = plan.skip_reason(spec, started, self.clock())
            if reason is not None:
                outcome.skipped.setdefault(reason, []).append(occurrence.execution)
                return
            manifest = plan.execution_manifest(
                trigger,
                spec,
                occurrence.execution,
                mapped,
                alert.alert_record(occurrence.alert),
                creator,
            )
            try:
                await run_in_threadpool(self.kube.create, k.EXECUTIONS, namespace, manifest)
            except k.AlreadyExists:
                outcome.duplicates.append(occurrence.execution)
                return
            except k.KubeError as exc:
                raise Refused(
                    503, f"cannot create execution {occurrence.execution}: {exc}"
                ) from None
        outcome.started.append(occurrence.execution)

    async def _resolve(
        self,
        trigger: dict[str, Any],
        spec: RunbookTriggerSpec,
        occurrence: alert.Occurrence,
        outcome: Outcome,
    ) -> None:
        assert spec.alertmanager is not None
        if spec.alertmanager.on_resolved is not OnResolved.CANCEL:
            outcome.ignored += 1
            return
        namespace, name = str(trigger["metadata"]["namespace"]), str(trigger["metadata"]["name"])
        body = await self._existing(namespace, occurrence.execution)
        if body is None or not plan.started_by(body, name):
            outcome.ignored += 1
            return
        spec_now = body.get("spec") or {}
        phase = (body.get("status") or {}).get("phase")
        if spec_now.get("cancel") or phase in plan.TERMINAL:
            outcome.ignored += 1
            return
        me = await self.identity()
        annotations = control_annotations(_identity(me), bool(spec_now.get("paused")), True)
        patch = {"metadata": {"annotations": annotations}, "spec": {"cancel": True}}
        try:
            await run_in_threadpool(
                self.kube.patch, k.EXECUTIONS, namespace, occurrence.execution, patch
            )
        except k.NotFound:
            outcome.ignored += 1
            return
        except k.KubeError as exc:
            raise Refused(503, f"cannot cancel execution {occurrence.execution}: {exc}") from None
        outcome.cancelled.append(occurrence.execution)

    # -- the endpoint --------------------------------------------------------------------------
    async def handle(self, request: Request) -> JSONResponse:
        namespace = request.path_params["namespace"]
        name = request.path_params["trigger"]
        try:
            outcome = await self._handle(request, namespace, name)
        except Refused as refused:
            level = logging.WARNING if refused.status >= 500 else logging.INFO
            log.log(
                level, "alertmanager %s/%s: %d %s", namespace, name, refused.status, refused.reason
            )
            return JSONResponse({"error": refused.reason}, status_code=refused.status)
        return JSONResponse(outcome.wire(), status_code=200)

    async def _handle(self, request: Request, namespace: str, name: str) -> Outcome:
        if not _DNS_LABEL.match(namespace) or not _DNS_NAME.match(name):
            raise Refused(404, "not a namespace and trigger name")
        token = _bearer(request.headers.get("authorization", ""))
        if token is None:
            raise Refused(401, "missing bearer token (Authorization: Bearer <token>)")
        trigger, spec = await self._trigger(namespace, name)
        await self._check_token(namespace, spec, token)
        raw_body = await _read_bounded(request)
        assert spec.alertmanager is not None
        try:
            raw = json.loads(raw_body)
        except (ValueError, RecursionError) as exc:
            raise Refused(400, f"body is not JSON: {str(exc)[:200]}") from None
        if not isinstance(raw, dict):
            raise Refused(400, "body is not a JSON object")
        try:
            notification = alert.Notification.model_validate(raw)
        except ValidationError as exc:
            raise Refused(
                422, f"not an Alertmanager webhook message (version 4): {_first_error(exc)}"
            ) from None
        outcome = Outcome()
        selected = alert.occurrences(notification, raw, spec.alertmanager, namespace, name)
        try:
            for occurrence in selected:
                if occurrence.alert.status == "firing":
                    await self._fire(trigger, spec, occurrence, outcome)
                else:
                    await self._resolve(trigger, spec, occurrence, outcome)
        finally:
            await self._record(namespace, name, outcome.delta(len(selected), self.clock()))
        return outcome

    async def _record(self, namespace: str, name: str, delta: CountsDelta) -> None:
        """Counts on the trigger's status (best effort: the executions are what matters)."""
        if delta.empty:
            return
        try:
            await run_in_threadpool(record_counts, self.kube, namespace, name, delta)
        except k.KubeError as exc:
            log.warning("trigger %s/%s: cannot record counts: %s", namespace, name, exc)


STATUS_RETRIES = 8


def record_counts(kube: k.Kube, namespace: str, name: str, delta: CountsDelta) -> None:
    """Add `delta` to the trigger's status counts, guarded by resourceVersion (receivers and
    the operator write the same status)."""
    for _ in range(STATUS_RETRIES):
        body = kube.get(k.TRIGGERS, namespace, name)
        status = with_counts(body.get("status") or {}, delta)
        patch = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": status,
        }
        try:
            kube.patch(k.TRIGGERS, namespace, name, patch, subresource="status")
            return
        except k.Conflict:
            continue
    raise k.Conflict(409, "Conflict", f"status of trigger {namespace}/{name} kept changing")


def _identity(user: Mapping[str, Any]) -> Any:
    from runbook_engine.identity import Identity

    return Identity.from_wire(
        {
            "username": user.get("username") or "",
            "uid": user.get("uid"),
            "groups": list(user.get("groups") or []),
        }
    )


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _secret_value(secret: Mapping[str, Any], key: str) -> str:
    import base64
    import binascii

    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        return ""
    try:
        return base64.b64decode(encoded, validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        return ""


async def _read_bounded(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg')}{more}"


def make_app(receiver: TriggerReceiver) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/alertmanager/{namespace}/{trigger}", receiver.handle, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
