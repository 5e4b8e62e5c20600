"""ENRICH_INTEL: offline enrichment (country/ASN, registered domain) and known-benign filtering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from runbook_engine.contract import (
    ActionType,
    Citation,
    KpiValue,
    StepExecutorContext,
    StepExecutorResult,
)
from runbook_executors.base import BaseStepExecutor
from runbook_executors.cti.common import (
    ConfigError,
    bool_setting,
    indicator_key,
    str_list,
    upstream_list,
)
from runbook_executors.cti.datasources import (
    WarningList,
    available_warning_lists,
    geoip,
    geoip_citation,
    psl_citation,
    warning_list,
)

SUPPRESS_LISTS: tuple[str, ...] = (
    "alexa",
    "cisco_top1000",
    "common-ioc-false-positive",
    "eicar.com",
    "empty-hashes",
    "google",
    "microsoft",
    "microsoft-office365",
    "moz-top500",
    "public-dns-hostname",
    "public-dns-v4",
    "public-dns-v6",
    "rfc6761",
    "security-provider-blogpost",
    "tranco10k",
    "whats-my-ip",
)
"""MISP warning lists whose hits are known-benign: the indicator is dropped from attribution."""

INFORMATIONAL_LISTS: tuple[str, ...] = (
    "dynamic-dns",
    "ipv6-linklocal",
    "multicast",
    "rfc1918",
    "rfc3849",
    "rfc5735",
    "rfc6598",
    "sinkholes",
    "url-shortener",
)
"""Lists that annotate but do not suppress: a dynamic-DNS or sinkhole hit is itself a lead, and
documentation/private ranges are kept because exercises and internal telemetry use them."""

DEFAULT_LISTS: tuple[str, ...] = tuple(sorted({*SUPPRESS_LISTS, *INFORMATIONAL_LISTS}))

# MISP matching_attributes that apply to each of our indicator types.
_ATTRIBUTES_FOR: dict[str, frozenset[str]] = {
    "ip": frozenset({"ip-src", "ip-dst", "domain|ip", "ip-src|port", "ip-dst|port"}),
    "host": frozenset({"hostname", "domain", "domain|ip", "hostname|port"}),
    "url": frozenset({"url", "uri"}),
    "email": frozenset({"email-src", "email-dst", "target-email", "whois-registrant-email"}),
    "md5": frozenset({"md5", "filename|md5"}),
    "sha1": frozenset({"sha1", "filename|sha1"}),
    "sha256": frozenset({"sha256", "filename|sha256"}),
    "sha512": frozenset({"sha512", "filename|sha512"}),
}


def _brief(citation: Citation) -> dict[str, str | None]:
    """Source and version only: what each enrichment entry names inline."""
    return {"source": citation.source, "version": citation.version}


def _probes(indicator: dict[str, Any]) -> list[tuple[str, str]]:
    """(attribute family, value) pairs to test an indicator against warning lists."""
    itype = str(indicator.get("type"))
    value = str(indicator.get("value"))
    if itype in ("ipv4", "ipv6"):
        return [("ip", value)]
    if itype == "domain":
        return [("host", value)]
    if itype == "url":
        host = str(indicator.get("host", ""))
        family = "ip" if indicator.get("hostType") in ("ipv4", "ipv6") else "host"
        return [("url", value), (family, host)] if host else [("url", value)]
    if itype == "email":
        return [("email", value), ("host", str(indicator.get("domain", "")))]
    if itype in ("md5", "sha1", "sha256", "sha512"):
        return [(itype, value)]
    return []


def _geo_ip(indicator: dict[str, Any]) -> str | None:
    """The IP address to look up: the indicator itself, or a URL's IP host."""
    if indicator.get("type") in ("ipv4", "ipv6"):
        return str(indicator["value"])
    if indicator.get("type") == "url" and indicator.get("hostType") in ("ipv4", "ipv6"):
        return str(indicator.get("host"))
    return None


def _geo(ip: str) -> dict[str, Any]:
    geo = geoip().lookup(ip)
    return {
        "countryCode": geo.country_code,
        "countryName": geo.country_name,
        "network": geo.network,
        "asnName": geo.asn_name,
        "asnNetwork": geo.asn_network,
    }


@dataclass
class Enricher:
    """Enriches indicators one by one, collecting the counts and cited lists as it goes."""

    lists: list[WarningList]
    suppress: set[str]
    suppress_benign: bool
    use_geoip: bool
    kept: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    enrichments: list[dict[str, Any]] = field(default_factory=list)
    cited_lists: dict[str, Citation] = field(default_factory=dict)
    geo_hits: int = 0
    warning_count: int = 0

    def warnings(self, indicator: dict[str, Any]) -> list[dict[str, Any]]:
        """Warning-list hits that apply to the indicator's type, one per list."""
        hits: list[dict[str, Any]] = []
        for family, value in _probes(indicator):
            wanted = _ATTRIBUTES_FOR.get(family, frozenset())
            for wl in self.lists:
                applies = not wl.matching_attributes or bool(wanted & set(wl.matching_attributes))
                if applies and value and wl.matches(value):
                    hits.append(
                        {
                            "list": wl.slug,
                            "name": wl.name,
                            "version": wl.version,
                            "matched": value,
                            "suppresses": wl.slug in self.suppress,
                        }
                    )
                    self.cited_lists[wl.slug] = wl.citation()
        return sorted({w["list"]: w for w in hits}.values(), key=lambda w: w["list"])

    def add(self, ind: dict[str, Any]) -> None:
        key = indicator_key(ind)
        entry: dict[str, Any] = {"indicator": key, "sources": []}
        ip = _geo_ip(ind)
        if ip and self.use_geoip:
            entry["geo"] = _geo(ip)
            entry["sources"].append(_brief(geoip_citation()))
            self.geo_hits += bool(entry["geo"]["countryCode"] or entry["geo"]["asnName"])
        if "registeredDomain" in ind:
            entry["domain"] = {
                "registeredDomain": ind["registeredDomain"],
                "publicSuffix": ind.get("publicSuffix"),
            }
            entry["sources"].append(_brief(psl_citation()))
        warnings = self.warnings(ind)
        if warnings:
            entry["warnings"] = warnings
            entry["sources"].extend(_brief(self.cited_lists[w["list"]]) for w in warnings)
            self.warning_count += len(warnings)
        self.enrichments.append(entry)
        suppressing = [w["list"] for w in warnings if w["suppresses"]]
        if self.suppress_benign and suppressing:
            reason = "known benign per MISP warning list(s)"
            self.suppressed.append({"indicator": key, "lists": suppressing, "reason": reason})
        else:
            enrichment = {k: v for k, v in entry.items() if k != "indicator"}
            self.kept.append({**ind, "enrichment": enrichment})


class EnrichIntelExecutor(BaseStepExecutor):
    """Add offline context to each indicator and drop known-benign ones before attribution.

    Config: `warningLists` (MISP list slugs to check; default a curated set),
    `suppressLists` (which of those drop the indicator; default the known-benign subset),
    `suppressKnownBenign` (default true), `geoip` (default true).
    """

    action_type: ClassVar[str] = ActionType.ENRICH_INTEL

    def _enricher(self, ctx: StepExecutorContext) -> Enricher:
        wanted = self.get_config(ctx, "warningLists", list(DEFAULT_LISTS))
        lists = sorted(set(str_list(wanted, "config.warningLists")))
        suppress = self.get_config(ctx, "suppressLists", list(SUPPRESS_LISTS))
        unknown = sorted(set(lists) - set(available_warning_lists()))
        if unknown:
            raise ConfigError(f"unknown MISP warning lists: {', '.join(unknown)}")
        return Enricher(
            lists=[warning_list(slug) for slug in lists],
            suppress=set(str_list(suppress, "config.suppressLists")),
            suppress_benign=bool_setting(self, ctx, "suppressKnownBenign", True),
            use_geoip=bool_setting(self, ctx, "geoip", True),
        )

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        indicators = [i for i in upstream_list(self, ctx, "indicators") if isinstance(i, dict)]
        enricher = self._enricher(ctx)
        for ind in indicators:
            enricher.add(ind)
        citations = [psl_citation(), *([geoip_citation()] if enricher.use_geoip else [])]
        citations += [enricher.cited_lists[s] for s in sorted(enricher.cited_lists)]
        output: dict[str, Any] = {
            "indicators": enricher.kept,
            "suppressed": enricher.suppressed,
            "enrichments": enricher.enrichments,
            "warningListsChecked": [wl.slug for wl in enricher.lists],
            # Read by GENERATE_REPORT so the report lists every data set that shaped it.
            "enrichmentSources": [c.wire() for c in citations],
        }
        kpis: dict[str, KpiValue] = {
            "enrichedCount": len(enricher.enrichments),
            "geoResolvedCount": enricher.geo_hits,
            "warningCount": enricher.warning_count,
            "suppressedCount": len(enricher.suppressed),
            "retainedIndicatorCount": len(enricher.kept),
        }
        evidence = self.create_evidence(
            "enrichment",
            {"enrichments": enricher.enrichments, "suppressed": enricher.suppressed},
            step_id=ctx.step_id,
            citations=citations,
        )
        return self.success(output, kpis=kpis, evidence=[evidence], citations=citations)
