"""STIX 2.1 bundle loading, simple pattern parsing and an infrastructure graph over the bundle.

The graph is what LOOKUP_GRAPH walks: SDOs, SCOs and SROs become nodes and edges, indicator
patterns and SCO values become an index from normalised observable to STIX ids.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_executors.cti.indicators import Rejected, classify

# SCO path -> indicator type. Hash algorithm names follow the STIX hashing vocabulary.
_HASH_ALGOS = {
    "md5": "md5",
    "sha-1": "sha1",
    "sha1": "sha1",
    "sha-256": "sha256",
    "sha256": "sha256",
    "sha-512": "sha512",
    "sha512": "sha512",
}
_SCO_VALUE_TYPES = {
    "ipv4-addr": "ipv4",
    "ipv6-addr": "ipv6",
    "domain-name": "domain",
    "url": "url",
    "email-addr": "email",
}
_COMPARISON_RE = re.compile(
    r"([a-z0-9\-]+):([A-Za-z0-9_\-.']+?)\s*(=|!=|LIKE|MATCHES|IN|ISSUBSET|ISSUPERSET|<=|>=|<|>)"
    r"\s*'((?:[^'\\]|\\.)*)'"
)

ATTRIBUTION_TYPES = frozenset({"intrusion-set", "campaign"})
SOFTWARE_TYPES = frozenset({"malware", "tool"})
TERMINAL_TYPES = frozenset(
    {
        "intrusion-set",
        "attack-pattern",
        "identity",
        "location",
        "vulnerability",
        "marking-definition",
    }
)
"""Nodes the BFS reaches but does not expand: attribution targets (so one actor's profile
does not pull in another actor through shared tooling) and high fan-out context objects."""


class BundleError(ValueError):
    """The STIX bundle cannot be read or is not a bundle."""


@dataclass(frozen=True)
class PatternTerm:
    """One `object:path = 'value'` comparison of a STIX pattern, normalised."""

    indicator_type: str
    value: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None


def parse_pattern(pattern: str) -> tuple[list[PatternTerm], list[str]]:
    """Equality comparisons on known observables, and the comparisons we could not use."""
    terms: list[PatternTerm] = []
    skipped: list[str] = []
    for match in _COMPARISON_RE.finditer(pattern):
        obj, path, op, raw_value = match.groups()
        value = raw_value.replace("\\'", "'").replace("\\\\", "\\")
        text = match.group(0)
        if op != "=":
            skipped.append(text)
            continue
        path_norm = path.replace("'", "").lower()
        term: PatternTerm | None = None
        if obj in ("ipv4-addr", "ipv6-addr") and path_norm == "value" and "/" in value:
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                skipped.append(text)
                continue
            if net.num_addresses == 1:
                term = PatternTerm(f"ipv{net.version}", str(net.network_address))
            else:
                term = PatternTerm(f"ipv{net.version}", str(net), network=net)
        elif obj in _SCO_VALUE_TYPES and path_norm == "value":
            term = _term(_SCO_VALUE_TYPES[obj], value)
        elif obj == "file" and path_norm.startswith("hashes."):
            algo = _HASH_ALGOS.get(path_norm.split(".", 1)[1])
            term = _term(algo, value) if algo else None
        elif obj == "email-message" and path_norm in ("from_ref.value", "sender_ref.value"):
            term = _term("email", value)
        if term is None:
            skipped.append(text)
        else:
            terms.append(term)
    return terms, skipped


def _term(expected_type: str, value: str) -> PatternTerm | None:
    try:
        ind = classify(value)
    except Rejected:
        return None
    if ind.type != expected_type:
        return None
    return PatternTerm(ind.type, ind.value)


def attack_external_id(obj: dict[str, Any]) -> str | None:
    """The `mitre-attack` external id (T1234, G0016, S0154, C0001) of a STIX object, if any."""
    for ref in obj.get("external_references") or []:
        if isinstance(ref, dict) and ref.get("source_name") in (
            "mitre-attack",
            "mitre-ics-attack",
            "mitre-mobile-attack",
        ):
            ext = ref.get("external_id")
            if isinstance(ext, str) and ext:
                return ext.upper()
    return None


def label_of(obj: dict[str, Any]) -> str:
    """Human-readable label: name, value, hash or the id."""
    for key in ("name", "value"):
        if isinstance(obj.get(key), str):
            return str(obj[key])
    hashes = obj.get("hashes")
    if isinstance(hashes, dict) and hashes:
        algo = sorted(hashes)[0]
        return f"{algo}:{hashes[algo]}"
    return str(obj.get("id"))


@dataclass
class Edge:
    source: str
    target: str
    relationship_type: str
    id: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "source": self.source,
            "target": self.target,
            "relationshipType": self.relationship_type,
        }


@dataclass
class StixGraph:
    """Objects by id, adjacency (both directions) and the observable index of one bundle."""

    objects: dict[str, dict[str, Any]]
    sha256: str
    source: str
    edges: list[Edge] = field(default_factory=list)
    adjacency: dict[str, list[tuple[str, Edge]]] = field(default_factory=dict)
    index: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = field(
        default_factory=list
    )
    skipped_patterns: list[dict[str, str]] = field(default_factory=list)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_bundle(cls, bundle: Any, *, source: str) -> StixGraph:
        if not isinstance(bundle, dict) or bundle.get("type") != "bundle":
            raise BundleError("not a STIX bundle (top-level type must be 'bundle')")
        raw_objects = bundle.get("objects")
        if not isinstance(raw_objects, list):
            raise BundleError("bundle has no 'objects' list")
        objects: dict[str, dict[str, Any]] = {}
        for obj in raw_objects:
            if isinstance(obj, dict) and isinstance(obj.get("id"), str) and "type" in obj:
                if obj.get("revoked") is True:
                    continue
                objects[obj["id"]] = obj
        digest = hashlib.sha256(
            json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode("utf-8")
        ).hexdigest()
        graph = cls(objects=objects, sha256=digest, source=source)
        graph._build()
        return graph

    @classmethod
    def from_file(cls, path: Path) -> StixGraph:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read STIX bundle {path}: {exc.strerror or exc}") from None
        try:
            bundle = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BundleError(f"STIX bundle {path} is not valid JSON: {exc}") from None
        return cls.from_bundle(bundle, source=str(path))

    def _add_edge(self, source: str, target: str, rel_type: str, edge_id: str) -> None:
        if source not in self.objects or target not in self.objects or source == target:
            return
        edge = Edge(source=source, target=target, relationship_type=rel_type, id=edge_id)
        self.edges.append(edge)
        self.adjacency.setdefault(source, []).append((target, edge))
        self.adjacency.setdefault(target, []).append((source, edge))

    def _index(self, key: tuple[str, str], stix_id: str) -> None:
        self.index.setdefault(key, set()).add(stix_id)

    def _build(self) -> None:
        for stix_id in sorted(self.objects):
            obj = self.objects[stix_id]
            otype = obj["type"]
            if otype == "relationship":
                self._add_edge(
                    str(obj.get("source_ref")),
                    str(obj.get("target_ref")),
                    str(obj.get("relationship_type", "related-to")),
                    stix_id,
                )
            elif otype == "sighting":
                target = str(obj.get("sighting_of_ref"))
                for ref in obj.get("observed_data_refs") or []:
                    self._add_edge(str(ref), target, "sighting-of", stix_id)
            elif otype == "observed-data":
                for ref in obj.get("object_refs") or []:
                    self._add_edge(stix_id, str(ref), "observed", f"{stix_id}/object_refs")
            elif otype in _SCO_VALUE_TYPES and isinstance(obj.get("value"), str):
                term = _term(_SCO_VALUE_TYPES[otype], obj["value"])
                if term:
                    self._index((term.indicator_type, term.value), stix_id)
                for ref_key, rel in (
                    ("resolves_to_refs", "resolves-to"),
                    ("belongs_to_refs", "belongs-to"),
                ):
                    for ref in obj.get(ref_key) or []:
                        self._add_edge(stix_id, str(ref), rel, f"{stix_id}/{ref_key}")
            elif otype == "file" and isinstance(obj.get("hashes"), dict):
                for algo, value in obj["hashes"].items():
                    mapped = _HASH_ALGOS.get(str(algo).lower())
                    term = _term(mapped, str(value)) if mapped else None
                    if term:
                        self._index((term.indicator_type, term.value), stix_id)
            elif otype == "indicator" and isinstance(obj.get("pattern"), str):
                if obj.get("pattern_type", "stix") != "stix":
                    continue
                terms, skipped = parse_pattern(obj["pattern"])
                for text in skipped:
                    self.skipped_patterns.append({"indicator": stix_id, "comparison": text})
                for term in terms:
                    if term.network is not None:
                        self.networks.append((term.network, stix_id))
                    else:
                        self._index((term.indicator_type, term.value), stix_id)
        # SCO networks (ipv4-addr values written as CIDR) also match contained addresses.
        for stix_id in sorted(self.objects):
            obj = self.objects[stix_id]
            if obj["type"] in ("ipv4-addr", "ipv6-addr") and "/" in str(obj.get("value", "")):
                try:
                    net = ipaddress.ip_network(str(obj["value"]), strict=False)
                except ValueError:
                    continue
                if net.num_addresses > 1:
                    self.networks.append((net, stix_id))
        for neighbours in self.adjacency.values():
            neighbours.sort(key=lambda item: (item[0], item[1].id))
        self.edges.sort(key=lambda e: (e.source, e.target, e.relationship_type, e.id))

    # -- queries ------------------------------------------------------------------------------

    def seeds_for(
        self, ind_type: str, value: str, attributes: dict[str, Any]
    ) -> list[dict[str, str]]:
        """STIX ids matching an ingested indicator, with how they matched (exact first)."""
        seeds: dict[str, str] = {}
        for stix_id in self.index.get((ind_type, value), set()):
            seeds[stix_id] = "exact"
        if ind_type in ("ipv4", "ipv6"):
            addr = ipaddress.ip_address(value)
            for net, stix_id in self.networks:
                if net.version == addr.version and addr in net:
                    seeds.setdefault(stix_id, "network")
        if ind_type == "url":
            host_type = str(attributes.get("hostType", ""))
            host = str(attributes.get("host", ""))
            if host:
                for seed in self.seeds_for(host_type, host, {}):
                    seeds.setdefault(seed["id"], "url_host")
        if ind_type in ("domain", "email", "url") and not seeds:
            registered = attributes.get("registeredDomain")
            domain = attributes.get("domain", value if ind_type == "domain" else None)
            if isinstance(domain, str) and ind_type == "email":
                for stix_id in self.index.get(("domain", domain), set()):
                    seeds.setdefault(stix_id, "email_domain")
            if isinstance(registered, str) and registered != value:
                for stix_id in self.index.get(("domain", registered), set()):
                    seeds.setdefault(stix_id, "registered_domain")
        return [{"id": k, "matchType": seeds[k]} for k in sorted(seeds)]

    def bfs(
        self, seeds: list[str], max_depth: int, max_nodes: int
    ) -> tuple[dict[str, int], dict[str, tuple[str, Edge] | None]]:
        """Breadth-first reach from `seeds`: depth of each node and its BFS parent.

        Neighbours are visited in sorted order, so parents (hence paths) are deterministic.
        Terminal node types are reached but not expanded; a campaign expands only along
        `attributed-to`, which is how a campaign leads to its intrusion set.
        """
        depth: dict[str, int] = {}
        parent: dict[str, tuple[str, Edge] | None] = {}
        queue: deque[str] = deque()
        for seed in sorted(set(seeds)):
            if seed in self.objects:
                depth[seed] = 0
                parent[seed] = None
                queue.append(seed)
        while queue:
            node = queue.popleft()
            if depth[node] >= max_depth:
                continue
            ntype = self.objects[node]["type"]
            if ntype in TERMINAL_TYPES and depth[node] > 0:
                continue
            for neighbour, edge in self.adjacency.get(node, []):
                if (
                    ntype == "campaign"
                    and depth[node] > 0
                    and edge.relationship_type != "attributed-to"
                ):
                    continue
                if neighbour in depth:
                    continue
                if len(depth) >= max_nodes:
                    return depth, parent
                depth[neighbour] = depth[node] + 1
                parent[neighbour] = (node, edge)
                queue.append(neighbour)
        return depth, parent

    @staticmethod
    def path_to(
        node: str, parent: dict[str, tuple[str, Edge] | None]
    ) -> tuple[list[str], list[Edge]]:
        """Nodes (seed first) and edges of the BFS-tree path ending at `node`."""
        nodes = [node]
        edges: list[Edge] = []
        step = parent.get(node)
        while step is not None:
            prev, edge = step
            nodes.append(prev)
            edges.append(edge)
            step = parent.get(prev)
        nodes.reverse()
        edges.reverse()
        return nodes, edges

    # -- actor profiles -----------------------------------------------------------------------

    def software_ref(self, stix_id: str) -> dict[str, Any]:
        obj = self.objects[stix_id]
        return {
            "stixId": stix_id,
            "type": obj["type"],
            "name": label_of(obj),
            "aliases": sorted(
                {str(a) for a in obj.get("aliases") or obj.get("x_mitre_aliases") or []}
            ),
            "attackId": attack_external_id(obj),
        }

    def actor_profiles(self) -> list[dict[str, Any]]:
        """Every intrusion set and campaign in the bundle with the techniques/software it uses."""
        profiles: list[dict[str, Any]] = []
        for stix_id in sorted(self.objects):
            obj = self.objects[stix_id]
            if obj["type"] not in ATTRIBUTION_TYPES:
                continue
            techniques: set[str] = set()
            software: dict[str, dict[str, Any]] = {}
            attributed: set[str] = set()
            for neighbour, edge in self.adjacency.get(stix_id, []):
                if edge.source != stix_id:
                    continue
                ntype = self.objects[neighbour]["type"]
                if edge.relationship_type == "uses" and ntype == "attack-pattern":
                    ext = attack_external_id(self.objects[neighbour])
                    if ext:
                        techniques.add(ext)
                elif edge.relationship_type == "uses" and ntype in SOFTWARE_TYPES:
                    software[neighbour] = self.software_ref(neighbour)
                elif edge.relationship_type == "attributed-to" and ntype == "intrusion-set":
                    attributed.add(neighbour)
            profiles.append(
                {
                    "stixId": stix_id,
                    "type": obj["type"],
                    "name": label_of(obj),
                    "aliases": sorted({str(a) for a in obj.get("aliases") or []}),
                    "attackId": attack_external_id(obj),
                    "description": str(obj.get("description", ""))[:500],
                    "techniques": sorted(techniques),
                    "software": [software[k] for k in sorted(software)],
                    "attributedTo": sorted(attributed),
                }
            )
        return profiles
