"""The import contracts in .importlinter hold, and each one breaks when its rule is violated.

`make lint` runs `lint-imports` on the real tree; here every contract is shown to catch the
import it exists to forbid, in a copy of the sources with one violating line added (a contract
that cannot fail checks nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "runbook_engine": REPO / "operator" / "runbook_engine",
    "runbookctl": REPO / "operator" / "runbookctl",
    "runbook_operator": REPO / "operator" / "runbook_operator",
    "runbook_executors": REPO / "executors" / "runbook_executors",
}
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the four packages' Python sources and the contracts."""
    for name, source in PACKAGES.items():
        shutil.copytree(
            source,
            tmp_path / "src" / name,
            ignore=lambda _dir, names: [
                n for n in names if (not n.endswith(".py") and "." in n) or n == "__pycache__"
            ],
        )
    shutil.copy(REPO / ".importlinter", tmp_path)
    return tmp_path


def lint(tree: Path, contract: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    if contract:
        args += ["--contract", contract]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def add_line(tree: Path, module: str, line: str) -> None:
    parts = module.split(".")
    path = tree / "src" / Path(*parts[:-1]) / f"{parts[-1]}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.read_text() if path.exists() else ""
    path.write_text(previous + f"\n{line}  # violation added by the test\n")


def test_the_copy_keeps_every_contract(tree: Path) -> None:
    """The baseline: the violations below are the only reason a contract breaks."""
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


VIOLATIONS = [
    ("engine-is-pure", "runbook_engine.kpis", "import runbookctl.render"),
    ("engine-is-pure", "runbook_engine.plan", "import runbook_executors.registry"),
    ("engine-is-pure", "runbook_engine.kpis", "from runbook_operator import names"),
    ("engine-is-pure", "runbook_engine.audit", "import kopf"),
    ("engine-is-pure", "runbook_engine.state", "import kubernetes"),
    # indirectly: a new engine module that imports a shell module is caught too
    ("engine-is-pure", "runbook_engine.newmodule", "import runbookctl.cli"),
    ("executors-see-the-contract", "runbook_executors.base", "import runbook_engine.scheduler"),
    ("executors-see-the-contract", "runbook_executors.cti.common", "import runbook_engine.plan"),
    ("executors-see-the-contract", "runbook_executors.registry", "import runbookctl.render"),
    ("contract-is-closed", "runbook_engine.contract", "import runbook_engine.enums"),
    ("contract-is-closed", "runbook_engine.canonical", "import runbook_engine.state"),
    ("one-kubernetes-client-module", "runbook_operator.steps.jobs", "import kubernetes"),
    ("one-kubernetes-client-module", "runbookctl.cli", "from kubernetes import client"),
    ("one-kubernetes-client-module", "runbook_operator.later", "import kubernetes.watch"),
    ("kopf-in-the-handlers-only", "runbook_operator.execution.reconcile", "import kopf"),
    ("kopf-in-the-handlers-only", "runbook_operator.later", "import kopf"),
    ("kopf-in-the-handlers-only", "runbookctl.cli", "import kopf"),
    (
        "operator-core-is-pure",
        "runbook_operator.execution.reconcile",
        "import runbook_operator.kube",
    ),
    ("operator-core-is-pure", "runbook_operator.steps.observe", "import urllib3"),
    ("operator-core-is-pure", "runbook_operator.crd.rules", "import runbook_operator.kube"),
    # indirectly: a pure module importing one that talks to the API is caught too
    (
        "operator-core-is-pure",
        "runbook_operator.execution.status",
        "import runbook_operator.ledger.store",
    ),
]


@pytest.mark.parametrize(("contract", "module", "line"), VIOLATIONS)
def test_each_contract_breaks_on_its_violation(
    tree: Path, contract: str, module: str, line: str
) -> None:
    add_line(tree, module, line)
    result = lint(tree, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 broken" in result.stdout
    assert module in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("runbook_operator.handlers", "import kopf"),
        ("runbook_operator.settings", "import kopf"),
        ("runbook_operator.__main__", "import kopf"),
        ("runbook_operator.kube", "import kubernetes.watch"),
        ("runbook_executors.base", "from runbook_engine.wire import CamelModel"),
    ],
)
def test_the_named_exceptions_are_allowed(tree: Path, module: str, line: str) -> None:
    add_line(tree, module, line)
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
