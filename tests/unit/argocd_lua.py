"""The Argo CD health scripts, run as Argo CD runs a script from `argocd-cm`, in Lua 5.1.

Argo CD (util/lua/lua.go) runs gopher-lua, a Lua 5.1, with only the package, base and table
libraries unless `resource.customizations.useOpenLibs` is set, and `obj` as a global. Here the
same language comes from lupa's bundled Lua 5.1, with the string, math, io, os, debug and
coroutine libraries and the string methods removed, so a script that needs them fails here as
it would there. tests/e2e/test_gitops_health.py also runs them in gopher-lua itself
(hack/kstatus) on live objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = REPO_ROOT / "charts" / "runbook-operator" / "argocd" / "resource_customizations"
GROUP = "runbook-operator.dev"
KINDS = ("Runbook", "RunbookExecution", "RunbookTrigger")
HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

_SANDBOX = """
local strings = getmetatable("")
if strings ~= nil then strings.__index = nil end
string, math, io, os, debug, coroutine, python = nil, nil, nil, nil, nil, nil, nil
"""


def kind_dir(kind: str) -> Path:
    return CUSTOMIZATIONS / GROUP / kind


def health(kind: str, obj: dict[str, Any]) -> dict[str, str | None]:
    """`hs` of `kind`'s health.lua for `obj`: {"status": ..., "message": ...}."""
    runtime = lupa.lua51.LuaRuntime(register_eval=False, register_builtins=False)
    runtime.execute(_SANDBOX)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((kind_dir(kind) / "health.lua").read_text())
    assert lupa.lua51.lua_type(result) == "table", f"health.lua returned {result!r}"
    status, message = result["status"], result["message"]
    assert status in HEALTH_STATUSES, f"Argo CD rejects the health status {status!r}"
    return {"status": status, "message": message}


def health_tests(kind: str) -> list[dict[str, Any]]:
    """The `tests:` of `kind`'s health_test.yaml (Argo CD's format)."""
    doc = yaml.safe_load((kind_dir(kind) / "health_test.yaml").read_text())
    return list(doc["tests"])


def fixture(kind: str, input_path: str) -> dict[str, Any]:
    return yaml.safe_load((kind_dir(kind) / input_path).read_text())  # type: ignore[no-any-return]
