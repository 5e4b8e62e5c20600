"""Offline data sources shared by the CTI executors, each loaded once per process and cited.

Every verdict a CTI executor produces must name where it came from, so each loader here
also exposes a `Citation` carrying the data set's name, version and licence.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from runbook_engine.contract import Citation

BASE_DIR_ENV = "RUNBOOK_BASE_DIR"
"""Relative data paths in a runbook's config resolve against this directory (else the CWD)."""


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Resolve a config path: absolute as is, relative against $RUNBOOK_BASE_DIR or the CWD.

    The same rule works locally (the runner sets RUNBOOK_BASE_DIR to the runbook file's
    directory) and on a cluster (a mounted ConfigMap path, usually absolute).
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    base = os.environ.get(BASE_DIR_ENV)
    return (Path(base) if base else Path.cwd()) / candidate


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # pragma: no cover - packaging problem
        return "unknown"


# -- Public Suffix List ----------------------------------------------------------------------


@dataclass(frozen=True)
class SuffixInfo:
    """Public suffix split of a host name."""

    public_suffix: str | None
    registered_domain: str | None
    known_suffix: bool


RESERVED_TLDS = frozenset({"example", "test", "invalid", "localhost", "local", "onion", "internal"})
"""Special-use TLDs (RFC 2606, RFC 6761, RFC 6762, RFC 7686, ICANN .internal) not in the PSL.

They are accepted as domains (flagged `reserved`) so fictional exercises can use `*.example`.
"""


@functools.cache
def _psl() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(only_icann=False)


@functools.cache
def psl_citation() -> Citation:
    """The bundled PSL snapshot: package version plus the list's own VERSION line."""
    import publicsuffixlist

    dat = Path(publicsuffixlist.__file__).parent / "public_suffix_list.dat"
    list_version = "unknown"
    try:
        with dat.open(encoding="utf-8") as fh:
            for _, line in zip(range(40), fh, strict=False):
                match = re.match(r"//\s*VERSION:\s*(\S+)", line)
                if match:
                    list_version = match.group(1)
                    break
    except OSError:  # pragma: no cover - packaging problem
        pass
    return Citation(
        source="Mozilla Public Suffix List (publicsuffixlist package)",
        version=f"publicsuffixlist {_dist_version('publicsuffixlist')}; list {list_version}",
        url="https://publicsuffix.org/",
        note="MPL-2.0; bundled snapshot, never fetched at run time",
    )


def split_suffix(host: str) -> SuffixInfo:
    """Public suffix and registered domain of an ASCII (punycode) lower-case host."""
    labels = host.split(".")
    tld = labels[-1]
    if tld in RESERVED_TLDS:
        registered = ".".join(labels[-2:]) if len(labels) >= 2 else None
        return SuffixInfo(public_suffix=tld, registered_domain=registered, known_suffix=True)
    psl = _psl()
    suffix = psl.publicsuffix(host, accept_unknown=False)
    if suffix is None:
        return SuffixInfo(public_suffix=None, registered_domain=None, known_suffix=False)
    registered = psl.privatesuffix(host, accept_unknown=False)
    return SuffixInfo(public_suffix=suffix, registered_domain=registered, known_suffix=True)


# -- GeoIP (geoip2fast, MaxMind GeoLite2 derived) --------------------------------------------

GEOIP_DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"
"""The geoip2fast file with country + ASN name for IPv4 and IPv6 (ASN numbers are not shipped)."""


@dataclass(frozen=True)
class GeoResult:
    country_code: str | None
    country_name: str | None
    network: str | None
    asn_name: str | None
    asn_network: str | None


class _GeoIP:
    def __init__(self) -> None:
        from geoip2fast import GeoIP2Fast

        self._db = GeoIP2Fast(verbose=False, geoip2fast_data_file=GEOIP_DATA_FILE)
        info = self._db.get_database_info()
        self.source_info: str = str(info.get("source_info", "unknown"))

    def lookup(self, ip: str) -> GeoResult:
        res = self._db.lookup(ip)
        code = getattr(res, "country_code", "") or ""
        name = getattr(res, "country_name", "") or ""
        asn = getattr(res, "asn_name", "") or ""
        return GeoResult(
            country_code=code if code and code != "--" else None,
            country_name=name if name and not name.startswith("<") else None,
            network=getattr(res, "cidr", "") or None,
            asn_name=asn or None,
            asn_network=getattr(res, "asn_cidr", "") or None,
        )


@functools.cache
def geoip() -> _GeoIP:
    """The geoip2fast database, decompressed once per process (~0.3 s)."""
    return _GeoIP()


def geoip_citation() -> Citation:
    return Citation(
        source="GeoLite2 Country+ASN via geoip2fast",
        version=f"geoip2fast {_dist_version('geoip2fast')}; {geoip().source_info}",
        url="https://dev.maxmind.com/geoip/geolite2-free-geolocation-data",
        note="Bundled offline snapshot; GeoLite2 data by MaxMind (GeoLite2 EULA), "
        "package MIT. ASN names only, no AS numbers.",
    )


# -- MISP warning lists ----------------------------------------------------------------------


@dataclass
class WarningList:
    """One MISP warning list compiled for fast exact/hostname/CIDR/substring matching."""

    slug: str
    name: str
    version: str
    description: str
    list_type: str
    matching_attributes: list[str]
    strings: frozenset[str] = frozenset()
    substrings: tuple[str, ...] = ()
    v4: dict[int, frozenset[int]] = field(default_factory=dict)
    v6: dict[int, frozenset[int]] = field(default_factory=dict)

    def matches(self, value: str) -> bool:
        """True if `value` (normalised indicator) is on this list per its MISP match type."""
        if self.list_type == "string":
            return value in self.strings
        if self.list_type == "hostname":
            labels = value.split(".")
            return any(".".join(labels[i:]) in self.strings for i in range(len(labels)))
        if self.list_type == "substring":
            return any(s in value for s in self.substrings)
        if self.list_type == "cidr":
            try:
                addr = ipaddress.ip_address(value)
            except ValueError:
                return value in self.strings
            nets, width = (self.v4, 32) if addr.version == 4 else (self.v6, 128)
            as_int = int(addr)
            return any((as_int >> (width - p)) in keys for p, keys in nets.items())
        return False  # regex lists are not evaluated (documented limitation)

    def citation(self) -> Citation:
        return Citation(
            source=f"MISP warninglist: {self.name}",
            version=f"{self.version} (pymispwarninglists {_dist_version('pymispwarninglists')})",
            reference=self.slug,
            url="https://github.com/MISP/misp-warninglists",
            note=self.description,
        )


def _warninglists_dir() -> Path:
    import pymispwarninglists

    return Path(pymispwarninglists.__file__).parent / "data" / "misp-warninglists" / "lists"


def available_warning_lists() -> list[str]:
    """Slugs of every warning list bundled with pymispwarninglists."""
    root = _warninglists_dir()
    return sorted(p.parent.name for p in root.glob("*/list.json"))


_V4_CIDR_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:/(\d{1,2}))?$")


def _parse_v4_cidr(entry: str) -> tuple[int, int] | None:
    """(prefix length, address int) of a plain IPv4 address/CIDR; ipaddress is 10x slower."""
    match = _V4_CIDR_RE.match(entry)
    if match is None:
        return None
    octets = [int(match.group(i)) for i in range(1, 5)]
    prefix = int(match.group(5)) if match.group(5) is not None else 32
    if any(o > 255 for o in octets) or prefix > 32:
        return None
    value = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
    return prefix, value


@functools.cache
def warning_list(slug: str) -> WarningList:
    """Load and compile one bundled warning list (cached per process)."""
    path = _warninglists_dir() / slug / "list.json"
    if not path.is_file():
        raise KeyError(f"unknown MISP warning list {slug!r}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    entries = [str(e).strip().lower().rstrip(".") for e in raw.get("list", []) if str(e).strip()]
    wl = WarningList(
        slug=slug,
        name=str(raw.get("name", slug)),
        version=str(raw.get("version", "unknown")),
        description=str(raw.get("description", "")),
        list_type=str(raw.get("type", "string")),
        matching_attributes=sorted(str(a) for a in raw.get("matching_attributes", [])),
    )
    if wl.list_type == "cidr":
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        others: set[str] = set()
        for entry in entries:
            fast = _parse_v4_cidr(entry)
            if fast is not None:
                prefix, value = fast
                v4.setdefault(prefix, set()).add(value >> (32 - prefix))
                continue
            try:
                net = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                others.add(entry)
                continue
            bucket = v4 if net.version == 4 else v6
            width = 32 if net.version == 4 else 128
            bucket.setdefault(net.prefixlen, set()).add(
                int(net.network_address) >> (width - net.prefixlen)
            )
        wl.v4 = {p: frozenset(s) for p, s in sorted(v4.items())}
        wl.v6 = {p: frozenset(s) for p, s in sorted(v6.items())}
        wl.strings = frozenset(others)
    elif wl.list_type == "substring":
        wl.substrings = tuple(sorted(set(entries)))
    else:
        wl.strings = frozenset(e.lstrip(".") for e in entries)
    return wl
