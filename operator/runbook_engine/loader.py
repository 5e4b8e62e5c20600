"""Reading runbooks: a `Runbook` manifest (apiVersion/kind/metadata/spec) or a plain definition.

Parsing is pure (`definition_from_document`); `load_runbook_file` is the thin file reader.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runbook_engine.model import ExecutionRequest, RunbookDefinition
from runbook_engine.plan import Plan, compile_plan
from runbook_engine.problems import InvalidRunbook, Problem, problems_from_pydantic


def definition_from_document(doc: Any, *, source: str | None = None) -> RunbookDefinition:
    """Accept a Runbook manifest or a plain definition; raise InvalidRunbook naming each field."""
    if not isinstance(doc, Mapping):
        raise InvalidRunbook(
            [Problem("", f"expected a mapping, got {type(doc).__name__}")], source=source
        )
    prefix = ""
    body: Any = doc
    if "kind" in doc or "spec" in doc:
        kind = doc.get("kind")
        if kind != "Runbook":
            raise InvalidRunbook(
                [Problem("kind", f"expected Runbook, got {kind!r}")], source=source
            )
        spec, metadata = doc.get("spec") or {}, doc.get("metadata") or {}
        for part, value in (("metadata", metadata), ("spec", spec)):
            if not isinstance(value, Mapping):
                raise InvalidRunbook(
                    [Problem(part, f"expected a mapping, got {type(value).__name__}")],
                    source=source,
                )
        body = dict(spec)
        prefix = "spec"
        name = metadata.get("name")
        if "id" not in body and name:
            body["id"] = name
    try:
        return RunbookDefinition.model_validate(body)
    except ValidationError as exc:
        raise InvalidRunbook(problems_from_pydantic(exc, prefix), source=source) from None


def request_from_document(doc: Any, *, source: str | None = None) -> ExecutionRequest:
    """A RunbookExecution manifest (or a bare spec) as an ExecutionRequest."""
    if not isinstance(doc, Mapping):
        raise InvalidRunbook(
            [Problem("", f"expected a mapping, got {type(doc).__name__}")], source=source
        )
    prefix, body = "", doc
    if "kind" in doc:
        if doc["kind"] != "RunbookExecution":
            raise InvalidRunbook(
                [Problem("kind", f"expected RunbookExecution, got {doc['kind']!r}")], source=source
            )
        body, prefix = doc.get("spec") or {}, "spec"
    try:
        return ExecutionRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidRunbook(problems_from_pydantic(exc, prefix), source=source) from None


def read_yaml_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRunbook(
            [Problem("", f"cannot read file: {exc.strerror}")], source=str(path)
        ) from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidRunbook(
            [Problem("", f"not valid YAML/JSON: {exc}")], source=str(path)
        ) from None


def _runbook_document(path: Path) -> Mapping[str, Any]:
    """The single Runbook document in a YAML/JSON file (other kinds in it are ignored)."""
    docs = read_yaml_documents(path)
    runbooks = [d for d in docs if isinstance(d, Mapping) and (d.get("kind") in (None, "Runbook"))]
    if not runbooks:
        raise InvalidRunbook([Problem("", "no Runbook document found")], source=str(path))
    if len(runbooks) > 1:
        raise InvalidRunbook(
            [Problem("", f"{len(runbooks)} Runbook documents found; expected one")],
            source=str(path),
        )
    return runbooks[0]


def load_runbook_file(path: Path) -> RunbookDefinition:
    """The single Runbook in a YAML/JSON file (other kinds in the same file are ignored)."""
    return definition_from_document(_runbook_document(path), source=str(path))


def load_plan(path: Path, known_action_types: Collection[str] | None = None) -> Plan:
    """Load and fully validate (structure and graph); graph problems get manifest paths."""
    doc = _runbook_document(path)
    definition = definition_from_document(doc, source=str(path))
    try:
        return compile_plan(definition, known_action_types)
    except InvalidRunbook as exc:
        prefix = "spec." if doc.get("kind") == "Runbook" else ""
        raise InvalidRunbook(
            [Problem(prefix + p.field, p.reason) for p in exc.problems], source=str(path)
        ) from None
