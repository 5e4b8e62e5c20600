"""An execution's audit chain as a series of ConfigMap segments (pure: manifests in and out).

Segment `k` is the ConfigMap `names.ledger_configmap(execution, uid, k)`, with no owner (the
ledger outlives the execution) and a retention label. Its data:

- `entries.jsonl`: one entry per line, canonical JSON (RFC 8785);
- `segment.json`: execution id/name/uid, `index`, `firstSeq`, and `previous` — the
  predecessor's name, uid and final hash (null for segment 0); once sealed also `count` and
  `finalHash`;
- `checkpoint.json` (optional): the latest signed checkpoint written while it was open.

Before a segment would pass `max_bytes` of data (the apiserver's limit is 1 MiB) it is sealed
(`immutable: true`) and the next one is created. Writes are planned one at a time
(`plan_append`, `plan_checkpoint`): the store executes a write, folds the answer back in with
`parse_segment` and plans the next, because a new segment must record its predecessor's uid,
which exists only once the predecessor does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook_engine.audit import GENESIS_HASH
from runbook_engine.canonical import canonical_json
from runbook_operator import names
from runbook_operator.names import ExecutionRef

ENTRIES_KEY = "entries.jsonl"
SEGMENT_KEY = "segment.json"
CHECKPOINT_KEY = "checkpoint.json"
COMPONENT = "ledger"
SEGMENT_MAX_BYTES = 900_000
"""Data bytes per segment; the apiserver refuses a ConfigMap over 1 MiB (1,048,576) of data."""
SEAL_RESERVE = 256
"""Room kept for the `count` and `finalHash` that sealing adds to segment.json."""


class LedgerError(RuntimeError):
    """The ledger cannot be written as asked (damaged, or an entry larger than a segment)."""


@dataclass(frozen=True, slots=True)
class LedgerFault:
    """Something wrong in the stored ledger, located by segment, entry and line.

    Not the engine's `Problem` (a field of a document and a reason): a fault lives in stored
    bytes, and an auditor needs the ConfigMap and line to look at."""

    segment: str
    reason: str
    seq: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else "ledger"
        line = f", line {self.line}" if self.line is not None else ""
        return f"{where} (segment {self.segment}{line}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Segment:
    """One parsed segment ConfigMap. `entries` keeps a line that is not JSON as a raw string."""

    name: str
    uid: str
    resource_version: str
    created: str
    immutable: bool
    meta: Mapping[str, Any]
    lines: tuple[str, ...]
    entries: tuple[Any, ...]
    checkpoint: Any
    data: Mapping[str, str]
    problems: tuple[LedgerFault, ...] = field(default=())

    @property
    def size(self) -> int:
        return data_size(self.data)

    @property
    def index(self) -> int:
        value = self.meta.get("index")
        return value if type(value) is int else -1

    @property
    def first_seq(self) -> int:
        value = self.meta.get("firstSeq")
        return value if type(value) is int else -1

    @property
    def sealed(self) -> bool:
        return self.immutable or self.meta.get("sealed") is True

    @property
    def final_hash(self) -> str:
        """Hash of the last entry, or what the segment started from if it has none."""
        for entry in reversed(self.entries):
            return str(entry.get("hash")) if isinstance(entry, Mapping) else ""
        return _start(self.meta)


def _start(meta: Mapping[str, Any]) -> str:
    """The hash a segment's first entry links to, as its metadata records it."""
    previous = meta.get("previous")
    return str(previous.get("finalHash")) if isinstance(previous, Mapping) else GENESIS_HASH


# -- encoding -----------------------------------------------------------------------------------
def entry_line(entry: Mapping[str, Any]) -> str:
    """One entry as stored: its canonical JSON (key order and spacing never matter to a hash)."""
    return canonical_json(dict(entry)).decode()


def data_size(data: Mapping[str, str]) -> int:
    """Bytes the apiserver counts against the ConfigMap limit: keys plus UTF-8 values."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


def _link(previous: Segment | None) -> dict[str, str] | None:
    if previous is None:
        return None
    return {"name": previous.name, "uid": previous.uid, "finalHash": previous.final_hash}


def segment_meta(
    lid: ExecutionRef, index: int, first_seq: int, previous: Segment | None
) -> dict[str, Any]:
    return {
        "executionId": lid.execution_id,
        "namespace": lid.namespace,
        "execution": lid.name,
        "executionUid": lid.uid,
        "index": index,
        "firstSeq": first_seq,
        "previous": _link(previous),
    }


def segment_labels(lid: ExecutionRef) -> dict[str, str]:
    out = names.labels(lid.name, lid.uid, component=COMPONENT)
    out[names.RETENTION_LABEL] = "true"
    return out


def selector(uid: str | None = None, execution: str | None = None) -> str:
    """Label selector for ledger segments: of one execution object, or of every one of a name."""
    parts = [f"{names.COMPONENT_LABEL}={COMPONENT}"]
    if uid is not None:
        parts.append(f"{names.EXECUTION_UID_LABEL}={uid}")
    if execution is not None:
        parts.append(f"{names.EXECUTION_LABEL}={names.label_value(execution)}")
    return ",".join(parts)


def _data(meta: Mapping[str, Any], lines: Sequence[str], checkpoint: str | None) -> dict[str, str]:
    data = {
        SEGMENT_KEY: json.dumps(meta, sort_keys=True),
        ENTRIES_KEY: "".join(f"{line}\n" for line in lines),
    }
    if checkpoint is not None:
        data[CHECKPOINT_KEY] = checkpoint
    return data


def segment_manifest(
    lid: ExecutionRef,
    meta: Mapping[str, Any],
    lines: Sequence[str],
    *,
    checkpoint: str | None = None,
    sealed: bool = False,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """The ConfigMap of one segment (no ownerReference: the ledger outlives the execution)."""
    meta = dict(meta)
    if sealed:
        last = [json.loads(line)["hash"] for line in lines[-1:]]
        meta.update(sealed=True, count=len(lines), finalHash=last[0] if last else _start(meta))
    metadata: dict[str, Any] = {
        "name": lid.ledger_segment(int(meta["index"])),
        "namespace": lid.namespace,
        "labels": segment_labels(lid),
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": _data(meta, lines, checkpoint),
    }
    if sealed:
        body["immutable"] = True
    return body


# -- parsing ------------------------------------------------------------------------------------
def _parse_lines(name: str, text: str, first_seq: int) -> tuple[list[Any], list[LedgerFault]]:
    entries: list[Any] = []
    problems: list[LedgerFault] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entries.append(json.loads(line))
        except ValueError as exc:
            entries.append(line)
            seq = first_seq + number - 1 if first_seq >= 0 else None
            problems.append(LedgerFault(name, f"line is not JSON ({exc})", seq, number))
    return entries, problems


def _parse_json(name: str, data: Mapping[str, str], key: str) -> tuple[Any, list[LedgerFault]]:
    if key not in data:
        return None, []
    try:
        return json.loads(data[key]), []
    except ValueError as exc:
        return None, [LedgerFault(name, f"{key} is not JSON ({exc})")]


def parse_segment(configmap: Mapping[str, Any]) -> Segment:
    """A segment from a ConfigMap as the apiserver returns it; damage goes to `problems`."""
    md = configmap.get("metadata") or {}
    name = str(md.get("name", ""))
    data = {str(k): str(v) for k, v in (configmap.get("data") or {}).items()}
    meta, problems = _parse_json(name, data, SEGMENT_KEY)
    if not isinstance(meta, Mapping):
        problems.append(LedgerFault(name, f"{SEGMENT_KEY} missing or not a JSON object"))
        meta = {}
    checkpoint, cp_problems = _parse_json(name, data, CHECKPOINT_KEY)
    first = meta.get("firstSeq")
    entries, line_problems = _parse_lines(
        name, data.get(ENTRIES_KEY, ""), first if type(first) is int else -1
    )
    return Segment(
        name=name,
        uid=str(md.get("uid", "")),
        resource_version=str(md.get("resourceVersion", "")),
        created=str(md.get("creationTimestamp", "")),
        immutable=configmap.get("immutable") is True,
        meta=meta,
        lines=tuple(data.get(ENTRIES_KEY, "").splitlines()),
        entries=tuple(entries),
        checkpoint=checkpoint,
        data=data,
        problems=(*problems, *cp_problems, *line_problems),
    )


def ordered(configmaps: Sequence[Mapping[str, Any]]) -> list[Segment]:
    """Parsed segments in index order (a segment without a readable index sorts first)."""
    return sorted((parse_segment(cm) for cm in configmaps), key=lambda s: (s.index, s.name))


def all_entries(segments: Sequence[Segment]) -> list[Any]:
    return [e for s in segments for e in s.entries]


# -- structure: each rule checks one segment against its predecessor ---------------------------
@dataclass(frozen=True, slots=True)
class _At:
    """A segment in its place: `k`-th, after `prev`, expected to start at `seq`."""

    lid: ExecutionRef
    seg: Segment
    k: int
    prev: Segment | None
    seq: int
    last: bool


def _index_rule(at: _At) -> str | None:
    if at.seg.index == at.k:
        return None
    if at.seg.index > at.k:
        return f"segment {at.k} ({at.lid.ledger_segment(at.k)}) is missing"
    return f"segment.json index is {at.seg.meta.get('index')!r}, expected {at.k}"


def _name_rule(at: _At) -> str | None:
    expected = at.lid.ledger_segment(at.seg.index)
    return None if at.seg.name == expected else f"named {at.seg.name}, expected {expected}"


def _owner_rule(at: _At) -> str | None:
    exec_id, uid = at.seg.meta.get("executionId"), at.seg.meta.get("executionUid")
    if exec_id == at.lid.execution_id and uid == at.lid.uid:
        return None
    return f"belongs to execution {exec_id!r} (uid {uid!r}), not {at.lid.execution_id!r}"


def _first_seq_rule(at: _At) -> str | None:
    got = at.seg.meta.get("firstSeq")
    return None if got == at.seq else f"firstSeq is {got!r}, expected {at.seq}"


def _link_rule(at: _At) -> str | None:
    got = at.seg.meta.get("previous")
    want = _link(at.prev)
    if got == want:
        return None
    if want is None:
        return f"the first segment names a predecessor: {got!r}"
    return f"previous is {got!r}, expected {want!r} (segment replaced, edited or reordered)"


def _sealed_rule(at: _At) -> str | None:
    if at.seg.immutable != (at.seg.meta.get("sealed") is True):
        return "segment.json and the ConfigMap's `immutable` disagree about the seal"
    if not at.last and not at.seg.sealed:
        return "not sealed, yet a later segment follows it"
    return None


def _seal_record_rule(at: _At) -> str | None:
    if at.seg.meta.get("sealed") is not True:
        return None
    if at.seg.meta.get("count") != len(at.seg.lines):
        return (
            f"sealed with count {at.seg.meta.get('count')!r} but holds {len(at.seg.lines)} entries"
        )
    if at.seg.meta.get("finalHash") != at.seg.final_hash:
        return "sealed finalHash does not match its last entry"
    return None


_STRUCTURE_RULES = (
    _index_rule,
    _name_rule,
    _owner_rule,
    _first_seq_rule,
    _link_rule,
    _sealed_rule,
    _seal_record_rule,
)


def structure_problems(lid: ExecutionRef, segments: Sequence[Segment]) -> list[LedgerFault]:
    """Every way the segments fail to form one continuous, sealed series, in ledger order."""
    problems: list[LedgerFault] = []
    seq = 0
    for k, seg in enumerate(segments):
        prev = segments[k - 1] if k else None
        at = _At(lid, seg, k, prev, seq, k == len(segments) - 1)
        problems.extend(seg.problems)
        for rule in _STRUCTURE_RULES:
            reason = rule(at)
            if reason:
                at_end = rule is _seal_record_rule and seg.lines
                where = seq + len(seg.lines) - 1 if at_end else seq
                problems.append(LedgerFault(seg.name, reason, where))
        seq += len(seg.lines)
    return sorted(problems, key=lambda p: -1 if p.seq is None else p.seq)


# -- planning writes ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Write:
    """One API write: PUT `body` (guarded by its resourceVersion) or, if not `replace`, POST it.

    `stored` pending entries go in with it; `final` says the request is complete after it.
    """

    body: dict[str, Any]
    replace: bool
    stored: int
    final: bool


def _open(segments: Sequence[Segment]) -> Segment | None:
    return segments[-1] if segments and not segments[-1].sealed else None


def _next_meta(lid: ExecutionRef, segments: Sequence[Segment]) -> dict[str, Any]:
    if not segments:
        return segment_meta(lid, 0, 0, None)
    last = segments[-1]
    return segment_meta(lid, last.index + 1, last.first_seq + len(last.lines), last)


def _fit(base: int, lines: Sequence[str], max_bytes: int) -> int:
    """How many of `lines` fit after `base` bytes, with room left to seal."""
    size, n = base + SEAL_RESERVE, 0
    for line in lines:
        size += len(line.encode()) + 1
        if size > max_bytes:
            break
        n += 1
    return n


def _check_sizes(lid: ExecutionRef, pending: Sequence[str], max_bytes: int) -> None:
    room = max_bytes - data_size(_data(segment_meta(lid, 9999, 10**9, None), [], None))
    for line in pending:
        if _fit(0, [line], room) == 0:
            raise LedgerError(
                f"audit entry of {len(line.encode())} bytes does not fit in a ledger segment "
                f"({max_bytes} bytes): {line[:120]}…"
            )


def _rewrite(
    lid: ExecutionRef, seg: Segment, lines: Sequence[str], checkpoint: str | None, sealed: bool
) -> dict[str, Any]:
    return segment_manifest(
        lid,
        seg.meta,
        lines,
        checkpoint=checkpoint,
        sealed=sealed,
        resource_version=seg.resource_version,
    )


def plan_append(
    lid: ExecutionRef,
    segments: Sequence[Segment],
    pending: Sequence[str],
    max_bytes: int = SEGMENT_MAX_BYTES,
) -> Write | None:
    """The next write to store `pending` entry lines: fill the open segment, seal it when full,
    then create the next. None when nothing is pending."""
    if not pending:
        return None
    _check_sizes(lid, pending, max_bytes)
    seg = _open(segments)
    if seg is None:
        meta = _next_meta(lid, segments)
        n = _fit(data_size(_data(meta, [], None)), pending, max_bytes)
        return Write(segment_manifest(lid, meta, pending[:n]), False, n, n == len(pending))
    n = _fit(seg.size, pending, max_bytes)
    full = n < len(pending)
    body = _rewrite(lid, seg, [*seg.lines, *pending[:n]], seg.data.get(CHECKPOINT_KEY), full)
    return Write(body, True, n, not full)


def plan_checkpoint(
    lid: ExecutionRef,
    segments: Sequence[Segment],
    checkpoint: Mapping[str, Any],
    max_bytes: int = SEGMENT_MAX_BYTES,
) -> Write:
    """The next write to store `checkpoint` in the open segment (sealing a full one first)."""
    text = json.dumps(checkpoint, sort_keys=True)
    seg = _open(segments)
    if seg is None:
        body = segment_manifest(lid, _next_meta(lid, segments), [], checkpoint=text)
        return Write(body, False, 0, True)
    data = {**seg.data, CHECKPOINT_KEY: text}
    if data_size(data) + SEAL_RESERVE <= max_bytes:
        return Write(_rewrite(lid, seg, seg.lines, text, False), True, 0, True)
    return Write(_rewrite(lid, seg, seg.lines, seg.data.get(CHECKPOINT_KEY), True), True, 0, False)
