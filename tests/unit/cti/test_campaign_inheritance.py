"""Groups inherit what the campaigns attributed to them use (bundle and ATT&CK), visibly."""

from __future__ import annotations

from typing import Any

from runbook_executors.cti.attack import attack_knowledge, inherit_campaign_evidence
from tests.unit.cti.helpers import run_chain


def _vendor_style_bundle() -> dict[str, Any]:
    """Techniques and malware on the campaign; the group only has `attributed-to`."""

    def rel(n: int, src: str, rtype: str, tgt: str) -> dict[str, Any]:
        return {
            "type": "relationship",
            "spec_version": "2.1",
            "id": f"relationship--{n}",
            "relationship_type": rtype,
            "source_ref": src,
            "target_ref": tgt,
        }

    return {
        "type": "bundle",
        "id": "bundle--v",
        "objects": [
            {"type": "intrusion-set", "spec_version": "2.1", "id": "intrusion-set--g", "name": "G"},
            {"type": "campaign", "spec_version": "2.1", "id": "campaign--c", "name": "C"},
            {
                "type": "ipv4-addr",
                "spec_version": "2.1",
                "id": "ipv4-addr--1",
                "value": "198.51.100.9",
            },
            {"type": "malware", "spec_version": "2.1", "id": "malware--m", "name": "MoleRat"},
            {
                "type": "attack-pattern",
                "spec_version": "2.1",
                "id": "attack-pattern--t",
                "name": "Spearphishing Attachment",
                "external_references": [
                    {"source_name": "mitre-attack", "external_id": "T1566.001"}
                ],
            },
            rel(1, "campaign--c", "attributed-to", "intrusion-set--g"),
            rel(2, "campaign--c", "uses", "attack-pattern--t"),
            rel(3, "campaign--c", "uses", "malware--m"),
            rel(4, "campaign--c", "uses", "ipv4-addr--1"),
        ],
    }


def test_a_group_scores_the_techniques_and_software_of_its_campaigns() -> None:
    chain = run_chain(
        {
            "indicators": ["198.51.100.9"],
            "techniques": ["T1566.001"],
            "software": ["MoleRat"],
            "stixBundle": _vendor_style_bundle(),
        },
        enrich=False,
        configs={"resolve_infrastructure": {"bundlePath": None}},
    )
    (group,) = [c for c in chain["match_campaigns"].output["candidates"] if c["name"] == "G"]
    parts = {c["component"]: c for c in group["contributions"]}
    (technique,) = [d for d in parts["techniques"]["details"] if d["technique"] == "T1566.001"]
    assert technique["match"] == 1.0
    assert technique["inheritedFrom"] == ["campaign--c"]
    (software,) = parts["software"]["details"]
    assert software["inheritedFrom"] == ["campaign--c"]
    assert group["matchedTechniques"] == ["T1566.001"]
    assert parts["infrastructure"]["value"] > 0  # ip -> campaign -> attributed-to -> group


def test_attack_groups_inherit_their_campaigns_techniques() -> None:
    kb = attack_knowledge()
    actors = inherit_campaign_evidence(kb.actors)
    gains = 0
    for campaign in kb.actors.values():
        if campaign.kind != "campaign":
            continue
        for group_id in campaign.attributed_to:
            group = actors[group_id]
            assert campaign.techniques <= group.techniques
            assert campaign.software <= group.software
            for key in (campaign.techniques | campaign.software) - (
                kb.actors[group_id].techniques | kb.actors[group_id].software
            ):
                assert campaign.id in group.inherited[key]
                gains += 1
    assert gains > 0  # ATT&CK does attribute campaigns whose techniques the group lacks
    for actor_id, actor in kb.actors.items():  # nothing else changes
        if actor.kind == "campaign" or not actors[actor_id].inherited:
            assert actors[actor_id].techniques == actor.techniques


def test_direct_use_is_not_marked_as_inherited_and_attack_data_is_not_modified() -> None:
    bundle = _vendor_style_bundle()
    bundle["objects"].append(
        {
            "type": "relationship",
            "spec_version": "2.1",
            "id": "relationship--5",
            "relationship_type": "uses",
            "source_ref": "intrusion-set--g",
            "target_ref": "attack-pattern--t",
        }
    )
    chain = run_chain(
        {"indicators": ["198.51.100.9"], "techniques": ["T1566.001"], "stixBundle": bundle},
        enrich=False,
        configs={"resolve_infrastructure": {"bundlePath": None}},
    )
    (group,) = [c for c in chain["match_campaigns"].output["candidates"] if c["name"] == "G"]
    (techniques,) = [c for c in group["contributions"] if c["component"] == "techniques"]
    (detail,) = techniques["details"]
    assert detail["match"] == 1.0 and "inheritedFrom" not in detail
    assert [a.id for a in attack_knowledge().actors.values() if a.inherited] == []
