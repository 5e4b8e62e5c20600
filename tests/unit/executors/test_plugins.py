"""Plugin discovery through the `runbook_operator.executors` entry point group.

The fixture package (tests/fixtures/plugin_pkg) is "installed" the way pip leaves it on disk: a
`*.dist-info` directory with `entry_points.txt` on sys.path, generated from the package's own
pyproject so the declaration under test is the real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors import ENTRY_POINT_GROUP, default_registry
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic.custom import unregister_function

MakeCtx = Callable[..., StepExecutorContext]
RunStep = Callable[[BaseStepExecutor, StepExecutorContext], StepExecutorResult]
RunCli = Callable[..., "subprocess.CompletedProcess[str]"]

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "fixtures" / "plugin_pkg"


def install_dist(site: Path, name: str, entry_points: dict[str, str]) -> None:
    """Write the metadata pip would write for a distribution exposing `entry_points`."""
    dist = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")


def declared_entry_points() -> dict[str, str]:
    pyproject = tomllib.loads((PLUGIN_SRC / "pyproject.toml").read_text())
    declared: dict[str, str] = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    return declared


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site directory holding the echo plugin's metadata."""
    site = tmp_path / "site"
    install_dist(site, "runbook-echo-plugin", declared_entry_points())
    return site


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The echo plugin importable and discoverable in this process."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("runbook_echo_plugin", None)
    unregister_function("echo.shout")


def subprocess_env(*paths: Path) -> dict[str, str]:
    existing = os.environ.get("PYTHONPATH")
    joined = os.pathsep.join([*(str(p) for p in paths), *([existing] if existing else [])])
    return {"PYTHONPATH": joined}


def write_ctx(tmp_path: Path, action_type: str, **fields: object) -> Path:
    ctx = {
        "executionId": "exec-p",
        "runbookId": "rb-p",
        "stepId": "s1",
        "actionType": action_type,
        "attempt": 1,
        **fields,
    }
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(ctx))
    return path


def test_fixture_declares_the_documented_group() -> None:
    assert ENTRY_POINT_GROUP == "runbook_operator.executors"
    assert declared_entry_points() == {"ECHO": "runbook_echo_plugin:EchoStepExecutor"}


def test_not_discovered_without_installation() -> None:
    assert "ECHO" not in default_registry()


def test_default_registry_discovers_echo(installed: Path) -> None:
    registry = default_registry()
    assert "ECHO" in registry
    assert {"VALIDATE", "TRANSFORM", "NOTIFY", "CUSTOM"} <= registry.action_types()
    assert "ECHO" not in default_registry(plugins=False)


def test_discovered_executor_runs(installed: Path, make_ctx: MakeCtx, run_step: RunStep) -> None:
    executor = default_registry().get("ECHO")
    result = run_step(executor, make_ctx("ECHO", input={"a": 1}, config={"k": "v"}))
    assert result.success
    assert result.output == {"echo": {"a": 1}, "config": {"k": "v"}, "stepId": "step-1"}
    assert result.kpis == {"echoed": 1}


def test_entrypoint_lists_and_runs_plugin(site: Path, tmp_path: Path, cli: RunCli) -> None:
    env = subprocess_env(site, PLUGIN_SRC)
    listed = cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.split()
    assert names == sorted(names)
    assert {"CUSTOM", "ECHO", "NOTIFY", "TRANSFORM", "VALIDATE"} <= set(names)

    ctx = write_ctx(tmp_path, "ECHO", input={"text": "hi"})
    out = tmp_path / "result.json"
    proc = cli("run", "--context", str(ctx), "--result", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    result = json.loads(out.read_text())
    assert result["success"] is True
    assert result["output"] == {"echo": {"text": "hi"}, "config": {}, "stepId": "s1"}
    assert result["evidence"][0]["type"] == "echo"
    assert result["evidence"][0]["stepId"] == "s1"  # camelCase on the wire

    failing = write_ctx(tmp_path, "ECHO", config={"fail": True})
    proc = cli("run", "--context", str(failing), "--result", str(out), env=env)
    assert proc.returncode == 1
    assert json.loads(out.read_text()) == {
        "success": False,
        "output": {},
        "kpis": {},
        "evidence": [],
        "citations": [],
        "error": "echo asked to fail",
        "retryable": True,
    }


def test_function_registered_by_plugin_import_is_found_in_subprocess(
    site: Path, tmp_path: Path, cli: RunCli
) -> None:
    """The Job pod builds fresh executors; the plugin's import-time registration still counts."""
    ctx = write_ctx(
        tmp_path, "CUSTOM", config={"functionName": "echo.shout"}, input={"text": "quiet"}
    )
    out = tmp_path / "result.json"
    proc = cli(
        "run", "--context", str(ctx), "--result", str(out), env=subprocess_env(site, PLUGIN_SRC)
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["output"] == {"shout": "QUIET"}

    # Without the plugin installed, the same step fails with a clear message.
    proc = cli("run", "--context", str(ctx), "--result", str(out))
    assert proc.returncode == 1
    assert "no custom function registered as 'echo.shout'" in json.loads(out.read_text())["error"]


def test_broken_plugin_does_not_block_builtins(tmp_path: Path, cli: RunCli) -> None:
    site = tmp_path / "broken-site"
    install_dist(site, "broken-plugin", {"BROKEN": "no_such_plugin_module_q:Executor"})
    env = subprocess_env(site)
    out = tmp_path / "result.json"

    ok = write_ctx(tmp_path, "TRANSFORM", input={"a": 1})
    proc = cli("run", "--context", str(ok), "--result", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "loading executor plugins failed" in proc.stderr

    broken = write_ctx(tmp_path, "BROKEN")
    proc = cli("run", "--context", str(broken), "--result", str(out), env=env)
    assert proc.returncode == 2
    error = json.loads(out.read_text())["error"]
    assert "no executor for actionType 'BROKEN'" in error
    assert "plugin loading failed: ModuleNotFoundError" in error
