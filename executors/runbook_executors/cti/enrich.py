"""ENRICH_INTEL: offline enrichment (country/ASN, registered domain) and known-benign filtering."""

from __future__ import annotations

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


class EnrichIntelExecutor(BaseStepExecutor):
    """Add offline context to each indicator and drop known-benign ones before attribution.

    Config: `warningLists` (MISP list slugs to check; default a curated set),
    `suppressLists` (which of those drop the indicator; default the known-benign subset),
    `suppressKnownBenign` (default true), `geoip` (default true).
    """

    action_type: ClassVar[str] = ActionType.ENRICH_INTEL

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        indicators = [i for i in upstream_list(self, ctx, "indicators") if isinstance(i, dict)]
        lists = sorted(
            set(
                str_list(
                    self.get_config(ctx, "warningLists", list(DEFAULT_LISTS)), "config.warningLists"
                )
            )
        )
        suppress = set(
            str_list(
                self.get_config(ctx, "suppressLists", list(SUPPRESS_LISTS)), "config.suppressLists"
            )
        )
        suppress_benign = bool_setting(self, ctx, "suppressKnownBenign", True)
        use_geoip = bool_setting(self, ctx, "geoip", True)
        known = set(available_warning_lists())
        unknown = sorted(set(lists) - known)
        if unknown:
            raise ConfigError(f"unknown MISP warning lists: {', '.join(unknown)}")
        compiled = [warning_list(slug) for slug in lists]

        kept: list[dict[str, Any]] = []
        suppressed: list[dict[str, Any]] = []
        enrichments: list[dict[str, Any]] = []
        cited_lists: dict[str, Citation] = {}
        geo_hits = 0
        warning_count = 0
        for ind in indicators:
            key = indicator_key(ind)
            entry: dict[str, Any] = {"indicator": key, "sources": []}
            ip = None
            if ind.get("type") in ("ipv4", "ipv6"):
                ip = str(ind["value"])
            elif ind.get("type") == "url" and ind.get("hostType") in ("ipv4", "ipv6"):
                ip = str(ind.get("host"))
            if ip and use_geoip:
                geo = geoip().lookup(ip)
                entry["geo"] = {
                    "countryCode": geo.country_code,
                    "countryName": geo.country_name,
                    "network": geo.network,
                    "asnName": geo.asn_name,
                    "asnNetwork": geo.asn_network,
                }
                entry["sources"].append(_brief(geoip_citation()))
                if geo.country_code or geo.asn_name:
                    geo_hits += 1
            if "registeredDomain" in ind:
                entry["domain"] = {
                    "registeredDomain": ind["registeredDomain"],
                    "publicSuffix": ind.get("publicSuffix"),
                }
                entry["sources"].append(_brief(psl_citation()))
            warnings: list[dict[str, Any]] = []
            for family, value in _probes(ind):
                wanted = _ATTRIBUTES_FOR.get(family, frozenset())
                for wl in compiled:
                    applies = not wl.matching_attributes or bool(
                        wanted & set(wl.matching_attributes)
                    )
                    if applies and value and wl.matches(value):
                        warnings.append(
                            {
                                "list": wl.slug,
                                "name": wl.name,
                                "version": wl.version,
                                "matched": value,
                                "suppresses": wl.slug in suppress,
                            }
                        )
                        cited_lists[wl.slug] = wl.citation()
            warnings = sorted({w["list"]: w for w in warnings}.values(), key=lambda w: w["list"])
            if warnings:
                entry["warnings"] = warnings
                entry["sources"].extend(_brief(cited_lists[w["list"]]) for w in warnings)
                warning_count += len(warnings)
            enrichments.append(entry)
            enriched = dict(ind)
            enriched["enrichment"] = {k: v for k, v in entry.items() if k not in ("indicator",)}
            if suppress_benign and any(w["suppresses"] for w in warnings):
                suppressed.append(
                    {
                        "indicator": key,
                        "lists": [w["list"] for w in warnings if w["suppresses"]],
                        "reason": "known benign per MISP warning list(s)",
                    }
                )
            else:
                kept.append(enriched)

        citations = [psl_citation()]
        if use_geoip:
            citations.append(geoip_citation())
        citations.extend(cited_lists[s] for s in sorted(cited_lists))
        output: dict[str, Any] = {
            "indicators": kept,
            "suppressed": suppressed,
            "enrichments": enrichments,
            "warningListsChecked": lists,
            # Read by GENERATE_REPORT so the report lists every data set that shaped it.
            "enrichmentSources": [c.wire() for c in citations],
        }
        kpis: dict[str, KpiValue] = {
            "enrichedCount": len(enrichments),
            "geoResolvedCount": geo_hits,
            "warningCount": warning_count,
            "suppressedCount": len(suppressed),
            "retainedIndicatorCount": len(kept),
        }
        evidence = self.create_evidence(
            "enrichment",
            {"enrichments": enrichments, "suppressed": suppressed},
            step_id=ctx.step_id,
            citations=citations,
        )
        return self.success(output, kpis=kpis, evidence=[evidence], citations=citations)
