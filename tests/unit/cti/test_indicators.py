"""Golden tests for refanging, classification and normalisation of tricky indicator input."""

from __future__ import annotations

import pytest

from runbook_executors.cti.indicators import (
    Rejected,
    classify,
    extract_from_text,
    ingest,
    refang,
)

GOLDEN: list[tuple[str, str, str]] = [
    # (raw, expected type, expected normalised value)
    ("198.51.100[.]7", "ipv4", "198.51.100.7"),
    ("198[.]51[.]100[.]7", "ipv4", "198.51.100.7"),
    ("198(dot)51(dot)100(dot)7", "ipv4", "198.51.100.7"),
    (" 203.0.113.9 ", "ipv4", "203.0.113.9"),
    ("<203.0.113.9>,", "ipv4", "203.0.113.9"),
    ("203.0.113.9:8443", "ipv4", "203.0.113.9"),
    ("2001:0DB8:0000:0000:0000:0000:0000:0001", "ipv6", "2001:db8::1"),
    ("[2001:db8::1]", "ipv6", "2001:db8::1"),
    ("[2001:db8::1]:443", "ipv6", "2001:db8::1"),
    ("hxxps://Evil[.]Example/Path?q=1#frag", "url", "https://evil.example/Path?q=1"),
    ("hXXp[:]//203.0.113[.]5:80/x", "url", "http://203.0.113.5/x"),
    ("hxxp://[2001:db8::5]:8443/a", "url", "http://[2001:db8::5]:8443/a"),
    ("https://bücher.example/", "url", "https://xn--bcher-kva.example/"),
    ("www.example.com/login.php", "url", "http://www.example.com/login.php"),
    ("Bücher.example", "domain", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.EXAMPLE.", "domain", "xn--bcher-kva.example"),
    ("ｅｖｉｌ．example", "domain", "evil.example"),
    ("Login.Example.CO.UK", "domain", "login.example.co.uk"),
    ("c2.paper-lantern[.]example:8443", "domain", "c2.paper-lantern.example"),
    ("cdn[.]paper-lantern[.]example", "domain", "cdn.paper-lantern.example"),
    ("admin(at)paper-lantern[.]example", "email", "admin@paper-lantern.example"),
    ("Admin[@]Example.ORG", "email", "admin@example.org"),
    ("D41D8CD98F00B204E9800998ECF8427E", "md5", "d41d8cd98f00b204e9800998ecf8427e"),
    (
        "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
        "sha1",
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    ),
    (
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    (
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
        "sha512",
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ),
    ("cve-2021-44228", "cve", "CVE-2021-44228"),
    ("CVE-2024-123456", "cve", "CVE-2024-123456"),
    ("t1059.001", "attack_technique", "T1059.001"),
    ("T1566", "attack_technique", "T1566"),
]


@pytest.mark.parametrize(("raw", "kind", "value"), GOLDEN)
def test_golden_classification(raw: str, kind: str, value: str) -> None:
    ind = classify(raw)
    assert (ind.type, ind.value) == (kind, value)


REJECTED: list[tuple[str, str]] = [
    ("", "empty"),
    ("   ", "empty"),
    ("garbage", "single-label"),
    ("not an indicator!!", "whitespace"),
    ("999.1.1.1", "not a valid IP"),
    ("010.1.1.1", "leading zero"),
    ("fe80::1%eth0", "zone"),
    ("co.uk", "itself a public suffix"),
    ("foo.notarealtld", "unknown public suffix"),
    ("config.yaml", "unknown public suffix"),
    ("abc123", "hex string of length 6"),
    ("abcxyz", "single-label"),
    ("a" * 64, "degenerate hash"),
    ("0123456789abcdef0123", "hex string of length 20"),
    ("gopher://evil.example/", "unsupported URL scheme"),
    ("-bad-.example", "hyphen"),
    ("x" * 64 + ".example", "too long"),
    ("bad_label!.example", "invalid"),
    ("1.2.3.4:99999", "port"),
    ("evil.example:0", "port"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_rejections_carry_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        classify(raw)
    assert reason in str(info.value)


def test_non_string_is_rejected_not_crashing() -> None:
    result = ingest([42, None, {"x": 1}, "198.51.100.7"])
    assert [i.value for i in result.indicators] == ["198.51.100.7"]
    assert [r["origin"] for r in result.rejected] == [
        "indicators[0]",
        "indicators[1]",
        "indicators[2]",
    ]
    assert all("not a string" in r["reason"] for r in result.rejected)


@pytest.mark.parametrize(
    ("raw", "flags"),
    [
        ("192.0.2.10", {"documentation", "bogon"}),
        ("198.51.100.10", {"documentation", "bogon"}),
        ("203.0.113.10", {"documentation", "bogon"}),
        ("2001:db8::10", {"documentation", "bogon"}),
        ("10.1.2.3", {"private", "bogon"}),
        ("127.0.0.1", {"loopback", "bogon"}),
        ("169.254.1.1", {"link_local", "bogon"}),
        ("224.0.0.251", {"multicast", "bogon"}),
        ("ff02::1", {"multicast", "bogon"}),
        ("fe80::1", {"link_local", "bogon"}),
        ("100.64.0.1", {"bogon"}),
        ("240.0.0.1", {"reserved", "bogon"}),
    ],
)
def test_special_ip_ranges_are_flagged(raw: str, flags: set[str]) -> None:
    assert flags <= set(classify(raw).flags)


def test_global_address_has_no_special_flags() -> None:
    assert classify("8.8.8.8").flags == []
    assert classify("2001:4860:4860::8888").flags == []


def test_defanged_flag_and_idn_metadata() -> None:
    ind = classify("hxxps://bücher[.]example/x")
    assert "defanged" in ind.flags and "idn" in ind.flags
    assert ind.attributes["unicode"] == "bücher.example"
    assert ind.attributes["registeredDomain"] == "xn--bcher-kva.example"


def test_registered_domain_and_suffix_from_the_psl() -> None:
    ind = classify("a.b.login.example.co.uk")
    assert ind.attributes["registeredDomain"] == "example.co.uk"
    assert ind.attributes["publicSuffix"] == "co.uk"
    # A private-section suffix: each github.io user is its own registered domain.
    ind = classify("evil.github.io")
    assert ind.attributes["registeredDomain"] == "evil.github.io"


def test_refang_variants() -> None:
    assert refang("hxxps[:]//a[.]b(.)c{.}d[dot]e(dot)f") == "https://a.b.c.d.e.f"
    assert refang("x[@]y(at)z") == "x@y@z"
    assert refang("plain text stays") == "plain text stays"


def test_duplicates_merge_across_spellings_and_origins() -> None:
    result = ingest(
        ["198.51.100.7", "198.51.100[.]7", " 198.51.100.7 ", "EVIL.example", "evil[.]example."],
        text="seen 198(dot)51(dot)100(dot)7 again",
    )
    assert [(i.type, i.value) for i in result.indicators] == [
        ("ipv4", "198.51.100.7"),
        ("domain", "evil.example"),
    ]
    ip = result.indicators[0].to_dict()
    # the text token is recorded as extracted (after refanging the whole text)
    assert ip["originals"] == sorted(["198.51.100.7", "198.51.100[.]7", " 198.51.100.7 "])
    assert ip["origins"] == ["indicators[0]", "indicators[1]", "indicators[2]", "text"]
    assert "defanged" in ip["flags"]


def test_free_text_extraction_does_not_double_count_url_hosts() -> None:
    text = (
        "Beacon to hxxps://cdn[.]lantern[.]example/gate.php, then 198.51.100[.]23 and "
        "2001:db8::7 (T1071.001). Mail from admin[@]lantern.example. Hash "
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855. CVE-2023-1234 at 10:30."
    )
    found = extract_from_text(text)
    assert found == [
        ("https://cdn.lantern.example/gate.php", "url"),
        ("198.51.100.23", "ipv4"),
        ("2001:db8::7", "ipv6"),
        ("T1071.001", "attack_technique"),
        ("admin@lantern.example", "email"),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "hash"),
        ("CVE-2023-1234", "cve"),
    ]


def test_output_order_is_by_type_then_value_whatever_the_input_order() -> None:
    items = ["b.example", "198.51.100.9", "a.example", "T1105", "198.51.100.1"]
    forward = [i.to_dict() for i in ingest(items).indicators]
    backward = [i.to_dict() for i in ingest(list(reversed(items))).indicators]
    assert [(d["type"], d["value"]) for d in forward] == [
        ("ipv4", "198.51.100.1"),
        ("ipv4", "198.51.100.9"),
        ("domain", "a.example"),
        ("domain", "b.example"),
        ("attack_technique", "T1105"),
    ]
    assert [(d["type"], d["value"]) for d in forward] == [(d["type"], d["value"]) for d in backward]


def test_prose_noise_is_ignored_quietly_but_defanged_mistakes_are_reported() -> None:
    text = (
        "powershell.exe spawned cmd.exe at 10:30:45 and wrote report.docx; "
        "C2 was evil[.]notatld and cdn[.]lantern[.]example"
    )
    result = ingest([], text=text)
    assert [(i.type, i.value) for i in result.indicators] == [("domain", "cdn.lantern.example")]
    assert "defanged" in result.indicators[0].flags
    # the defanged token that failed is reported; the plain file names and the time are not
    assert result.rejected == [
        {"input": "evil.notatld", "origin": "text", "reason": "unknown public suffix 'notatld'"}
    ]
    assert result.ignored_text_candidates == 4
