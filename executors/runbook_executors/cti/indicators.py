"""Indicator refanging, classification and normalisation (pure functions, no I/O but the PSL).

Indicators arrive defanged, mixed-case, wrapped in punctuation or buried in prose; attribution
only works if the same observable always normalises to the same string, so everything here
is deterministic and each rejection carries a reason an analyst can act on.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import idna

from runbook_executors.cti.datasources import split_suffix

IndicatorType = str
"""One of INDICATOR_TYPES."""

INDICATOR_TYPES: tuple[str, ...] = (
    "ipv4",
    "ipv6",
    "domain",
    "url",
    "email",
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "cve",
    "attack_technique",
)

HASH_TYPES = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}

DOCUMENTATION_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
)
"""RFC 5737 / RFC 3849 / RFC 9637 documentation ranges."""

BOGON_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001:db8::/32",
        "3fff::/20",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
"""Team Cymru style bogons: ranges that must never appear as routed Internet sources."""

# -- refanging --------------------------------------------------------------------------------

_REFANG_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:hxxp|hxtp|htxp|hxxxp)(s?)(?=\s*(?:\[:\]|\(:\)|:)\s*//)", re.I), r"http\1"),
    (re.compile(r"\b(?:fxp|fxxp)(s?)(?=\s*(?:\[:\]|:)\s*//)", re.I), r"ftp\1"),
    (re.compile(r"\[:\]//|\[://\]|\(:\)//|\(://\)"), "://"),
    (re.compile(r"\[:\]|\(:\)"), ":"),
    (re.compile(r"\s*(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}|\\\.)\s*", re.I), "."),
    (re.compile(r"\s*(?:\[@\]|\(@\)|\{@\}|\[at\]|\(at\)|\{at\})\s*", re.I), "@"),
    (re.compile(r"\[/\]"), "/"),
)


def refang(text: str) -> str:
    """Undo the common defanging conventions (hxxp, [.], (dot), [@], (at), [:], ...)."""
    for pattern, repl in _REFANG_RULES:
        text = pattern.sub(repl, text)
    return text


# -- result records ---------------------------------------------------------------------------


@dataclass
class Indicator:
    """A normalised indicator; `key` (type, value) is its identity for de-duplication."""

    type: IndicatorType
    value: str
    originals: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "value": self.value,
            "originals": sorted(set(self.originals)),
            "origins": sorted(set(self.origins)),
            "flags": sorted(set(self.flags)),
        }
        out.update({k: self.attributes[k] for k in sorted(self.attributes)})
        return out


class Rejected(ValueError):
    """An input that is not a valid indicator; the message is the reason."""


# -- classification ---------------------------------------------------------------------------

_CVE_RE = re.compile(r"^CVE-(\d{4})-(\d{4,})$", re.I)
_TECH_RE = re.compile(r"^T(\d{4})(?:\.(\d{3}))?$", re.I)
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_STRIP_CHARS = " \t\r\n\"'`<>,;|"
_TRAILING_PUNCT = ".,;:!?)]}>\"'"

URL_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "sftp", "ws", "wss", "smb", "tcp", "udp"})


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _in_any(nets: Any) -> Callable[[IPAddress], bool]:
    return lambda addr: any(addr in net for net in nets if net.version == addr.version)


IP_FLAG_RULES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("documentation", _in_any(DOCUMENTATION_NETS)),
    ("private", attrgetter("is_private")),
    ("reserved", attrgetter("is_reserved")),
    ("loopback", attrgetter("is_loopback")),
    ("link_local", attrgetter("is_link_local")),
    ("multicast", attrgetter("is_multicast")),
    ("unspecified", attrgetter("is_unspecified")),
    ("bogon", _in_any(BOGON_NETS)),
    ("not_global", lambda addr: not addr.is_global),
)
"""Flag → the rule that sets it."""


def ip_flags(addr: IPAddress) -> list[str]:
    """Why an address is special (documentation, private, bogon, ...); empty if global."""
    return sorted(flag for flag, applies in IP_FLAG_RULES if applies(addr))


def normalise_ip(text: str) -> Indicator:
    """IPv4/IPv6 (optionally `[v6]`, `v4:port`, `[v6]:port`), canonical compressed form."""
    candidate = text
    port: int | None = None
    bracketed = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$", candidate)
    if bracketed:
        candidate = bracketed.group(1)
        port = int(bracketed.group(2)) if bracketed.group(2) else None
    else:
        v4port = re.match(r"^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$", candidate)
        if v4port:
            candidate, port = v4port.group(1), int(v4port.group(2))
    if "%" in candidate:
        raise Rejected("IPv6 zone identifiers are not indicators")
    if re.match(r"^\d{1,3}(?:\.\d{1,3}){3}$", candidate) and any(
        len(o) > 1 and o.startswith("0") for o in candidate.split(".")
    ):
        raise Rejected("IPv4 octet with a leading zero is ambiguous (octal?)")
    try:
        addr = ipaddress.ip_address(candidate)
    except ValueError:
        raise Rejected("not a valid IP address") from None
    ind = Indicator(type=f"ipv{addr.version}", value=addr.compressed, flags=ip_flags(addr))
    ind.attributes["version"] = addr.version
    if port is not None:
        if not 0 < port < 65536:
            raise Rejected("port out of range")
        ind.attributes["port"] = port
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        ind.attributes["ipv4Mapped"] = str(addr.ipv4_mapped)
    return ind


def normalise_host(host: str) -> tuple[str, str | None]:
    """(ASCII lower-case punycode host without trailing dot, Unicode form if it was an IDN)."""
    host = unicodedata.normalize("NFC", host.strip()).rstrip(".")
    if not host:
        raise Rejected("empty host name")
    try:
        ascii_host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError as exc:
        # Underscore labels (_dmarc, SRV) are legal DNS but not IDNA; accept plain ASCII ones.
        if host.isascii() and "_" in host:
            ascii_host = host.lower()
        else:
            raise Rejected(f"invalid internationalised domain name ({exc})") from None
    except UnicodeError as exc:
        raise Rejected(f"invalid domain name ({exc})") from None
    ascii_host = ascii_host.lower()
    unicode_form: str | None = None
    if any(label.startswith("xn--") for label in ascii_host.split(".")):
        try:
            unicode_form = idna.decode(ascii_host)
        except idna.IDNAError:
            raise Rejected("invalid punycode label") from None
    return ascii_host, unicode_form


def normalise_domain(text: str) -> Indicator:
    """A registrable-or-deeper domain name under a known (or special-use) public suffix."""
    ascii_host, unicode_form = normalise_host(text)
    if len(ascii_host) > 253:
        raise Rejected("domain longer than 253 characters")
    labels = ascii_host.split(".")
    if len(labels) < 2:
        raise Rejected("single-label name is not a domain indicator")
    if any(not _LABEL_RE.match(label) for label in labels):
        raise Rejected("domain label with invalid characters or length")
    if labels[-1].isdigit():
        raise Rejected("numeric top-level label (malformed IP address?)")
    info = split_suffix(ascii_host)
    if not info.known_suffix:
        raise Rejected(f"unknown public suffix {labels[-1]!r}")
    if info.registered_domain is None:
        raise Rejected(f"{ascii_host!r} is itself a public suffix")
    ind = Indicator(type="domain", value=ascii_host)
    ind.attributes["registeredDomain"] = info.registered_domain
    ind.attributes["publicSuffix"] = info.public_suffix
    if unicode_form is not None and unicode_form != ascii_host:
        ind.attributes["unicode"] = unicode_form
        ind.flags.append("idn")
    if labels[-1] in {"example", "test", "invalid", "localhost", "local", "onion", "internal"}:
        ind.flags.append("reserved_tld")
    return ind


def normalise_url(text: str) -> Indicator:
    """scheme://host[:port]/path?query with scheme and host normalised; fragment dropped."""
    try:
        parts = urlsplit(text)
    except ValueError:
        raise Rejected("unparseable URL") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise Rejected(f"unsupported URL scheme {scheme!r}")
    try:
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        raise Rejected("URL with an invalid port or host") from None
    if not hostname:
        raise Rejected("URL without a host")
    host_ind: Indicator
    try:
        host_ind = normalise_ip(hostname)
    except Rejected:
        host_ind = normalise_domain(hostname)
    host_text = f"[{host_ind.value}]" if host_ind.type == "ipv6" else host_ind.value
    default_port = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}.get(scheme)
    netloc = host_text if port in (None, default_port) else f"{host_text}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    path = parts.path or "/"
    value = urlunsplit((scheme, netloc, path, parts.query, ""))
    ind = Indicator(type="url", value=value, flags=list(host_ind.flags))
    ind.attributes["scheme"] = scheme
    ind.attributes["host"] = host_ind.value
    ind.attributes["hostType"] = host_ind.type
    for key in ("registeredDomain", "publicSuffix", "unicode"):
        if key in host_ind.attributes:
            ind.attributes[key] = host_ind.attributes[key]
    return ind


def normalise_email(text: str) -> Indicator:
    """local@domain, lower-cased (mailbox case is ignored by practically every provider)."""
    local, _, domain = text.rpartition("@")
    if not local or not domain:
        raise Rejected("not an e-mail address")
    if len(local) > 64 or not re.match(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+$", local):
        raise Rejected("invalid e-mail local part")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise Rejected("invalid e-mail local part")
    dom = normalise_domain(domain)
    ind = Indicator(type="email", value=f"{local.lower()}@{dom.value}", flags=list(dom.flags))
    ind.attributes["domain"] = dom.value
    ind.attributes["registeredDomain"] = dom.attributes["registeredDomain"]
    return ind


def classify(raw: str) -> Indicator:
    """Refang, classify and normalise one indicator string; raise `Rejected` with a reason."""
    if not isinstance(raw, str):
        raise Rejected(f"not a string ({type(raw).__name__})")
    text = unicodedata.normalize("NFKC", raw).strip(_STRIP_CHARS)
    if not text:
        raise Rejected("empty")
    if len(text) > 2048:
        raise Rejected("longer than 2048 characters")
    refanged = refang(text).strip()
    defanged = refanged != text
    ind = _classify_refanged(refanged)
    ind.originals.append(raw)
    if defanged:
        ind.flags.append("defanged")
    return ind


def _classify_refanged(text: str) -> Indicator:
    if re.search(r"\s", text):
        raise Rejected("contains whitespace")
    if m := _CVE_RE.match(text):
        return Indicator(type="cve", value=f"CVE-{m.group(1)}-{m.group(2)}")
    if m := _TECH_RE.match(text):
        value = f"T{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "")
        ind = Indicator(type="attack_technique", value=value)
        ind.attributes["parent"] = f"T{m.group(1)}"
        return ind
    if _HEX_RE.match(text):
        algo = HASH_TYPES.get(len(text))
        if algo is None:
            raise Rejected(f"hex string of length {len(text)} is not an MD5/SHA-1/SHA-256/SHA-512")
        if len(set(text.lower())) == 1:
            raise Rejected("degenerate hash (a single repeated digit)")
        return Indicator(type=algo, value=text.lower())
    if _SCHEME_RE.match(text):
        return normalise_url(text)
    if "@" in text:
        return normalise_email(text)
    host_port = re.match(r"^([^:/\[\]]*[^\d.:/\[\]][^:/\[\]]*):(\d{1,5})$", text)
    if host_port:  # evil.example:8443 -> the domain, port kept as an attribute
        ind = normalise_domain(host_port.group(1))
        port = int(host_port.group(2))
        if not 0 < port < 65536:
            raise Rejected("port out of range")
        ind.attributes["port"] = port
        return ind
    if re.match(r"^[\d.]+(:\d+)?$", text) or ":" in text:
        return normalise_ip(text)
    if "/" in text:
        host = text.split("/", 1)[0]
        try:
            normalise_domain(host)
        except Rejected:
            raise Rejected("not a recognised indicator") from None
        return normalise_url(f"http://{text}")
    return normalise_domain(text)


# -- free text ----------------------------------------------------------------------------------

_TEXT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,9}://[^\s<>\"'`]+")),
    ("email", re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[\w.\-]+\.[\w\-]{2,}", re.UNICODE)),
    ("cve", re.compile(r"\bCVE-\d{4}-\d{4,}\b", re.I)),
    ("attack_technique", re.compile(r"\bT\d{4}(?:\.\d{3})?\b")),
    ("hash", re.compile(r"\b[0-9a-fA-F]{32,128}\b")),
    ("ipv6", re.compile(r"(?<![\w:.])\[?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}\]?(?![\w:])")),
    ("ipv4", re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])")),
    ("domain", re.compile(r"(?<![\w@.\-])(?:[\w\-]{1,63}\.)+[^\W\d_][\w\-]{1,62}(?![\w\-])")),
)


def extract_from_text(text: str) -> list[tuple[str, str]]:
    """Candidate indicator strings in prose, after refanging: [(matched text, kind hint)].

    Earlier patterns claim their span first, so the domain inside a URL or an e-mail address
    is not extracted twice. Candidates are returned in order of appearance.
    """
    refanged = refang(unicodedata.normalize("NFKC", text))
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, str, str]] = []
    for kind, pattern in _TEXT_PATTERNS:
        for match in pattern.finditer(refanged):
            start, end = match.span()
            token = match.group(0)
            if kind == "url":
                stripped = token.rstrip(_TRAILING_PUNCT)
                end -= len(token) - len(stripped)
                token = stripped
            elif (kind == "hash" and len(token) not in HASH_TYPES) or (
                kind == "ipv6" and token.count(":") < 2
            ):
                continue
            elif kind == "domain":
                token = token.rstrip(".")
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            found.append((start, token, kind))
    return [(token, kind) for _, token, kind in sorted(found)]


@dataclass
class IngestResult:
    """Accepted indicators (de-duplicated, sorted) and rejected inputs with reasons."""

    indicators: list[Indicator]
    rejected: list[dict[str, Any]]
    ignored_text_candidates: int = 0
    """Plain (not defanged) prose tokens that looked like a domain or IP but were not one,
    such as `powershell.exe` or `10:30:45`: dropped silently so `rejected` stays actionable."""


_QUIET_TEXT_KINDS = frozenset({"domain", "ipv4", "ipv6"})


def ingest(items: list[Any], text: str | None = None) -> IngestResult:
    """Classify explicit items and free-text candidates; merge duplicates by (type, value)."""
    by_key: dict[tuple[str, str], Indicator] = {}
    rejected: list[dict[str, Any]] = []
    ignored = 0

    def add(raw: Any, origin: str, *, defanged: bool = False, quiet: bool = False) -> None:
        nonlocal ignored
        try:
            ind = classify(raw)
        except Rejected as exc:
            if quiet:
                ignored += 1
                return
            rejected.append(
                {
                    "input": raw if isinstance(raw, str) else repr(raw),
                    "origin": origin,
                    "reason": str(exc),
                }
            )
            return
        ind.origins.append(origin)
        if defanged:
            ind.flags.append("defanged")
        existing = by_key.get(ind.key)
        if existing is None:
            by_key[ind.key] = ind
        else:
            existing.originals.extend(ind.originals)
            existing.origins.extend(ind.origins)
            existing.flags.extend(ind.flags)

    for index, raw in enumerate(items):
        add(raw, f"indicators[{index}]")
    if text:
        plain = unicodedata.normalize("NFKC", text)
        for token, kind in extract_from_text(text):
            # Text is refanged before extraction; a token absent from the original was defanged,
            # which signals intent: report it if it fails instead of dropping it quietly.
            defanged = token not in plain
            add(token, "text", defanged=defanged, quiet=kind in _QUIET_TEXT_KINDS and not defanged)
    ordered = sorted(by_key.values(), key=lambda i: (INDICATOR_TYPES.index(i.type), i.value))
    return IngestResult(indicators=ordered, rejected=rejected, ignored_text_candidates=ignored)
