"""The infrastructure graph over one STIX bundle, which LOOKUP_GRAPH walks.

SDOs, SCOs and SROs become nodes and edges; indicator patterns (read with the reference
grammar, `stix_patterns`) and SCO values become an index from normalised observable to the
STIX ids that name it. Reading the bundle itself (versions, 2.0 upgrade) is `stix_bundle`.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook_executors.cti.stix_bundle import StixBundle
from runbook_executors.cti.stix_patterns import (
    HASH_ALGOS,
    SCO_VALUE_TYPES,
    PatternTerm,
    observable_term,
    read_pattern,
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

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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

    bundle: StixBundle
    edges: list[Edge] = field(default_factory=list)
    adjacency: dict[str, list[tuple[str, Edge]]] = field(default_factory=dict)
    index: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    networks: list[tuple[Network, str]] = field(default_factory=list)
    skipped_patterns: list[dict[str, str]] = field(default_factory=list)

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        return self.bundle.objects

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def build(cls, bundle: StixBundle) -> StixGraph:
        graph = cls(bundle=bundle)
        for stix_id in sorted(bundle.objects):
            obj = bundle.objects[stix_id]
            add = _BUILDERS.get(obj["type"])
            if add is not None:
                add(graph, stix_id, obj)
            elif obj["type"] in SCO_VALUE_TYPES:
                _add_sco(graph, stix_id, obj)
        for neighbours in graph.adjacency.values():
            neighbours.sort(key=lambda item: (item[0], item[1].id))
        graph.edges.sort(key=lambda e: (e.source, e.target, e.relationship_type, e.id))
        return graph

    def add_edge(self, source: str, target: str, rel_type: str, edge_id: str) -> None:
        if source not in self.objects or target not in self.objects or source == target:
            return
        edge = Edge(source=source, target=target, relationship_type=rel_type, id=edge_id)
        self.edges.append(edge)
        self.adjacency.setdefault(source, []).append((target, edge))
        self.adjacency.setdefault(target, []).append((source, edge))

    def add_term(self, term: PatternTerm, stix_id: str) -> None:
        if term.network is not None:
            self.networks.append((term.network, stix_id))
        else:
            self.index.setdefault((term.indicator_type, term.value), set()).add(stix_id)

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


# -- what each object type contributes to the graph (one small function per type) ---------------


def _add_relationship(graph: StixGraph, stix_id: str, obj: dict[str, Any]) -> None:
    rel = str(obj.get("relationship_type", "related-to"))
    graph.add_edge(str(obj.get("source_ref")), str(obj.get("target_ref")), rel, stix_id)


def _add_sighting(graph: StixGraph, stix_id: str, obj: dict[str, Any]) -> None:
    target = str(obj.get("sighting_of_ref"))
    for ref in obj.get("observed_data_refs") or []:
        graph.add_edge(str(ref), target, "sighting-of", stix_id)


def _add_observed_data(graph: StixGraph, stix_id: str, obj: dict[str, Any]) -> None:
    for ref in obj.get("object_refs") or []:
        graph.add_edge(stix_id, str(ref), "observed", f"{stix_id}/object_refs")


def _add_sco(graph: StixGraph, stix_id: str, obj: dict[str, Any]) -> None:
    """Address, domain, URL and e-mail SCOs: their value (a CIDR value is a network)."""
    if isinstance(obj.get("value"), str):
        term = observable_term(SCO_VALUE_TYPES[obj["type"]], obj["value"])
        if term is not None:
            graph.add_term(term, stix_id)
    for ref_key, rel in (("resolves_to_refs", "resolves-to"), ("belongs_to_refs", "belongs-to")):
        for ref in obj.get(ref_key) or []:
            graph.add_edge(stix_id, str(ref), rel, f"{stix_id}/{ref_key}")


def _add_file(graph: StixGraph, stix_id: str, obj: dict[str, Any]) -> None:
    hashes = obj.get("hashes")
    for algo, value in hashes.items() if isinstance(hashes, dict) else []:
        mapped = HASH_ALGOS.get(str(algo).lower())
        term = observable_term(mapped, str(value)) if mapped else None
        if term is not None:
            graph.add_term(term, stix_id)


def _add_indicator(graph: StixGraph, stix_id: str, obj: dict[str, Any]) -> None:
    """Index a STIX pattern's values; list what is not used (and other pattern types) as skipped."""
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        return
    pattern_type = str(obj.get("pattern_type", "stix"))
    if pattern_type != "stix":
        graph.skipped_patterns.append(
            {
                "indicator": stix_id,
                "patternType": pattern_type,
                "reason": f"pattern_type {pattern_type} is not evaluated (only stix); the "
                "indicator is still linked through its relationships",
            }
        )
        return
    version = graph.bundle.object_versions.get(stix_id, graph.bundle.spec_version)
    reading = read_pattern(pattern, version)
    for term in reading.terms:
        graph.add_term(term, stix_id)
    graph.skipped_patterns.extend({"indicator": stix_id, **s.wire()} for s in reading.skipped)


_BUILDERS: dict[str, Callable[[StixGraph, str, dict[str, Any]], None]] = {
    "relationship": _add_relationship,
    "sighting": _add_sighting,
    "observed-data": _add_observed_data,
    "file": _add_file,
    "artifact": _add_file,
    "indicator": _add_indicator,
}
