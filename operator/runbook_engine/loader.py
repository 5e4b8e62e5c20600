"""Reading runbooks: a `Runbook` manifest (apiVersion/kind/metadata/spec) or a plain definition.

Pure: text in, definition or plan out. Reading files (with a size limit) is the shells' job
(`runbookctl.files`); the operator gets its documents from the API server.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from runbook_engine.documents import DocumentTooDeep, DocumentTooLarge, yaml_documents
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


def parse_documents(text: str, *, source: str | None = None) -> list[Any]:
    """The YAML/JSON documents in `text` (empty ones dropped), within the document limits.

    Refused with a clear problem: malformed YAML, duplicate keys, nesting deeper than
    MAX_DOCUMENT_DEPTH, and aliases that expand past MAX_DOCUMENT_NODES (an alias bomb)."""
    try:
        return [d for d in yaml_documents(text) if d is not None]
    except DocumentTooDeep as exc:
        raise InvalidRunbook([Problem(exc.field, str(exc))], source=source) from None
    except (yaml.YAMLError, DocumentTooLarge) as exc:
        raise InvalidRunbook(
            [Problem("", f"not valid YAML/JSON: {_yaml_reason(exc)}")], source=source
        ) from None


def _yaml_reason(exc: Exception) -> str:
    """The parser's reason with its line and column, without the echo of the source text."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(exc)


def runbook_document(docs: Sequence[Any], *, source: str | None = None) -> Mapping[str, Any]:
    """The single Runbook document among `docs` (other kinds are ignored)."""
    runbooks = [d for d in docs if isinstance(d, Mapping) and (d.get("kind") in (None, "Runbook"))]
    if not runbooks:
        raise InvalidRunbook([Problem("", "no Runbook document found")], source=source)
    if len(runbooks) > 1:
        raise InvalidRunbook(
            [Problem("", f"{len(runbooks)} Runbook documents found; expected one")], source=source
        )
    return runbooks[0]


def definition_from_text(text: str, *, source: str | None = None) -> RunbookDefinition:
    """The single Runbook in a YAML/JSON text (other kinds in the same text are ignored)."""
    return definition_from_document(
        runbook_document(parse_documents(text, source=source)), source=source
    )


def plan_from_text(
    text: str, known_action_types: Collection[str] | None = None, *, source: str | None = None
) -> Plan:
    """Parse and fully validate (structure and graph); graph problems get manifest paths."""
    doc = runbook_document(parse_documents(text, source=source), source=source)
    definition = definition_from_document(doc, source=source)
    try:
        return compile_plan(definition, known_action_types)
    except InvalidRunbook as exc:
        prefix = "spec." if doc.get("kind") == "Runbook" else ""
        raise InvalidRunbook(
            [Problem(prefix + p.field, p.reason) for p in exc.problems], source=source
        ) from None
