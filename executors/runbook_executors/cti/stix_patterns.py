"""STIX patterns read with the OASIS reference grammar (`stix2-patterns`), for graph lookup.

LOOKUP_GRAPH indexes an indicator object under every observable value its pattern names, so
an ingested indicator with that value finds the object. Only some comparisons name such a
value; every other comparison, qualifier and observation operator is returned as a `Skipped`
entry with its reason, so a report never silently relies on less than the pattern says.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stix2patterns.exceptions import ParseException
from stix2patterns.inspector import INDEX_STAR
from stix2patterns.v20.inspector import InspectionListener as Listener20
from stix2patterns.v20.pattern import Pattern as Pattern20
from stix2patterns.v21.inspector import InspectionListener as Listener21
from stix2patterns.v21.pattern import Pattern as Pattern21

from runbook_executors.cti.indicators import Rejected, classify

HASH_ALGOS: dict[str, str] = {
    "md5": "md5",
    "sha-1": "sha1",
    "sha1": "sha1",
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-512": "sha512",
    "sha512": "sha512",
}
"""STIX hash algorithm names (hashing vocabulary, any case) -> INGEST indicator type."""

SCO_VALUE_TYPES: dict[str, str] = {
    "ipv4-addr": "ipv4",
    "ipv6-addr": "ipv6",
    "domain-name": "domain",
    "url": "url",
    "email-addr": "email",
}
"""SCO types whose `value` property is an indicator INGEST produces."""

_REF_VALUE_TYPES = frozenset({"ipv4", "ipv6", "domain", "url", "email"})
"""What the `value` behind a reference (`from_ref.value`, `resolves_to_refs[*].value`) may be."""

QUALIFIER_REASON = (
    "qualifier not evaluated: a value in the pattern links the indicator regardless of "
    "timing and repetition"
)
OPERATOR_REASON: dict[str, str] = {
    "AND": "not evaluated: each comparison links the indicator on its own (AND is read as OR)",
    "FOLLOWEDBY": "not evaluated: the order of observations is ignored (read as OR)",
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PatternTerm:
    """One observable value named by a pattern, normalised as INGEST would."""

    indicator_type: str
    value: str
    network: Network | None = None


@dataclass(frozen=True)
class Skipped:
    """A part of a pattern that is not used for lookup, and why.

    `kind` is `comparison`, `qualifier`, `operator` or `pattern` (the whole pattern).
    """

    kind: str
    text: str
    reason: str

    def wire(self) -> dict[str, str]:
        return {self.kind: self.text, "reason": self.reason}


@dataclass(frozen=True)
class PatternReading:
    terms: tuple[PatternTerm, ...]
    skipped: tuple[Skipped, ...]


# -- parsing -----------------------------------------------------------------------------------


def _with_and(listener: type[Any]) -> type[Any]:
    """The reference inspector, also noting comparison-level AND (it only notes observation ops)."""

    class _Listener(listener):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.comparison_and = False

        def exitComparisonExpressionAnd(self, ctx: Any) -> None:  # ANTLR listener name
            if ctx.AND():
                self.comparison_and = True

    return _Listener


_GRAMMARS: dict[str, tuple[type[Any], type[Any]]] = {
    "2.0": (Pattern20, _with_and(Listener20)),
    "2.1": (Pattern21, _with_and(Listener21)),
}


@functools.lru_cache(maxsize=65536)
def read_pattern(pattern: str, spec_version: str) -> PatternReading:
    """Terms and skipped parts of one STIX pattern under the grammar of `spec_version`."""
    pattern_cls, listener_cls = _GRAMMARS["2.0" if spec_version == "2.0" else "2.1"]
    try:
        parsed = pattern_cls(pattern)
    except ParseException as exc:
        reason = f"does not parse under the STIX {spec_version} pattern grammar: {exc}"
        return PatternReading((), (Skipped("pattern", pattern[:300], reason),))
    except Exception as exc:  # the parser's own failure (e.g. nesting too deep) is not ours
        reason = f"could not be parsed ({type(exc).__name__}: {exc})"
        return PatternReading((), (Skipped("pattern", pattern[:300], reason),))
    listener = listener_cls()
    parsed.walk(listener)
    data = listener.pattern_data()
    terms: list[PatternTerm] = []
    skipped: list[Skipped] = []
    for obj_type in sorted(data.comparisons):
        for path, op, literal in data.comparisons[obj_type]:
            used, why = _comparison_terms(obj_type, list(path), op, literal)
            terms.extend(used)
            if why:
                skipped.append(Skipped("comparison", _render(obj_type, path, op, literal), why))
    skipped += [Skipped("qualifier", q, QUALIFIER_REASON) for q in sorted(data.qualifiers)]
    operators = {op for op in data.observation_ops if op in OPERATOR_REASON}
    if listener.comparison_and:
        operators.add("AND")
    skipped += [Skipped("operator", op, OPERATOR_REASON[op]) for op in sorted(operators)]
    return PatternReading(tuple(dict.fromkeys(terms)), tuple(skipped))


def _render(obj_type: str, path: list[Any], op: str, literal: str) -> str:
    """`object:path op literal`, as the comparison reads in the pattern."""
    text = ""
    for step in path:
        if step is INDEX_STAR:
            text += "[*]"
        elif isinstance(step, int):
            text += f"[{step}]"
        else:
            part = f"'{step}'" if re.search(r"[^A-Za-z0-9_]", str(step)) else str(step)
            text += f".{part}" if text else part
    return f"{obj_type}:{text} {op} {literal}"


# -- one comparison ----------------------------------------------------------------------------


def _comparison_terms(
    obj_type: str, path: list[Any], op: str, literal: str
) -> tuple[list[PatternTerm], str | None]:
    """The terms a comparison yields, and the reason for what it does not yield (or None)."""
    if op.startswith("NOT") or op == "!=":
        return [], "negated comparison: not evaluated"
    reader = _OPERATORS.get(op)
    if reader is None:
        return [], f"operator {op} is not evaluated (only =, IN and ISSUBSET on IP addresses)"
    kinds = _observable_types(obj_type, path)
    if isinstance(kinds, str):
        return [], kinds
    return reader(obj_type, kinds, literal)


def _observable_types(obj_type: str, path: list[Any]) -> frozenset[str] | str:
    """Indicator types the compared property can hold, or why it is not an indexed observable."""
    names = [str(p) for p in path if isinstance(p, str)]
    if path == ["value"] and obj_type in SCO_VALUE_TYPES:
        return frozenset({SCO_VALUE_TYPES[obj_type]})
    if len(names) >= 2 and names[-2] == "hashes" and path[-1] == names[-1]:
        algo = HASH_ALGOS.get(names[-1].lower())
        return frozenset({algo}) if algo else f"hash algorithm {names[-1]} is not indexed"
    if len(path) >= 2 and path[-1] == "value" and _is_reference(path[:-1]):
        return _REF_VALUE_TYPES
    return f"{obj_type}:{'.'.join(names)} is not an observable INGEST produces"


def _is_reference(path: list[Any]) -> bool:
    """`x_ref` or `x_refs[n]`/`x_refs[*]`: the path leads to another object."""
    last = path[-1]
    if isinstance(last, str):
        return last.endswith("_ref")
    return len(path) >= 2 and isinstance(path[-2], str) and path[-2].endswith("_refs")


def _literal_kind(literal: str) -> str:
    if literal.startswith("'"):
        return "string"
    if literal[:2] in ("h'", "b'"):
        return "binary"
    if literal.startswith("t'"):
        return "timestamp"
    if literal in ("true", "false"):
        return "boolean"
    return "number"


def _unquote(literal: str) -> str:
    return literal[1:-1].replace("\\'", "'").replace("\\\\", "\\")


def _equal(
    obj_type: str, kinds: frozenset[str], literal: str
) -> tuple[list[PatternTerm], str | None]:
    kind = _literal_kind(literal)
    if kind != "string":
        return [], f"{kind} literal is not an observable value"
    term = _term(kinds, _unquote(literal))
    if term is None:
        return [], f"value is not a valid {'/'.join(sorted(kinds))}"
    return [term], None


def _member(
    obj_type: str, kinds: frozenset[str], literal: str
) -> tuple[list[PatternTerm], str | None]:
    """`IN ('a', 'b')`: each member is an equality alternative."""
    members = re.findall(r"'(?:[^'\\]|\\.)*'|[^,()\s]+", literal)
    terms: list[PatternTerm] = []
    bad: list[str] = []
    for member in members:
        found, reason = _equal(obj_type, kinds, member)
        terms += found
        if reason:
            bad.append(member)
    return terms, (f"members not used (not valid values): {', '.join(bad)}" if bad else None)


def _subset(
    obj_type: str, kinds: frozenset[str], literal: str
) -> tuple[list[PatternTerm], str | None]:
    """`ipv4-addr:value ISSUBSET '198.51.100.0/24'`: the address lies in a network."""
    if not kinds <= {"ipv4", "ipv6"} or _literal_kind(literal) != "string":
        return [], "ISSUBSET is only evaluated on IP address values"
    term = _network_term(_unquote(literal))
    return ([term], None) if term else ([], "value is not a valid IP network")


_OPERATORS: dict[str, Callable[[str, frozenset[str], str], tuple[list[PatternTerm], str | None]]]
_OPERATORS = {"=": _equal, "IN": _member, "ISSUBSET": _subset}


def _network_term(value: str) -> PatternTerm | None:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    if net.num_addresses == 1:
        return PatternTerm(f"ipv{net.version}", str(net.network_address))
    return PatternTerm(f"ipv{net.version}", str(net), network=net)


def _term(kinds: frozenset[str], value: str) -> PatternTerm | None:
    """The normalised term for `value` if it is one of `kinds` (CIDR values become networks)."""
    if kinds & {"ipv4", "ipv6"} and "/" in value:
        term = _network_term(value)
        return term if term and term.indicator_type in kinds else None
    try:
        ind = classify(value)
    except Rejected:
        return None
    return PatternTerm(ind.type, ind.value) if ind.type in kinds else None


def observable_term(indicator_type: str, value: str) -> PatternTerm | None:
    """The normalised term for an SCO value of a known type (None if it does not classify)."""
    return _term(frozenset({indicator_type}), value)
