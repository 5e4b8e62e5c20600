"""The console's pure parts: fan-out grouping and layers, the Gantt chart and critical path,
the ledger badge, safe Markdown, the output preview, the run form, the list filter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runbookctl.ui import model
from runbookctl.ui.model import StepSpec

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def _ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _fan(n: int) -> list[StepSpec]:
    """start → n parallel `item-i` → join."""
    items = [StepSpec(f"item-{i:03d}", "TRANSFORM", ("start",)) for i in range(n)]
    join = StepSpec("join", "TRANSFORM", tuple(s.id for s in items))
    return [StepSpec("start", "TRANSFORM", ()), *items, join]


def test_a_fan_out_over_fifty_is_one_group_with_counts() -> None:
    steps = _fan(120)
    status = {f"item-{i:03d}": "SUCCEEDED" if i < 100 else "FAILED" for i in range(120)}
    graph = model.build_graph(steps, status)
    assert [n.id for n in graph.nodes] == ["start", "group:item-000", "join"]
    group = graph.node("group:item-000")
    assert group.is_group and len(group.members) == 120
    assert group.counts == {"FAILED": 20, "SUCCEEDED": 100}
    assert group.status == "FAILED"  # the most urgent member's
    assert graph.edges == [("start", "group:item-000"), ("group:item-000", "join")]
    assert [n.layer for n in graph.nodes] == [0, 1, 2] and graph.layers == 3


def test_fifty_or_fewer_stay_steps_and_a_group_expands() -> None:
    assert len(model.build_graph(_fan(50), {}).nodes) == 52
    expanded = model.build_graph(_fan(51), {}, expanded=["group:item-000"])
    assert len(expanded.nodes) == 53 and not any(n.is_group for n in expanded.nodes)
    rows = sorted(n.row for n in expanded.nodes if n.layer == 1)
    assert rows == list(range(51))


def test_layers_follow_the_longest_path() -> None:
    steps = [
        StepSpec("a", "X", ()),
        StepSpec("b", "X", ("a",)),
        StepSpec("c", "X", ("b",)),
        StepSpec("d", "X", ("a", "c")),
    ]
    graph = model.build_graph(steps, {})
    assert {n.id: n.layer for n in graph.nodes} == {"a": 0, "b": 1, "c": 2, "d": 3}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_step_is_drawn_once_and_edges_point_forward(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 120))
    steps = []
    for i in range(n):
        deps = data.draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        steps.append(StepSpec(f"s{i}", "X", tuple(f"s{d}" for d in sorted(deps))))
    graph = model.build_graph(steps, {}, collapse_over=data.draw(st.integers(1, 60)))
    drawn = [m for node in graph.nodes for m in (node.members or (node.id,))]
    assert sorted(drawn) == sorted(s.id for s in steps)
    layer = {node.id: node.layer for node in graph.nodes}
    assert all(layer[a] < layer[b] for a, b in graph.edges)


def _entries() -> list[dict[str, Any]]:
    def e(t: float, kind: str, step: str | None = None, **details: Any) -> dict[str, Any]:
        return {"timestamp": _ts(t), "eventType": kind, "stepId": step, "details": details}

    return [
        e(0, "EXECUTION_STARTED"),
        e(0, "STEP_STARTED", "fetch", attempt=1),
        e(0, "STEP_STARTED", "side", attempt=1),
        e(2, "STEP_ATTEMPT_FAILED", "fetch", attempt=1, error="timeout", retryAt=_ts(5)),
        e(3, "STEP_SUCCEEDED", "side", attempt=1),
        e(5, "STEP_STARTED", "fetch", attempt=2),
        e(8, "STEP_SUCCEEDED", "fetch", attempt=2),
        e(8, "STEP_STARTED", "report", attempt=1),
        e(10, "STEP_SUCCEEDED", "report", attempt=1),
        "not an entry",
    ]


def test_attempts_with_retries_from_the_audit_log() -> None:
    attempts = model.attempts_from_entries(_entries())
    fetch = [a for a in attempts if a.step == "fetch"]
    assert [(a.attempt, a.outcome) for a in fetch] == [(1, "RETRIED"), (2, "SUCCEEDED")]
    assert fetch[0].error == "timeout" and fetch[0].retry_at == T0 + timedelta(seconds=5)


def test_gantt_places_bars_backoff_and_the_critical_path() -> None:
    attempts = model.attempts_from_entries(_entries())
    deps = {"fetch": (), "side": (), "report": ("fetch", "side")}
    bars, span, path = model.gantt(attempts, deps, T0 + timedelta(seconds=60))
    assert span == 10.0
    assert path == ["fetch", "report"]
    first = next(b for b in bars if b.step == "fetch" and b.attempt == 1)
    assert (first.left, first.width, first.gap_width) == (0.0, 20.0, 30.0)
    report = next(b for b in bars if b.step == "report")
    assert (report.left, report.width, report.critical) == (80.0, 20.0, True)
    assert not next(b for b in bars if b.step == "side").critical


def test_a_running_attempt_counts_up_to_now() -> None:
    entries = [
        {"timestamp": _ts(0), "eventType": "STEP_STARTED", "stepId": "a", "details": {"attempt": 1}}
    ]
    bars, span, path = model.gantt(
        model.attempts_from_entries(entries), {"a": ()}, T0 + timedelta(seconds=4)
    )
    assert span == 4.0 and bars[0].outcome == "RUNNING" and path == ["a"]


def test_attempts_from_the_status_when_there_is_no_log() -> None:
    steps = [
        {
            "stepId": "a",
            "status": "SUCCEEDED",
            "attempt": 1,
            "startedAt": _ts(0),
            "finishedAt": _ts(1),
        },
        {"stepId": "b", "status": "PENDING", "attempt": 0},
    ]
    assert [(a.step, a.outcome) for a in model.attempts_from_status(steps)] == [("a", "SUCCEEDED")]


def test_badge_says_what_verify_says() -> None:
    assert model.badge_from_report(True, None, True, "OK x").text == "OK"
    assert model.badge_from_report(True, None, False, "OK x").kind == "unsigned"
    bad = model.badge_from_report(False, 7, True, "TAMPERED at entry 7 (segment s, line 2)")
    assert (bad.kind, bad.text) == ("tampered", "TAMPERED at entry 7")


def test_markdown_renders_but_html_and_script_links_stay_text() -> None:
    html = model.render_markdown(
        "# Title\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
        "[a](javascript:alert(3)) [b](https://example.org/x)\n\n| a |\n|---|\n| 1 |\n"
    )
    assert "<h1>Title</h1>" in html and "<table>" in html
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript' not in html and 'href="https://example.org/x"' in html


@given(st.text(max_size=300))
def test_no_tag_from_the_text_survives(text: str) -> None:
    html = model.render_markdown(text)
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "em",
        "strong",
        "code",
        "pre",
        "ul",
        "ol",
        "li",
        "blockquote",
        "hr",
        "br",
        "a",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "img",
    } - ({"img"} if "![" not in text else set())


def test_preview_is_cut_at_the_limit() -> None:
    text, cut = model.preview({"k": "x" * 100}, limit=50)
    assert cut and len(text.encode()) <= 50 + len("\n…".encode())
    assert model.preview({"k": 1}) == ('{\n  "k": 1\n}', False)


SCHEMA = {
    "type": "object",
    "required": ["ip"],
    "properties": {
        "ip": {"type": "string", "description": "the address"},
        "depth": {"type": "integer"},
        "deep": {"type": "boolean"},
        "mode": {"type": "string", "enum": ["fast", "full"]},
        "nested": {"type": "object"},
    },
}


def test_form_fields_from_the_input_schema() -> None:
    fields = model.form_fields(SCHEMA)
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("ip", "string", True),
        ("depth", "integer", False),
        ("deep", "boolean", False),
        ("mode", "string", False),
    ]
    assert fields[3].choices == ("fast", "full")
    assert model.form_fields(None) == [] and model.form_fields({"properties": 3}) == []


def test_run_spec_merges_json_and_fields_and_names_the_bad_field() -> None:
    fields = model.form_fields(SCHEMA)
    spec, problem = model.run_spec(
        {
            "input_json": '{"nested": {"a": 1}, "ip": "old"}',
            "input.ip": "192.0.2.1",
            "input.depth": "3",
            "input.deep": "on",
            "legalBasis": "legitimate_interests",
            "dataLicenses": "internal_use_only",
        },
        fields,
    )
    assert problem is None
    assert spec == {
        "input": {"nested": {"a": 1}, "ip": "192.0.2.1", "depth": 3, "deep": True},
        "legalBasis": "legitimate_interests",
        "dataLicenses": ["internal_use_only"],
    }
    assert model.run_spec({"input.depth": "x", "input.ip": "a"}, fields)[1] == (
        "input.depth: 'x' is not an integer"
    )
    assert model.run_spec({}, fields)[1] == "input.ip: required"
    assert "not valid JSON" in str(model.run_spec({"input_json": "{"}, [])[1])
    assert model.run_spec({"input_json": "[1]"}, [])[1] == "input (JSON): must be an object"
    assert "legalBasis" in str(model.run_spec({"legalBasis": "because"}, [])[1])
    deep = "[" * 200 + "]" * 200
    assert "input" in str(model.run_spec({"input_json": '{"a": ' + deep + "}"}, [])[1])


def test_list_filter() -> None:
    row = {
        "name": "nightly-1",
        "namespace": "soc",
        "runbook": "triage",
        "phase": "FAILED",
        "message": "boom",
    }
    assert model.matches(row, runbook="triage", phase="FAILED", text="BOOM")
    assert not model.matches(row, phase="RUNNING")
    assert not model.matches(row, runbook="other")
    assert not model.matches(row, text="nope")


def test_a_collapsed_fan_out_is_one_row_of_the_timeline() -> None:
    steps = _fan(60)
    graph = model.build_graph(steps, {})
    entries = []
    for i, sid in enumerate(["start", *(f"item-{k:03d}" for k in range(60)), "join"]):
        begin = 0 if sid == "start" else (1 if sid != "join" else 10)
        end = begin + 1 + (i % 7 if sid.startswith("item") else 0)
        entries += [
            {
                "timestamp": _ts(begin),
                "eventType": "STEP_STARTED",
                "stepId": sid,
                "details": {"attempt": 1},
            },
            {
                "timestamp": _ts(end),
                "eventType": "STEP_SUCCEEDED",
                "stepId": sid,
                "details": {"attempt": 1},
            },
        ]
    rows = model.group_attempts(model.attempts_from_entries(entries), graph)
    assert [(r.step, r.attempt) for r in rows] == [
        ("start", 1),
        ("join", 1),
        ("group:item-000", 60),
    ]
    group = rows[2]
    assert group.start == T0 + timedelta(seconds=1) and group.end == T0 + timedelta(seconds=8)
    expanded = model.build_graph(steps, {}, expanded=["group:item-000"])
    assert len(model.group_attempts(model.attempts_from_entries(entries), expanded)) == 62
