"""Human output: the live progress table, event lines, and graphs (Mermaid / DOT)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from runbook_engine.plan import Plan
from runbook_engine.state import ExecutionState

STATUS_STYLE = {
    "PENDING": "dim",
    "RUNNING": "bold cyan",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "SKIPPED": "yellow",
    "CANCELLED": "magenta",
}


def steps_table(plan: Plan, state: ExecutionState) -> Table:
    table = Table(title=f"{state.runbook_id} · {state.execution_id} · {state.status}", expand=False)
    for column in ("step", "action", "status", "attempt", "message"):
        table.add_column(column)
    for sid in plan.order:
        step = state.steps[sid]
        style = STATUS_STYLE.get(str(step.status), "")
        table.add_row(
            sid,
            plan.steps[sid].action_type,
            f"[{style}]{step.status}[/]",
            str(step.attempt),
            (step.message or "")[:80],
        )
    return table


def event_line(entry: dict[str, Any]) -> str:
    """One audit entry as a log line: ``12:00:01.123 STEP_STARTED ingest {attempt: 1}``."""
    details = entry.get("details") or {}
    brief = ", ".join(
        f"{k}={v}"
        for k, v in details.items()
        if k in ("attempt", "error", "reason", "retryAt", "from", "to")
    )
    step = f" {entry['stepId']}" if entry.get("stepId") else ""
    return f"{entry['timestamp'][11:23]} {entry['eventType']}{step}" + (
        f" ({brief})" if brief else ""
    )


def _mermaid_id(step_id: str) -> str:
    return "s_" + "".join(c if c.isalnum() else "_" for c in step_id)


def mermaid(plan: Plan) -> str:
    lines = ["flowchart TD"]
    for sid in plan.order:
        step = plan.steps[sid]
        label = (step.name or sid).replace('"', "'")
        lines.append(f'    {_mermaid_id(sid)}["{label}<br/>({step.action_type})"]')
    for sid in plan.order:
        for dep in plan.dependencies[sid]:
            lines.append(f"    {_mermaid_id(dep)} --> {_mermaid_id(sid)}")
    return "\n".join(lines) + "\n"


def dot(plan: Plan) -> str:
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {q(plan.definition.id)} {{", "  rankdir=TB;", "  node [shape=box];"]
    for sid in plan.order:
        step = plan.steps[sid]
        lines.append(
            f"  {q(sid)} [label={q((step.name or sid) + chr(10) + '(' + step.action_type + ')')}];"
        )
    for sid in plan.order:
        for dep in plan.dependencies[sid]:
            lines.append(f"  {q(dep)} -> {q(sid)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
