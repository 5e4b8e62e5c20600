"""`runbookctl ui --results DIR`: local runs, read-only, from the files `runbookctl run` writes:
`-o json` result documents (*.json) and `--ledger` JSON Lines files (*.jsonl). The ledger badge
is the check `runbookctl verify --ledger FILE --execution-id ID` makes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook_engine.audit import verify
from runbook_engine.plan import Plan
from runbookctl.ledger import read_lines
from runbookctl.ui import model

NAMESPACE = "local"
MAX_FILES = 2000
MAX_RESULT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Page:
    items: list[dict[str, Any]]
    next_token: str
    error: str | None = None


class ResultsSource:
    """A folder of local results, shaped as RunbookExecution objects for the pages."""

    read_only = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def whoami(self) -> str:
        return "local"

    def namespaces(self) -> list[str]:
        return [NAMESPACE]

    def _documents(self) -> dict[str, tuple[Path, dict[str, Any]]]:
        out: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path in sorted(self.folder.glob("*.json"))[:MAX_FILES]:
            try:
                if path.stat().st_size > MAX_RESULT_BYTES:
                    continue
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("executionId"), str):
                out[doc["executionId"]] = (path, doc)
        return out

    @staticmethod
    def _as_object(path: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
        status = {k: v for k, v in doc.items() if k != "outputs"}
        return {
            "metadata": {
                "name": str(doc["executionId"]),
                "namespace": NAMESPACE,
                "uid": str(doc["executionId"]),
                "creationTimestamp": doc.get("createdAt"),
                "annotations": {},
            },
            "spec": {"runbookRef": {"name": str(doc.get("runbookId") or "")}},
            "status": status,
            "_file": str(path),
        }

    def list_executions(
        self, namespace: str, limit: int, token: str, filters: Mapping[str, str]
    ) -> _Page:
        from datetime import UTC, datetime

        from runbookctl.ui.source import execution_row

        objs = [self._as_object(p, d) for p, d in self._documents().values()]
        now = datetime.now(UTC)
        objs = [o for o in objs if model.matches(execution_row(o, now), **filters)]
        start = int(token) if token.isdigit() else 0
        page = objs[start : start + limit]
        more = str(start + limit) if start + limit < len(objs) else ""
        return _Page(page, more)

    def execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._documents().get(name)
        return self._as_object(*found) if found else None

    def pinned(self, namespace: str, obj: Mapping[str, Any]) -> tuple[Plan | None, str | None]:
        return (
            None,
            "a local result file does not record the definition: steps are drawn without edges",
        )

    def _ledger_path(self, name: str) -> list[Path]:
        found = self._documents().get(name)
        paths: list[Path] = []
        if found and isinstance(found[1].get("ledger"), str):
            recorded = Path(found[1]["ledger"])
            paths.append(recorded if recorded.is_absolute() else self.folder / recorded.name)
        paths += sorted(self.folder.glob("*.jsonl"))
        return [p for p in dict.fromkeys(paths) if p.is_file()]

    def ledger(self, namespace: str, name: str, uid: str) -> tuple[list[Any], model.Badge]:
        for path in self._ledger_path(name):
            try:
                lines = [ln for ln in read_lines(path)]
            except OSError:
                continue
            chain = [
                ln
                for ln in lines
                if isinstance(ln.entry, dict) and ln.entry.get("executionId") == name
            ]
            if not chain:
                continue
            entries = [ln.entry for ln in chain]
            result = verify(entries)
            headline = str(result)
            first = result.bad_index if not result.valid else None
            return entries, model.badge_from_report(
                result.valid, first, False, f"{path.name}: {headline}"
            )
        return [], model.badge_unknown("no ledger file in the folder holds this execution")

    def output(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[Any, str | None]:
        found = self._documents().get(str(obj["metadata"]["name"]))
        outputs = (found[1].get("outputs") if found else None) or {}
        if step not in outputs:
            return None, f"no output of {step!r} in the result file"
        return outputs[step], None

    def pod_logs(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[str | None, str]:
        return None, "local run: steps ran as processes on this machine, there is no pod log"

    def runbooks(self, namespace: str) -> tuple[list[dict[str, Any]], str | None]:
        return [], "local results: runbooks live in files here (runbookctl graph FILE draws one)"

    def runbook(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def recent_executions(self, namespace: str, runbook: str) -> list[dict[str, Any]]:
        return []

    def start(
        self, namespace: str, runbook: str, spec: Mapping[str, Any]
    ) -> tuple[Any, str | None]:
        raise PermissionError("read-only console")
