"""The console's HTTP server (Starlette): pages rendered on the server with Jinja2
(autoescape on: everything from the cluster is text), a little JS of our own under /static,
and a strict Content-Security-Policy (no inline script, nothing from elsewhere).

Writes (the buttons, "run") need the per-server token in the form and a same-origin request,
so another site open in the same browser cannot act as the user through this server; the Host
header must be the loopback name the server printed (no DNS rebinding).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runbook_engine.plan import Plan
from runbookctl import cluster_view
from runbookctl.render import event_line
from runbookctl.ui import actions, model
from runbookctl.ui.source import Answer, execution_row

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_SIZES = (25, 50, 100, 200)
PHASES = ("PENDING", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED")
STATIC = Path(__file__).parent / "static"


class Source(Protocol):
    """What the pages read (ClusterSource on a cluster, ResultsSource for local runs)."""

    read_only: bool

    def whoami(self) -> str: ...
    def namespaces(self) -> list[str]: ...
    def list_executions(
        self, namespace: str, limit: int, token: str, filters: Mapping[str, str]
    ) -> Any: ...
    def execution(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def pinned(self, namespace: str, obj: Mapping[str, Any]) -> tuple[Plan | None, str | None]: ...
    def ledger(self, namespace: str, name: str, uid: str) -> tuple[list[Any], model.Badge]: ...
    def output(
        self, namespace: str, obj: Mapping[str, Any], step: str
    ) -> tuple[Any, str | None]: ...
    def pod_logs(
        self, namespace: str, obj: Mapping[str, Any], step: str
    ) -> tuple[str | None, str]: ...
    def runbooks(self, namespace: str) -> tuple[list[dict[str, Any]], str | None]: ...
    def runbook(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def recent_executions(self, namespace: str, runbook: str) -> list[dict[str, Any]]: ...
    def start(
        self, namespace: str, runbook: str, spec: Mapping[str, Any]
    ) -> tuple[Answer, str | None]: ...


class SecurityHeaders:
    """CSP and friends on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("runbookctl.ui", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["event_line"] = _event_line
    env.filters["tojson_text"] = lambda v: json.dumps(v, ensure_ascii=False, default=str)[:500]
    return env


def _event_line(entry: Any) -> str:
    """`runbookctl logs`' line for an entry; a damaged entry (missing fields) as its JSON."""
    try:
        return event_line(dict(entry))
    except (KeyError, TypeError, ValueError):
        return "(damaged) " + json.dumps(entry, default=str)[:300]


def _group_dependencies(
    dependencies: Mapping[str, tuple[str, ...]], graph: model.Graph
) -> dict[str, tuple[str, ...]]:
    """The dependencies between the graph's nodes (a collapsed group is one node)."""
    parents: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for a, b in graph.edges:
        parents[b].append(a)
    out = {k: tuple(v) for k, v in parents.items()}
    for sid, deps in dependencies.items():
        out.setdefault(sid, deps)
    return out


def _int(value: str | None, default: int, allowed: tuple[int, ...]) -> int:
    try:
        number = int(value or default)
    except ValueError:
        return default
    return number if number in allowed else default


def _report(
    source: Source, ns: str, obj: Mapping[str, Any], plan: Plan | None
) -> tuple[str | None, str | None]:
    """The GENERATE_REPORT step's Markdown rendered safely, or a note why there is none."""
    if plan is None:
        if not source.read_only:
            return None, None
        # a local result records no definition: the last step whose output has Markdown
        for entry in reversed((obj.get("status") or {}).get("steps") or []):
            value, _ = source.output(ns, obj, str(entry.get("stepId")))
            if isinstance(value, Mapping) and isinstance(value.get("markdown"), str):
                return model.render_markdown(value["markdown"]), None
        return None, None
    report_steps = [s for s in plan.order if plan.steps[s].action_type == "GENERATE_REPORT"]
    if not report_steps:
        return None, None
    value, why = source.output(ns, obj, report_steps[-1])
    if why is not None:
        return None, f"report step {report_steps[-1]!r}: {why}"
    markdown = value.get("markdown") if isinstance(value, Mapping) else None
    if not isinstance(markdown, str):
        return None, f"report step {report_steps[-1]!r} has no markdown output"
    return model.render_markdown(markdown), None


def build_app(
    source: Source, *, hub: Any = None, allowed_hosts: list[str] | None = None
) -> Starlette:
    """The console for `source`; `hub` (live.Hub) serves /events when given."""
    env = _templates()
    token = secrets.token_urlsafe(24)

    def page(template: str, request: Request, http_status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(template).render(
            request=request,
            who=source.whoami(),
            read_only=source.read_only,
            live=hub is not None,
            csrf=token,
            **ctx,
        )
        return HTMLResponse(html, status_code=http_status)

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        return origin is None or origin in (f"http://{host}", f"https://{host}")

    async def check_write(request: Request) -> dict[str, str] | Response:
        data = await request.form()
        form = {k: ",".join(str(v) for v in data.getlist(k)) for k in data}
        if source.read_only:
            return HTMLResponse("read-only console (--results)", status_code=405)
        if not same_origin(request) or not secrets.compare_digest(form.get("csrf", ""), token):
            return HTMLResponse("refused: not a form of this console", status_code=403)
        return form

    def index(request: Request) -> Response:
        return RedirectResponse("/executions", status_code=302)

    def executions(request: Request) -> Response:
        q = request.query_params
        limit = _int(q.get("limit"), 50, PAGE_SIZES)
        namespace = q.get("namespace", "")
        filters = {
            "runbook": q.get("runbook", ""),
            "phase": q.get("phase", ""),
            "text": q.get("q", ""),
        }
        result = source.list_executions(namespace, limit, q.get("continue", ""), filters)
        now = datetime.now(UTC)
        rows = [execution_row(o, now) for o in result.items]
        return page(
            "executions.html",
            request,
            rows=rows,
            next_token=result.next_token,
            error=result.error,
            namespaces=source.namespaces(),
            namespace=namespace,
            filters=filters,
            limit=limit,
            page_sizes=PAGE_SIZES,
            phases=PHASES,
        )

    def _execution_context(request: Request, ns: str, name: str) -> dict[str, Any] | None:
        obj = source.execution(ns, name)
        if obj is None:
            return None
        now = datetime.now(UTC)
        status = obj.get("status") or {}
        status_steps = {str(s.get("stepId")): s for s in status.get("steps") or []}
        plan, plan_note = source.pinned(ns, obj)
        if plan is not None:
            specs = [
                model.StepSpec(sid, plan.steps[sid].action_type, tuple(plan.dependencies[sid]))
                for sid in plan.order
            ]
            dependencies: Mapping[str, tuple[str, ...]] = plan.dependencies
        else:
            specs = [model.StepSpec(sid, "", ()) for sid in status_steps]
            dependencies = {}
        expanded = request.query_params.getlist("expand")
        graph = model.build_graph(
            specs,
            {k: str(v.get("status", "PENDING")) for k, v in status_steps.items()},
            expanded=expanded,
        )
        entries, badge = source.ledger(ns, name, str(obj["metadata"].get("uid", "")))
        attempts = model.attempts_from_entries(entries) or model.attempts_from_status(
            status_steps.values()
        )
        grouped = model.group_attempts(attempts, graph)
        group_deps = _group_dependencies(dependencies, graph)
        bars, span, path = model.gantt(grouped, group_deps, now)
        step_id = request.query_params.get("step", "")
        step: dict[str, Any] | None = None
        if step_id in status_steps or (plan is not None and step_id in plan.steps):
            entry = status_steps.get(
                step_id, {"stepId": step_id, "status": "PENDING", "attempt": 0}
            )
            value, why = (None, None)
            if entry.get("status") == "SUCCEEDED":
                value, why = source.output(ns, obj, step_id)
            text, cut = model.preview(value) if why is None and value is not None else ("", False)
            logs, log_note = source.pod_logs(ns, obj, step_id)
            step = {
                "id": step_id,
                "row": cluster_view.step_row(entry, now),
                "entry": entry,
                "attempts": [a for a in attempts if a.step == step_id],
                "output": text,
                "output_cut": cut,
                "output_note": why,
                "logs": logs,
                "log_note": log_note,
                "action": plan.steps[step_id].action_type if plan and step_id in plan.steps else "",
            }
        report_html, report_note = _report(source, ns, obj, plan)
        all_entries = request.query_params.get("audit") == "all"
        shown = model.MAX_ENTRIES_SHOWN if all_entries else model.ENTRIES_SHOWN
        return {
            "obj": obj,
            "ns": ns,
            "name": name,
            "row": execution_row(obj, now),
            "status": status,
            "spec": obj.get("spec") or {},
            "graph": graph,
            "plan_note": plan_note,
            "expanded": expanded,
            "bars": bars,
            "span": span,
            "critical": path,
            "step": step,
            "entries": entries[-shown:],
            "audit_all": shown == model.MAX_ENTRIES_SHOWN,
            "entries_total": len(entries),
            "badge": badge,
            "report_html": report_html,
            "report_note": report_note,
            "actions": [] if source.read_only else actions.offered(obj),
            "all_actions": actions.ACTIONS,
            "head_steps": {} if source.read_only else actions.head_steps(obj),
            "step_actions": []
            if source.read_only or step is None
            else actions.step_panel(obj, step["id"]),
            "decisions": _decisions(ns, name),
        }

    def _decisions(ns: str, name: str) -> tuple[list[dict[str, Any]], str | None]:
        read = getattr(source, "decisions", None)
        return read(ns, name) if read is not None else ([], None)

    def execution(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        ctx = _execution_context(request, ns, name)
        if ctx is None:
            return page(
                "missing.html", request, http_status=404, what=f"runbookexecution {ns}/{name}"
            )
        return page("execution.html", request, answer=None, **ctx)

    def execution_fragment(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        ctx = _execution_context(request, ns, name)
        if ctx is None:
            return HTMLResponse("<p class=note>gone</p>", status_code=404)
        html = env.get_template("_execution_main.html").render(
            csrf=token, read_only=source.read_only, answer=None, **ctx
        )
        return HTMLResponse(html)

    async def act(request: Request) -> Response:
        ns, name, key = (request.path_params[k] for k in ("ns", "name", "action"))
        form = await check_write(request)
        if isinstance(form, Response):
            return form
        action = actions.find(key)
        if action is None:
            return HTMLResponse(f"no action {key!r}", status_code=404)
        return await run_in_threadpool(_act, request, ns, name, action, form)

    def _act(
        request: Request, ns: str, name: str, action: actions.Action, form: dict[str, str]
    ) -> Response:
        try:
            answer = action.perform(source, ns, name, form)  # type: ignore[arg-type]
        except actions.Refused as refused:
            answer = Answer(422, str(refused))
        made = getattr(answer, "made", None)
        if made:
            return RedirectResponse(f"/executions/{quote(ns)}/{quote(made)}", status_code=303)
        ctx = _execution_context(request, ns, name)
        if ctx is None:
            return page(
                "missing.html", request, http_status=404, what=f"runbookexecution {ns}/{name}"
            )
        return page("execution.html", request, answer=answer, answered=action.label, **ctx)

    def approvals(request: Request) -> Response:
        """The inbox: what waits for the user (`runbookctl approvals`, per namespace)."""
        namespace = request.query_params.get("namespace", "")
        inbox = getattr(source, "inbox", None)
        rows, problems = inbox(namespace) if inbox is not None else ([], [])
        return page(
            "approvals.html",
            request,
            rows=rows,
            problems=problems,
            namespaces=source.namespaces(),
            namespace=namespace,
        )

    def runbooks(request: Request) -> Response:
        namespace = request.query_params.get("namespace", "")
        items, error = source.runbooks(namespace)
        return page(
            "runbooks.html",
            request,
            items=items,
            error=error,
            namespaces=source.namespaces(),
            namespace=namespace,
        )

    def _runbook_context(ns: str, name: str) -> dict[str, Any] | None:
        obj = source.runbook(ns, name)
        if obj is None:
            return None
        spec = obj.get("spec") or {}
        steps = [
            model.StepSpec(
                str(s.get("id")), str(s.get("actionType", "")), tuple(s.get("dependsOn") or ())
            )
            for s in spec.get("steps") or []
            if isinstance(s, Mapping)
        ]
        schema = (spec.get("metadata") or {}).get("inputSchema")
        return {
            "rb": obj,
            "ns": ns,
            "name": name,
            "spec": spec,
            "graph": model.build_graph(steps, {}),
            "problems": (obj.get("status") or {}).get("problems") or [],
            "conditions": (obj.get("status") or {}).get("conditions") or [],
            "recent": [
                execution_row(o, datetime.now(UTC)) for o in source.recent_executions(ns, name)
            ],
            "fields": model.form_fields(schema),
            "legal_bases": model.LEGAL_BASES,
            "licences": model.LICENCES,
        }

    def runbook(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        ctx = _runbook_context(ns, name)
        if ctx is None:
            return page("missing.html", request, http_status=404, what=f"runbook {ns}/{name}")
        return page("runbook.html", request, answer=None, **ctx)

    async def run(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        form = await check_write(request)
        if isinstance(form, Response):
            return form
        return await run_in_threadpool(_run, request, ns, name, form)

    def _run(request: Request, ns: str, name: str, form: dict[str, str]) -> Response:
        ctx = _runbook_context(ns, name)
        if ctx is None:
            return page("missing.html", request, http_status=404, what=f"runbook {ns}/{name}")
        spec, problem = model.run_spec(form, ctx["fields"])
        if problem is not None:
            answer: Any = Answer(422, problem)
        else:
            answer, made = source.start(ns, name, spec)
            if made is not None:
                return RedirectResponse(f"/executions/{ns}/{made}", status_code=303)
        return page("runbook.html", request, answer=answer, **ctx)

    async def events(request: Request) -> Response:
        if hub is None:
            return Response("no live updates in this mode", status_code=404)
        return StreamingResponse(
            hub.subscribe(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    routes = [
        Route("/", index),
        Route("/executions", executions),
        Route("/executions/{ns}/{name}", execution),
        Route("/executions/{ns}/{name}/main", execution_fragment),
        Route("/executions/{ns}/{name}/actions/{action}", act, methods=["POST"]),
        Route("/approvals", approvals),
        Route("/runbooks", runbooks),
        Route("/runbooks/{ns}/{name}", runbook),
        Route("/runbooks/{ns}/{name}/run", run, methods=["POST"]),
        Route("/events", events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"]
        ),
    ]
    return Starlette(routes=routes, middleware=middleware)
