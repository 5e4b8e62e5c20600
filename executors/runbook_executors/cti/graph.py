"""LOOKUP_GRAPH: resolve indicators against a user-supplied STIX 2.0/2.1 bundle, breadth-first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from runbook_engine.contract import (
    ActionType,
    Citation,
    Evidence,
    KpiValue,
    StepExecutorContext,
    StepExecutorResult,
)
from runbook_executors.base import BaseStepExecutor
from runbook_executors.cti.common import ConfigError, indicator_key, int_setting, upstream_list
from runbook_executors.cti.datasources import resolve_path
from runbook_executors.cti.stix import (
    ATTRIBUTION_TYPES,
    SOFTWARE_TYPES,
    Edge,
    StixGraph,
    attack_external_id,
    label_of,
)
from runbook_executors.cti.stix_bundle import (
    StixBundle,
    bundle_citation,
    read_bundle,
    read_bundle_file,
)

GRAPH_TYPES = frozenset(
    {"ipv4", "ipv6", "domain", "url", "email", "md5", "sha1", "sha256", "sha512"}
)
"""Indicator types looked up in the graph; CVEs and technique ids are context for the miner."""

Parents = dict[str, tuple[str, Edge] | None]


@dataclass
class Walk:
    """What the walks from every indicator found, accumulated in indicator order."""

    resolved: list[dict[str, Any]] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    paths: list[dict[str, Any]] = field(default_factory=list)
    reached_depth: dict[str, int] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)


def walk_indicator(
    graph: StixGraph | None, ind: dict[str, Any], walk: Walk, max_depth: int, max_nodes: int
) -> None:
    """Seed one indicator in the graph, walk from its seeds and record paths to actors."""
    key = indicator_key(ind)
    if graph is None:
        walk.unresolved.append({"indicator": key, "reason": "no STIX bundle supplied"})
        return
    seeds = graph.seeds_for(str(ind["type"]), str(ind["value"]), ind)
    if not seeds:
        walk.unresolved.append({"indicator": key, "reason": "not found in the STIX bundle"})
        return
    walk.resolved.append({"indicator": key, "seeds": seeds})
    match_of = {s["id"]: s["matchType"] for s in seeds}
    depth, parent = graph.bfs([s["id"] for s in seeds], max_depth, max_nodes)
    if len(depth) >= max_nodes:
        walk.truncated.append(key)
    for node, d in depth.items():
        walk.reached_depth[node] = min(d, walk.reached_depth.get(node, d))
    for node in sorted(depth):
        if graph.objects[node]["type"] in ATTRIBUTION_TYPES:
            walk.paths.append(path_record(graph, key, node, parent, match_of))


def path_record(
    graph: StixGraph, key: str, node: str, parent: Parents, match_of: dict[str, str]
) -> dict[str, Any]:
    """An indicator's BFS path to one intrusion set or campaign, with node labels."""
    nodes, edges = StixGraph.path_to(node, parent)
    obj = graph.objects[node]
    return {
        "indicator": key,
        "targetId": node,
        "targetType": obj["type"],
        "targetName": label_of(obj),
        "hops": len(edges),
        "matchType": match_of.get(nodes[0], "exact"),
        "nodes": [
            {"id": n, "type": graph.objects[n]["type"], "label": label_of(graph.objects[n])}
            for n in nodes
        ],
        "relationships": [e.to_dict() for e in edges],
    }


def reached_summary(graph: StixGraph | None, reached_depth: dict[str, int]) -> dict[str, Any]:
    """Nodes and edges reached, and the techniques and software among them."""
    if graph is None:
        return {"nodes": [], "edges": [], "techniques": [], "software": []}
    nodes: list[dict[str, Any]] = []
    techniques: dict[str, dict[str, Any]] = {}
    software: dict[str, dict[str, Any]] = {}
    for node in sorted(reached_depth):
        obj = graph.objects[node]
        item: dict[str, Any] = {"id": node, "type": obj["type"], "label": label_of(obj)}
        item["depth"] = reached_depth[node]
        ext = attack_external_id(obj)
        if ext:
            item["attackId"] = ext
        nodes.append(item)
        if obj["type"] == "attack-pattern" and ext:
            techniques.setdefault(ext, {"id": ext, "name": label_of(obj), "stixIds": []})
            techniques[ext]["stixIds"].append(node)
        if obj["type"] in SOFTWARE_TYPES:
            software[node] = graph.software_ref(node)
    edges = [
        e.to_dict() for e in graph.edges if e.source in reached_depth and e.target in reached_depth
    ]
    return {
        "nodes": nodes,
        "edges": edges,
        "techniques": [techniques[k] for k in sorted(techniques)],
        "software": [software[k] for k in sorted(software)],
    }


class LookupGraphExecutor(BaseStepExecutor):
    """Walk the user's STIX infrastructure graph from each indicator to intrusion sets/campaigns.

    Bundle: `input.stixBundle` (inline), `input.stixBundlePath` or `config.bundlePath`; relative
    paths resolve against $RUNBOOK_BASE_DIR, else the working directory.
    Config: `maxDepth` (default 3), `maxNodes` (default 5000), `validateMaxObjects` (500).
    """

    action_type: ClassVar[str] = ActionType.LOOKUP_GRAPH

    def _load(self, ctx: StepExecutorContext) -> StixBundle | None:
        limit = int_setting(self, ctx, "validateMaxObjects", 500, minimum=0, maximum=10_000_000)
        inline = self.get_input(ctx, "stixBundle")
        if inline is not None:
            return read_bundle(inline, source="input.stixBundle", validate_max_objects=limit)
        path = self.get_input(ctx, "stixBundlePath") or self.get_config(ctx, "bundlePath")
        if path is None:
            return None
        if not isinstance(path, str) or not path:
            raise ConfigError("bundle path must be a non-empty string")
        return read_bundle_file(resolve_path(path), validate_max_objects=limit)

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        max_depth = int_setting(self, ctx, "maxDepth", 3, minimum=0, maximum=10)
        max_nodes = int_setting(self, ctx, "maxNodes", 5000, minimum=1, maximum=1_000_000)
        indicators = [i for i in upstream_list(self, ctx, "indicators") if isinstance(i, dict)]
        bundle = self._load(ctx)
        graph = StixGraph.build(bundle) if bundle is not None else None

        walk = Walk()
        for ind in sorted(indicators, key=indicator_key):
            if ind.get("type") in GRAPH_TYPES:
                walk_indicator(graph, ind, walk, max_depth, max_nodes)
        walk.paths.sort(key=lambda p: (p["indicator"], p["hops"], p["targetId"]))
        reached = reached_summary(graph, walk.reached_depth)
        citations = [bundle_citation(bundle.info(), counted=True)] if bundle else []
        output: dict[str, Any] = {
            "bundle": bundle.info() if bundle else None,
            "maxDepth": max_depth,
            "graph": {"nodes": reached["nodes"], "edges": reached["edges"]},
            "resolved": walk.resolved,
            "unresolved": walk.unresolved,
            "contextIndicators": sorted(
                indicator_key(i) for i in indicators if i.get("type") not in GRAPH_TYPES
            ),
            "paths": walk.paths,
            "reachedActors": sorted({p["targetId"] for p in walk.paths}),
            "observedTechniques": reached["techniques"],
            "observedSoftware": reached["software"],
            "actors": graph.actor_profiles() if graph is not None else [],
            "skippedPatterns": graph.skipped_patterns if graph is not None else [],
            "truncated": walk.truncated,
        }
        kpis: dict[str, KpiValue] = {
            "resolvedCount": len(walk.resolved),
            "unresolvedCount": len(walk.unresolved),
            "nodeCount": len(reached["nodes"]),
            "edgeCount": len(reached["edges"]),
            "pathCount": len(walk.paths),
            "linkedActorCount": len(output["reachedActors"]),
        }
        evidence = [self._path_evidence(ctx, p, citations) for p in walk.paths]
        return self.success(output, kpis=kpis, evidence=evidence, citations=citations)

    def _path_evidence(
        self, ctx: StepExecutorContext, path: dict[str, Any], citations: list[Citation]
    ) -> Evidence:
        return self.create_evidence(
            "infrastructure_path",
            {
                "indicator": path["indicator"],
                "target": path["targetId"],
                "hops": path["hops"],
                "nodes": [n["id"] for n in path["nodes"]],
                "relationships": [r["relationshipType"] for r in path["relationships"]],
            },
            step_id=ctx.step_id,
            citations=[*citations, Citation(source="STIX object", reference=path["targetId"])],
        )
