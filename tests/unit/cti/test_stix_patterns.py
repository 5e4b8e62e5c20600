"""STIX patterns through the OASIS reference grammar: what is used, what is listed and why."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_executors.cti.indicators import classify
from runbook_executors.cti.stix_patterns import read_pattern


def _terms(pattern: str, version: str = "2.1") -> set[tuple[str, str]]:
    return {(t.indicator_type, t.value) for t in read_pattern(pattern, version).terms}


def _skipped(pattern: str, version: str = "2.1") -> list[dict[str, str]]:
    return [s.wire() for s in read_pattern(pattern, version).skipped]


def test_reference_and_list_paths_yield_the_value_behind_the_reference() -> None:
    pattern = (
        "[domain-name:resolves_to_refs[*].value = '198.51.100.7'] OR "
        "[network-traffic:dst_ref.value = 'c2.example'] OR "
        "[email-message:from_ref.value = 'Bob@Mail.Example']"
    )
    assert _terms(pattern) == {
        ("ipv4", "198.51.100.7"),
        ("domain", "c2.example"),
        ("email", "bob@mail.example"),
    }
    assert _skipped(pattern) == []


def test_in_sets_and_issubset_networks_are_used() -> None:
    pattern = (
        "[ipv4-addr:value IN ('198.51.100.1', '203.0.113.9')] OR "
        "[ipv4-addr:value ISSUBSET '192.0.2.0/24']"
    )
    reading = read_pattern(pattern, "2.1")
    assert {(t.indicator_type, t.value) for t in reading.terms} == {
        ("ipv4", "198.51.100.1"),
        ("ipv4", "203.0.113.9"),
        ("ipv4", "192.0.2.0/24"),
    }
    assert [t.network is not None for t in reading.terms if t.value.endswith("/24")] == [True]
    assert reading.skipped == ()


@pytest.mark.parametrize(
    ("comparison", "reason_part"),
    [
        ("ipv4-addr:value NOT = '198.51.100.1'", "negated"),
        ("ipv4-addr:value != '198.51.100.1'", "negated"),
        ("network-traffic:dst_port = 443", "network-traffic:dst_port is not an observable"),
        ("file:size = 1024", "file:size is not an observable"),
        ("domain-name:value = 42", "number literal"),
        ("ipv4-addr:value = true", "boolean literal"),
        ("file:hashes.MD5 = h'ff'", "binary literal"),
        ("ipv4-addr:value = t'2020-01-01T00:00:00Z'", "timestamp literal"),
        ("domain-name:value LIKE '%.example'", "operator LIKE"),
        ("url:value MATCHES '^http'", "operator MATCHES"),
        ("domain-name:value = 'not a domain'", "not a valid domain"),
        ("file:hashes.SSDEEP = '3:abc:def'", "hash algorithm SSDEEP"),
    ],
)
def test_each_unused_comparison_is_listed_with_its_reason(
    comparison: str, reason_part: str
) -> None:
    (skipped,) = _skipped(f"[{comparison}]")
    assert skipped["comparison"] == comparison
    assert reason_part in skipped["reason"]
    assert _terms(f"[{comparison}]") == set()


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            "[url:value = 'http://a.example/'] WITHIN 600 SECONDS",
            {("qualifier", "WITHIN 600 SECONDS")},
        ),
        (
            "[url:value = 'http://a.example/'] REPEATS 5 TIMES",
            {("qualifier", "REPEATS 5 TIMES")},
        ),
        (
            "[url:value = 'http://a.example/'] START t'2020-01-01T00:00:00Z' "
            "STOP t'2021-01-01T00:00:00Z'",
            {("qualifier", "START t'2020-01-01T00:00:00Z' STOP t'2021-01-01T00:00:00Z'")},
        ),
        (
            "[url:value = 'http://a.example/'] FOLLOWEDBY [domain-name:value = 'b.example']",
            {("operator", "FOLLOWEDBY")},
        ),
        (
            "[url:value = 'http://a.example/'] AND [domain-name:value = 'b.example']",
            {("operator", "AND")},
        ),
        (
            "[url:value = 'http://a.example/' AND domain-name:value = 'b.example']",
            {("operator", "AND")},
        ),
    ],
)
def test_qualifiers_and_operators_that_are_not_evaluated_are_listed(
    pattern: str, expected: set[tuple[str, str]]
) -> None:
    skipped = {(k, v) for s in _skipped(pattern) for k, v in s.items() if k != "reason"}
    assert skipped == expected
    assert ("url", "http://a.example/") in _terms(pattern)  # the values are still used


def test_or_alone_is_evaluated_and_not_listed() -> None:
    assert _skipped("[url:value = 'http://a.example/'] OR [domain-name:value = 'b.example']") == []


def test_a_pattern_outside_the_grammar_is_listed_whole() -> None:
    (skipped,) = _skipped("[ipv4-addr:value = '198.51.100.1'")
    assert skipped["pattern"] == "[ipv4-addr:value = '198.51.100.1'"
    assert "does not parse under the STIX 2.1 pattern grammar" in skipped["reason"]


def test_the_object_version_selects_the_grammar() -> None:
    # START/STOP without t'' timestamps is outside both grammars; the reason names the one used
    (skipped,) = _skipped("[file:hashes.MD5 = 'aa'] START '2020' STOP '2021'", "2.0")
    assert "STIX 2.0 pattern grammar" in skipped["reason"]


_USABLE = st.sampled_from(
    [
        ("ipv4-addr:value = '{v4}'", "ipv4"),
        ("ipv6-addr:value = '2001:db8::{n:x}'", "ipv6"),
        ("domain-name:value = 'h{n}.example'", "domain"),
        ("url:value = 'https://h{n}.example/p'", "url"),
        ("email-addr:value = 'u{n}@h.example'", "email"),
        ("file:hashes.'SHA-256' = '{sha256}'", "sha256"),
    ]
)
_UNUSABLE = st.sampled_from(
    [
        "file:name = 'f{n}.exe'",
        "domain-name:value LIKE '%h{n}'",
        "network-traffic:dst_port = {n}",
        "ipv4-addr:value NOT = '{v4}'",
        "process:pid = {n}",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    usable=st.lists(st.tuples(_USABLE, st.integers(1, 250)), max_size=4),
    unusable=st.lists(st.tuples(_UNUSABLE, st.integers(1, 250)), max_size=4),
)
def test_every_comparison_is_used_or_listed(
    usable: list[tuple[tuple[str, str], int]], unusable: list[tuple[str, int]]
) -> None:
    def fill(template: str, n: int) -> str:
        return template.format(n=n, v4=f"198.51.100.{n}", sha256=f"{n:064x}")

    comparisons = [fill(t, n) for (t, _), n in usable] + [fill(t, n) for t, n in unusable]
    if not comparisons:
        return
    reading = read_pattern(" OR ".join(f"[{c}]" for c in comparisons), "2.1")
    used = {(t.indicator_type, t.value) for t in reading.terms}
    for (template, kind), n in usable:
        value = fill(template, n).split(" = ", 1)[1].strip("'")
        assert (kind, classify(value).value) in used
    listed = {s.text for s in reading.skipped if s.kind == "comparison"}
    assert {fill(t, n) for t, n in unusable} == listed
