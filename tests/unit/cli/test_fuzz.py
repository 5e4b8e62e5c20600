"""Fuzzing the loader and `runbookctl` (hypothesis): no crash, no traceback, no leaked secret.

The loader must turn any text into a plan or an InvalidRunbook naming the problem; the CLI must
end every command with exit 0, 1 or 2 and a message; and a secret handed to a step through its
environment must never appear in anything the CLI prints or writes.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from runbook_engine.loader import parse_documents, plan_from_text
from runbook_engine.problems import InvalidRunbook
from runbookctl.cli import app

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLI_FUZZ = settings(FUZZ, max_examples=40)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
step_ids = st.text(alphabet=string.ascii_lowercase + "_-.", min_size=1, max_size=6)
steps = st.fixed_dictionaries(
    {"id": step_ids | json_values, "actionType": st.sampled_from(["TRANSFORM", "X", "custom", 3])},
    optional={
        "dependsOn": st.lists(step_ids, max_size=3) | json_values,
        "config": json_values,
        "timeoutMs": st.integers(-5, 10**10) | json_values,
        "retryPolicy": st.dictionaries(
            st.sampled_from(["maxAttempts", "backoffSeconds", "backoffMultiplier", "x"]),
            st.integers(-3, 200) | st.floats(),
            max_size=3,
        ),
    },
)
runbooks = st.fixed_dictionaries(
    {"steps": st.lists(steps, max_size=5) | json_values},
    optional={
        "id": st.text(max_size=10) | json_values,
        "kind": st.sampled_from(["Runbook", "RunbookExecution", None]),
        "spec": json_values,
        "metadata": json_values,
        "maxOutputBytes": st.integers(-1, 10**9),
        "maxParallelSteps": st.integers(-1, 2000),
    },
)


def _loads_or_problem(text: str) -> None:
    try:
        plan_from_text(text, {"TRANSFORM"})
    except InvalidRunbook as exc:
        assert exc.problems and all(p.reason for p in exc.problems)


@FUZZ
@given(st.text(max_size=400))
def test_loader_any_text(text: str) -> None:
    _loads_or_problem(text)


@FUZZ
@given(runbooks)
def test_loader_runbook_shaped_documents(doc: dict[str, Any]) -> None:
    _loads_or_problem(yaml.safe_dump(doc))
    _loads_or_problem(json.dumps(doc, default=str))


yaml_fragments = st.sampled_from(
    [
        "a: &x [1, 2]\n",
        "b: *x\n",
        "c: [*x, *x, *x]\n",
        "- ",
        "{",
        "}",
        "[",
        "]",
        "&y ",
        "*y",
        "<<: *x\n",
        "? k\n: v\n",
        "!!python/object:os.system\n",
        "%YAML 1.1\n---\n",
        "\t",
        "'",
        '"\\x',
        "key: value\n",
        "key: value\n",
        "  nested:\n    - 1\n",
    ]
)


@FUZZ
@given(st.lists(yaml_fragments, max_size=25).map("".join))
def test_loader_yaml_syntax_soup(text: str) -> None:
    try:
        parse_documents(text)
    except InvalidRunbook as exc:
        assert exc.problems


# -- the CLI ---------------------------------------------------------------------------------
cli = CliRunner()


def _invoke(args: list[str]) -> Any:
    result = cli.invoke(app, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    return result


@CLI_FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_cli_validate_and_graph_any_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "rb.yaml"
    path.write_bytes(content)
    _invoke(["validate", str(path)])
    _invoke(["graph", str(path)])


@CLI_FUZZ
@given(content=st.binary(max_size=300))
def test_cli_verify_any_ledger(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(content)
    result = _invoke(["verify", "--ledger", str(path)])
    assert result.exit_code in (0, 1)


@CLI_FUZZ
@given(
    pairs=st.lists(st.text(alphabet=string.printable, max_size=30), max_size=4),
    input_doc=st.binary(max_size=200),
)
def test_cli_run_any_input(tmp_path: Path, pairs: list[str], input_doc: bytes) -> None:
    rb = tmp_path / "rb.yaml"
    rb.write_text("id: fuzz\nsteps: [{id: t, actionType: TRANSFORM}]\n")
    inp = tmp_path / "in.json"
    inp.write_bytes(input_doc)
    args = ["run", str(rb), "--isolation", "inline", "-q", "-o", "json", "-f", str(inp)]
    for pair in pairs:
        args += ["-i", pair]
    _invoke(args)


SECRET_ALPHABET = "QXZJKVW0123456789"
URL_TEMPLATES = [
    "https://hooks.example/hook?token={s} x",
    "https://hooks.example:{s}/hook",
    "https://u:{s}@hooks.example/h",
    "http://127.0.0.1:9/{s}?q={s}",
    "https://[{s}/x",
    "{s}://hooks.example/x",
    "https://hooks.example/x\n{s}",
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # upper-case letters never occur in the hex of hashes and ids, so a match is a real leak
    secret=st.text(alphabet=SECRET_ALPHABET, min_size=8, max_size=20).filter(
        lambda s: any(c.isalpha() for c in s)
    ),
    template=st.sampled_from(URL_TEMPLATES),
    fmt=st.sampled_from(["json", "yaml", "table"]),
)
def test_cli_never_prints_or_logs_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str, template: str, fmt: str
) -> None:
    monkeypatch.setenv("FUZZ_HOOK", template.format(s=secret))
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        "id: leak\nsteps:\n  - id: n\n    actionType: NOTIFY\n"
        "    config: {urlFrom: {env: FUZZ_HOOK}, retries: 0, timeoutSeconds: 1}\n"
    )
    ledger = tmp_path / "ledger.jsonl"
    ledger.unlink(missing_ok=True)
    result = _invoke(["run", str(rb), "--isolation", "inline", "-o", fmt, "--ledger", str(ledger)])
    assert secret not in result.output
    assert secret not in ledger.read_text()
