"""What the console draws, computed from plain data (pure: no I/O, no Kubernetes).

The DAG collapses a fan-out (steps sharing the same parents and children) of more than
`COLLAPSE_OVER` steps into one group node with counts by status; the Gantt chart places every
attempt (from the audit log) on one time axis; the critical path is the chain of steps whose
finish held up the last one; the ledger badge says what `runbookctl verify` says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markdown_it import MarkdownIt

from runbook_engine.documents import depth_problem
from runbook_engine.enums import DataLicense, LegalBasis
from runbook_engine.timeutil import parse_time

COLLAPSE_OVER = 50
"""A fan-out with more members than this is drawn as one group node (expandable)."""
PREVIEW_BYTES = 16 * 1024
"""An output preview is cut to this many bytes of JSON."""
MAX_ENTRIES_SHOWN = 2000
"""The audit log table shows at most this many entries (the badge checks all of them)."""
ENTRIES_SHOWN = 200
"""... and by default the last this many (`?audit=all` for up to MAX_ENTRIES_SHOWN): a large
execution's page stays quick to load."""


# -- DAG -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step of the pinned definition, as the graph needs it."""

    id: str
    action: str
    depends_on: tuple[str, ...]


@dataclass(slots=True)
class Node:
    """A step, or a group of steps collapsed into one box."""

    id: str
    label: str
    action: str
    status: str
    members: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    layer: int = 0
    row: int = 0

    @property
    def is_group(self) -> bool:
        return bool(self.members)


@dataclass(slots=True)
class Graph:
    nodes: list[Node]
    edges: list[tuple[str, str]]
    layers: int

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def group_id(first_member: str) -> str:
    return f"group:{first_member}"


def build_graph(
    steps: Sequence[StepSpec],
    status_of: Mapping[str, str],
    *,
    collapse_over: int = COLLAPSE_OVER,
    expanded: Iterable[str] = (),
) -> Graph:
    """Nodes and edges to draw: fan-outs over `collapse_over` become group nodes unless their
    group id is in `expanded`; each node gets a layer (longest path from a root) and a row."""
    known = {s.id for s in steps}
    children: dict[str, list[str]] = {s.id: [] for s in steps}
    for s in steps:
        for dep in s.depends_on:
            if dep in known:
                children[dep].append(s.id)
    by_shape: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for s in steps:
        shape = (tuple(sorted(s.depends_on)), tuple(sorted(children[s.id])))
        by_shape.setdefault(shape, []).append(s.id)
    open_groups = set(expanded)
    node_of: dict[str, str] = {}
    nodes: dict[str, Node] = {}
    spec_of = {s.id: s for s in steps}
    for members in by_shape.values():
        gid = group_id(members[0])
        if len(members) > collapse_over and gid not in open_groups:
            counts: dict[str, int] = {}
            for sid in members:
                st = status_of.get(sid, "PENDING")
                counts[st] = counts.get(st, 0) + 1
            nodes[gid] = Node(
                gid,
                f"{len(members)} × {members[0]}…",
                spec_of[members[0]].action,
                _group_status(counts),
                tuple(members),
                dict(sorted(counts.items())),
            )
            for sid in members:
                node_of[sid] = gid
        else:
            for sid in members:
                node_of[sid] = sid
    for s in steps:
        if node_of[s.id] == s.id:
            nodes[s.id] = Node(s.id, s.id, s.action, status_of.get(s.id, "PENDING"))
    edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for s in steps:
        for dep in s.depends_on:
            if dep not in known:
                continue
            edge = (node_of[dep], node_of[s.id])
            if edge[0] != edge[1] and edge not in seen:
                seen.add(edge)
                edges.append(edge)
    ordered = _ordered(nodes, node_of, steps)
    layers = _layer(ordered, edges)
    return Graph(ordered, edges, layers)


def _ordered(
    nodes: Mapping[str, Node], node_of: Mapping[str, str], steps: Sequence[StepSpec]
) -> list[Node]:
    out: list[Node] = []
    added: set[str] = set()
    for s in steps:
        nid = node_of[s.id]
        if nid not in added:
            added.add(nid)
            out.append(nodes[nid])
    return out


def _layer(nodes: list[Node], edges: Sequence[tuple[str, str]]) -> int:
    """Longest-path layering in definition order (a valid definition is acyclic and its steps
    may only depend on earlier-or-later ones; iterate to a fixed point, bounded by the size)."""
    parents: dict[str, list[str]] = {n.id: [] for n in nodes}
    for a, b in edges:
        parents[b].append(a)
    layer = {n.id: 0 for n in nodes}
    for _ in range(len(nodes)):
        changed = False
        for n in nodes:
            want = max((layer[p] + 1 for p in parents[n.id]), default=0)
            if want != layer[n.id]:
                layer[n.id] = want
                changed = True
        if not changed:
            break
    rows: dict[int, int] = {}
    for n in nodes:
        n.layer = layer[n.id]
        n.row = rows.get(n.layer, 0)
        rows[n.layer] = n.row + 1
    return max(layer.values(), default=-1) + 1


_GROUP_PRECEDENCE = ("FAILED", "RUNNING", "PENDING", "CANCELLED", "SKIPPED", "SUCCEEDED")


def _group_status(counts: Mapping[str, int]) -> str:
    """The status a group shows: the most urgent of its members'."""
    return next((s for s in _GROUP_PRECEDENCE if counts.get(s)), "PENDING")


# -- Gantt and critical path ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of one step on the time axis; `retry_at` is the next attempt's earliest
    start (the backoff gap)."""

    step: str
    attempt: int
    start: datetime
    end: datetime | None
    outcome: str
    error: str | None = None
    retry_at: datetime | None = None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


_ENDS = {
    "STEP_SUCCEEDED": "SUCCEEDED",
    "STEP_FAILED": "FAILED",
    "STEP_ATTEMPT_FAILED": "RETRIED",
    "STEP_CANCELLED": "CANCELLED",
}


def attempts_from_entries(entries: Iterable[Any]) -> list[Attempt]:
    """Every attempt the audit log records (started, and how it ended); damaged entries are
    passed over (the ledger badge reports them)."""
    open_: dict[tuple[str, int], tuple[datetime, int]] = {}
    out: list[Attempt] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        sid, kind, when = entry.get("stepId"), entry.get("eventType"), _when(entry.get("timestamp"))
        details = entry.get("details") if isinstance(entry.get("details"), Mapping) else {}
        assert isinstance(details, Mapping)
        number = details.get("attempt")
        if not isinstance(sid, str) or when is None:
            continue
        if kind == "STEP_STARTED" and isinstance(number, int):
            open_[(sid, number)] = (when, len(out))
            out.append(Attempt(sid, number, when, None, "RUNNING"))
        elif kind in _ENDS:
            key = (sid, number if isinstance(number, int) else -1)
            if key not in open_:
                key = next((k for k in reversed(list(open_)) if k[0] == sid), key)
            if key in open_:
                start, index = open_.pop(key)
                error = details.get("error")
                out[index] = Attempt(
                    sid,
                    key[1],
                    start,
                    when,
                    _ENDS[str(kind)],
                    str(error) if error is not None else None,
                    _when(details.get("retryAt")),
                )
    return out


def attempts_from_status(steps: Iterable[Mapping[str, Any]]) -> list[Attempt]:
    """One bar per step from the status alone (no audit log readable): its last attempt."""
    out = []
    for s in steps:
        start = _when(s.get("attemptStartedAt")) or _when(s.get("startedAt"))
        if start is None:
            continue
        out.append(
            Attempt(
                str(s.get("stepId")),
                int(s.get("attempt") or 1),
                start,
                _when(s.get("finishedAt")),
                str(s.get("status") or "RUNNING"),
            )
        )
    return out


def group_attempts(attempts: Sequence[Attempt], graph: Graph) -> list[Attempt]:
    """The attempts of each collapsed group's members as one span (first start to last end,
    `attempt` = how many attempts, the most urgent outcome), as the DAG draws them: a fan-out of
    thousands stays one row. Other attempts are kept as they are."""
    group_of = {m: n.id for n in graph.nodes for m in n.members}
    spans: dict[str, list[Attempt]] = {}
    out: list[Attempt] = []
    for a in attempts:
        gid = group_of.get(a.step)
        if gid is None:
            out.append(a)
        else:
            spans.setdefault(gid, []).append(a)
    for gid, members in spans.items():
        ends = [m.end for m in members]
        end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
        outcomes = {m.outcome: 1 for m in members}
        outcome = next(
            (o for o in ("FAILED", "RUNNING", "RETRIED", "CANCELLED") if o in outcomes), "SUCCEEDED"
        )
        out.append(Attempt(gid, len(members), min(m.start for m in members), end, outcome))
    return out


@dataclass(frozen=True, slots=True)
class Bar:
    """An attempt placed on the chart, in percent of the time axis."""

    step: str
    attempt: int
    outcome: str
    left: float
    width: float
    seconds: float
    gap_width: float
    critical: bool
    error: str | None


def critical_path(
    attempts: Sequence[Attempt], dependencies: Mapping[str, Sequence[str]], now: datetime
) -> list[str]:
    """From the step that finished last, back through the parent that finished last each time:
    the chain that decided the execution's length (first step first)."""
    finish: dict[str, datetime] = {}
    for a in attempts:
        end = a.end or now
        if a.step not in finish or end > finish[a.step]:
            finish[a.step] = end
    if not finish:
        return []
    current: str | None = max(finish, key=lambda s: (finish[s], s))
    path: list[str] = []
    seen: set[str] = set()
    while current is not None and current not in seen:
        seen.add(current)
        path.append(current)
        parents = [p for p in dependencies.get(current, ()) if p in finish]
        current = max(parents, key=lambda p: (finish[p], p)) if parents else None
    return list(reversed(path))


def gantt(
    attempts: Sequence[Attempt], dependencies: Mapping[str, Sequence[str]], now: datetime
) -> tuple[list[Bar], float, list[str]]:
    """Bars in percent of the span from the first start to the last end, the span in seconds,
    and the critical path."""
    if not attempts:
        return [], 0.0, []
    t0 = min(a.start for a in attempts)
    t1 = max(max(a.end or now, a.retry_at or t0) for a in attempts)
    span = max((t1 - t0).total_seconds(), 0.001)
    path = critical_path(attempts, dependencies, now)
    on_path = set(path)
    bars = []
    for a in sorted(attempts, key=lambda a: (a.start, a.step, a.attempt)):
        end = a.end or now
        left = (a.start - t0).total_seconds() / span * 100
        width = max((end - a.start).total_seconds() / span * 100, 0.3)
        gap = 0.0
        if a.retry_at is not None and a.retry_at > end:
            gap = (a.retry_at - end).total_seconds() / span * 100
        bars.append(
            Bar(
                a.step,
                a.attempt,
                a.outcome,
                round(left, 3),
                round(min(width, 100 - left), 3),
                round((end - a.start).total_seconds(), 3),
                round(gap, 3),
                a.step in on_path,
                a.error,
            )
        )
    return bars, round(span, 3), path


# -- ledger badge --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Badge:
    """OK / TAMPERED at entry N / UNSIGNED / UNKNOWN, and the line `runbookctl verify` prints."""

    kind: str
    text: str
    detail: str


def badge_from_report(valid: bool, first_bad_seq: int | None, signed: bool, headline: str) -> Badge:
    if not valid:
        where = f" at entry {first_bad_seq}" if first_bad_seq is not None else ""
        return Badge("tampered", f"TAMPERED{where}", headline)
    if not signed:
        return Badge("unsigned", "OK, unsigned", headline + " (no signed checkpoint yet)")
    return Badge("ok", "OK", headline)


def badge_unknown(reason: str) -> Badge:
    return Badge("unknown", "NOT CHECKED", reason)


# -- safe text -----------------------------------------------------------------------------------
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_markdown(text: str, max_chars: int = 200_000) -> str:
    """Markdown to HTML with raw HTML disabled (it is shown as text) and markdown-it's link
    validation (no javascript: or data: links): safe to insert into the page."""
    return str(_MARKDOWN.render(text[:max_chars]))


def preview(value: Any, limit: int = PREVIEW_BYTES) -> tuple[str, bool]:
    """Pretty JSON cut to `limit` bytes: (text, whether it was cut)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", "ignore") + "\n…", True


def matches(row: Mapping[str, str], *, runbook: str = "", phase: str = "", text: str = "") -> bool:
    """The list filters: runbook and phase exactly, text anywhere in name/runbook/message."""
    if runbook and row.get("runbook") != runbook:
        return False
    if phase and row.get("phase") != phase:
        return False
    if text:
        hay = " ".join(str(row.get(k, "")) for k in ("name", "namespace", "runbook", "message"))
        return text.lower() in hay.lower()
    return True


# -- the "run" form ------------------------------------------------------------------------------
LEGAL_BASES = tuple(str(b) for b in LegalBasis)
LICENCES = tuple(str(d) for d in DataLicense)
MAX_FORM_FIELDS = 50
INPUT_JSON_MAX = 256 * 1024


@dataclass(frozen=True, slots=True)
class FormField:
    """One input of the run form, from a property of the runbook's input schema."""

    name: str
    kind: str
    required: bool
    description: str
    choices: tuple[str, ...] = ()


_KINDS = ("string", "integer", "number", "boolean")


def form_fields(schema: Any) -> list[FormField]:
    """Fields for the top-level scalar properties of `spec.metadata.inputSchema` (JSON Schema);
    anything else is entered in the JSON editor beside them."""
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        return []
    listed = schema.get("required")
    required: list[Any] = listed if isinstance(listed, list) else []
    out = []
    for name, prop in list(schema["properties"].items())[:MAX_FORM_FIELDS]:
        if not isinstance(prop, Mapping) or prop.get("type") not in _KINDS:
            continue
        enum = prop.get("enum")
        choices: list[Any] = enum if isinstance(enum, list) else []
        out.append(
            FormField(
                str(name),
                str(prop["type"]),
                name in required,
                str(prop.get("description") or "")[:300],
                tuple(str(c) for c in choices[:100]),
            )
        )
    return out


def _field_value(f: FormField, raw: str) -> tuple[Any, str | None]:
    if f.kind == "boolean":
        return raw in ("on", "true", "1"), None
    if f.kind == "integer":
        try:
            return int(raw), None
        except ValueError:
            return None, f"input.{f.name}: {raw[:40]!r} is not an integer"
    if f.kind == "number":
        try:
            return float(raw), None
        except ValueError:
            return None, f"input.{f.name}: {raw[:40]!r} is not a number"
    return raw, None


def run_spec(
    form: Mapping[str, str], fields: Sequence[FormField]
) -> tuple[dict[str, Any], str | None]:
    """The RunbookExecution spec from the run form: the JSON editor's object, then the fields
    over it; or the first problem, naming the field."""
    text = form.get("input_json", "").strip()
    data: dict[str, Any] = {}
    if text:
        if len(text) > INPUT_JSON_MAX:
            return {}, f"input (JSON): longer than {INPUT_JSON_MAX} characters"
        try:
            parsed = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            return {}, f"input (JSON): not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})"
        if not isinstance(parsed, dict):
            return {}, "input (JSON): must be an object"
        data = parsed
    for f in fields:
        raw = form.get(f"input.{f.name}", "")
        if raw == "" and f.kind != "boolean":
            if f.required and f.name not in data:
                return {}, f"input.{f.name}: required"
            continue
        value, problem = _field_value(f, raw)
        if problem is not None:
            return {}, problem
        data[f.name] = value
    problem = depth_problem(data, "input")
    if problem is not None:
        return {}, problem
    spec: dict[str, Any] = {"input": data}
    basis = form.get("legalBasis", "")
    if basis:
        if basis not in LEGAL_BASES:
            return {}, f"legalBasis: {basis[:40]!r} is not one of {', '.join(LEGAL_BASES)}"
        spec["legalBasis"] = basis
    licences = [v for v in form.get("dataLicenses", "").split(",") if v.strip()]
    for lic in licences:
        if lic.strip() not in LICENCES:
            return {}, f"dataLicenses: {lic[:40]!r} is not one of {', '.join(LICENCES)}"
    if licences:
        spec["dataLicenses"] = [lic.strip() for lic in licences]
    return spec, None
