"""LOOKUP_GRAPH: resolve indicators against a user-supplied STIX 2.1 bundle, breadth-first."""

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
from runbook_executors.cti.common import ConfigError, indicator_key, int_setting, upstream_list
from runbook_executors.cti.datasources import resolve_path
from runbook_executors.cti.stix import (
    ATTRIBUTION_TYPES,
    SOFTWARE_TYPES,
    StixGraph,
    attack_external_id,
    label_of,
)

GRAPH_TYPES = frozenset(
    {"ipv4", "ipv6", "domain", "url", "email", "md5", "sha1", "sha256", "sha512"}
)
"""Indicator types looked up in the graph; CVEs and technique ids are context for the miner."""


def bundle_citation(graph: StixGraph) -> Citation:
    return Citation(
        source="STIX 2.1 bundle (user supplied)",
        version=f"sha256:{graph.sha256}",
        reference=graph.source,
        note=f"{len(graph.objects)} objects",
    )


class LookupGraphExecutor(BaseStepExecutor):
    """Walk the user's STIX infrastructure graph from each indicator to intrusion sets/campaigns.

    Bundle: `input.stixBundle` (inline), `input.stixBundlePath` or `config.bundlePath`; relative
    paths resolve against $RUNBOOK_BASE_DIR, else the working directory.
    Config: `maxDepth` (default 3), `maxNodes` (default 5000).
    """

    action_type: ClassVar[str] = ActionType.LOOKUP_GRAPH

    def _load(self, ctx: StepExecutorContext) -> StixGraph | None:
        inline = self.get_input(ctx, "stixBundle")
        if inline is not None:
            return StixGraph.from_bundle(inline, source="input.stixBundle")
        path = self.get_input(ctx, "stixBundlePath") or self.get_config(ctx, "bundlePath")
        if path is None:
            return None
        if not isinstance(path, str) or not path:
            raise ConfigError("bundle path must be a non-empty string")
        return StixGraph.from_file(resolve_path(path))

    def execute(self, ctx: StepExecutorContext) -> StepExecutorResult:
        max_depth = int_setting(self, ctx, "maxDepth", 3, minimum=0, maximum=10)
        max_nodes = int_setting(self, ctx, "maxNodes", 5000, minimum=1, maximum=1_000_000)
        indicators = [i for i in upstream_list(self, ctx, "indicators") if isinstance(i, dict)]
        graph = self._load(ctx)

        resolvable = [i for i in indicators if i.get("type") in GRAPH_TYPES]
        context = sorted(indicator_key(i) for i in indicators if i.get("type") not in GRAPH_TYPES)
        resolved: list[dict[str, Any]] = []
        unresolved: list[dict[str, Any]] = []
        paths: list[dict[str, Any]] = []
        reached_depth: dict[str, int] = {}
        truncated: list[str] = []

        for ind in sorted(resolvable, key=indicator_key):
            key = indicator_key(ind)
            if graph is None:
                unresolved.append({"indicator": key, "reason": "no STIX bundle supplied"})
                continue
            seeds = graph.seeds_for(str(ind["type"]), str(ind["value"]), ind)
            if not seeds:
                unresolved.append({"indicator": key, "reason": "not found in the STIX bundle"})
                continue
            resolved.append({"indicator": key, "seeds": seeds})
            match_of = {s["id"]: s["matchType"] for s in seeds}
            depth, parent = graph.bfs([s["id"] for s in seeds], max_depth, max_nodes)
            if len(depth) >= max_nodes:
                truncated.append(key)
            for node, d in depth.items():
                reached_depth[node] = min(d, reached_depth.get(node, d))
            for node in sorted(depth):
                if graph.objects[node]["type"] not in ATTRIBUTION_TYPES:
                    continue
                nodes, edges = StixGraph.path_to(node, parent)
                obj = graph.objects[node]
                paths.append(
                    {
                        "indicator": key,
                        "targetId": node,
                        "targetType": obj["type"],
                        "targetName": label_of(obj),
                        "hops": len(edges),
                        "matchType": match_of.get(nodes[0], "exact"),
                        "nodes": [
                            {
                                "id": n,
                                "type": graph.objects[n]["type"],
                                "label": label_of(graph.objects[n]),
                            }
                            for n in nodes
                        ],
                        "relationships": [e.to_dict() for e in edges],
                    }
                )

        nodes_out: list[dict[str, Any]] = []
        techniques: dict[str, dict[str, Any]] = {}
        software: dict[str, dict[str, Any]] = {}
        if graph is not None:
            for node in sorted(reached_depth):
                obj = graph.objects[node]
                item = {
                    "id": node,
                    "type": obj["type"],
                    "label": label_of(obj),
                    "depth": reached_depth[node],
                }
                ext = attack_external_id(obj)
                if ext:
                    item["attackId"] = ext
                nodes_out.append(item)
                if obj["type"] == "attack-pattern" and ext:
                    techniques.setdefault(ext, {"id": ext, "name": label_of(obj), "stixIds": []})
                    techniques[ext]["stixIds"].append(node)
                if obj["type"] in SOFTWARE_TYPES:
                    software[node] = graph.software_ref(node)
            edges_out = [
                e.to_dict()
                for e in graph.edges
                if e.source in reached_depth and e.target in reached_depth
            ]
        else:
            edges_out = []
        paths.sort(key=lambda p: (p["indicator"], p["hops"], p["targetId"]))
        reached_actors = sorted({p["targetId"] for p in paths})

        citations: list[Citation] = []
        bundle_info: dict[str, Any] | None = None
        if graph is not None:
            citations.append(bundle_citation(graph))
            bundle_info = {
                "source": graph.source,
                "sha256": graph.sha256,
                "objectCount": len(graph.objects),
            }
        output: dict[str, Any] = {
            "bundle": bundle_info,
            "maxDepth": max_depth,
            "graph": {"nodes": nodes_out, "edges": edges_out},
            "resolved": resolved,
            "unresolved": unresolved,
            "contextIndicators": context,
            "paths": paths,
            "reachedActors": reached_actors,
            "observedTechniques": [techniques[k] for k in sorted(techniques)],
            "observedSoftware": [software[k] for k in sorted(software)],
            "actors": graph.actor_profiles() if graph is not None else [],
            "skippedPatterns": graph.skipped_patterns if graph is not None else [],
            "truncated": truncated,
            # Passed through so steps that only see their direct parent still get them.
            "indicators": indicators,
        }
        kpis: dict[str, KpiValue] = {
            "resolvedCount": len(resolved),
            "unresolvedCount": len(unresolved),
            "nodeCount": len(nodes_out),
            "edgeCount": len(edges_out),
            "pathCount": len(paths),
            "linkedActorCount": len(reached_actors),
        }
        evidence = [
            self.create_evidence(
                "infrastructure_path",
                {
                    "indicator": p["indicator"],
                    "target": p["targetId"],
                    "hops": p["hops"],
                    "nodes": [n["id"] for n in p["nodes"]],
                    "relationships": [r["relationshipType"] for r in p["relationships"]],
                },
                step_id=ctx.step_id,
                citations=[*citations, Citation(source="STIX object", reference=p["targetId"])],
            )
            for p in paths
        ]
        return self.success(output, kpis=kpis, evidence=evidence, citations=citations)
