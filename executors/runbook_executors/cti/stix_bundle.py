"""Reading a user's STIX 2.0 or 2.1 bundle: version, 2.0 observables upgraded, validation notes.

Published bundles come in both versions. A 2.0 bundle declares `spec_version: "2.0"` on the
bundle and none on its objects, and its observed-data carries observables inline
(`objects: {"0": {...}}`, references by key). Those inline observables are upgraded to
objects of their own, referenced from `object_refs` as in 2.1, so the graph indexes and walks
them the same way. Anything else that declares another version is refused.

The OASIS validator (`stix2-validator`) checks the bundle against the schemas of its version;
its findings are reported, never a reason to refuse what can still be read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook_engine.contract import Citation
from runbook_executors.base import NonRetryableError
from runbook_executors.files import FileTooLarge, read_bytes_bounded

READ_VERSIONS = ("2.0", "2.1")
UPGRADE_NAMESPACE = uuid.UUID("8a4c9b6e-3f0d-5c1a-9e2b-7d6f4a1c0b3e")
"""uuid5 namespace of the ids given to upgraded 2.0 inline observables (stable across runs)."""
MAX_LISTED_FINDINGS = 20


class BundleError(NonRetryableError, ValueError):
    """The STIX bundle cannot be read, is not a bundle, or is of a version not read here.

    Not retried: the same file gives the same answer on the next attempt.
    """


@dataclass(frozen=True)
class StixBundle:
    """The readable objects of one bundle (revoked ones dropped), and what was found about it."""

    objects: dict[str, dict[str, Any]]
    spec_version: str
    """`2.0`, `2.1`, or `2.0+2.1` for a bundle that mixes objects of both versions."""
    object_versions: dict[str, str]
    sha256: str
    source: str
    upgraded_observables: int = 0
    validation: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """What LOOKUP_GRAPH reports about the bundle."""
        return {
            "source": self.source,
            "sha256": self.sha256,
            "objectCount": len(self.objects),
            "specVersion": self.spec_version,
            "upgradedObservables": self.upgraded_observables,
            "validation": self.validation,
        }


def bundle_citation(info: dict[str, Any], *, counted: bool = False) -> Citation:
    """The citation of a bundle from its `info()` (as LOOKUP_GRAPH outputs it), real version named."""
    return Citation(
        source=f"STIX {info.get('specVersion', '2.1')} bundle (user supplied)",
        version=f"sha256:{info.get('sha256')}",
        reference=str(info.get("source")),
        note=f"{info.get('objectCount')} objects" if counted else None,
    )


def read_bundle_file(path: Path, *, validate_max_objects: int) -> StixBundle:
    try:
        raw = read_bytes_bounded(path)
    except OSError as exc:
        raise BundleError(f"cannot read STIX bundle {path}: {exc.strerror or exc}") from None
    except FileTooLarge as exc:
        raise BundleError(f"STIX bundle {exc}") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"STIX bundle {path} is not valid JSON: {exc}") from None
    return read_bundle(data, source=str(path), validate_max_objects=validate_max_objects)


def read_bundle(data: Any, *, source: str, validate_max_objects: int) -> StixBundle:
    """Read a parsed bundle; BundleError if it is not one or declares a version not read here."""
    if not isinstance(data, dict) or data.get("type") != "bundle":
        raise BundleError("not a STIX bundle (top-level type must be 'bundle')")
    raw_objects = data.get("objects", [])
    if not isinstance(raw_objects, list):
        raise BundleError("bundle 'objects' must be a list")
    wellformed = [
        o
        for o in raw_objects
        if isinstance(o, dict) and isinstance(o.get("id"), str) and "type" in o
    ]
    default = _default_version(data, wellformed)
    objects: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    upgraded = 0
    for obj in wellformed:
        if obj.get("revoked") is True:
            continue
        version = _object_version(obj, default)
        items = _upgrade_inline_observables(obj)
        for item in items:
            objects[item["id"]] = item
            versions[item["id"]] = version
        upgraded += len(items) - 1
    label = "+".join(sorted(set(versions.values()))) or default
    return StixBundle(
        objects=objects,
        spec_version=label,
        object_versions=versions,
        sha256=_digest(data),
        source=source,
        upgraded_observables=upgraded,
        validation=validate(data, label, max_objects=validate_max_objects),
    )


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _default_version(bundle: dict[str, Any], objects: list[dict[str, Any]]) -> str:
    """The version of objects that do not declare one.

    A 2.0 bundle declares `spec_version` (always "2.0"); a 2.1 bundle does not, but its
    SDOs and SROs must. Objects without a declaration in a bundle without one are 2.0.
    """
    declared = bundle.get("spec_version")
    if declared is not None:
        if declared not in READ_VERSIONS:
            raise BundleError(
                f"bundle spec_version {declared!r} is not read here (only STIX 2.0 and 2.1)"
            )
        return str(declared)
    return "2.1" if any(o.get("spec_version") == "2.1" for o in objects) else "2.0"


def _object_version(obj: dict[str, Any], default: str) -> str:
    version = obj.get("spec_version", default)
    if version not in READ_VERSIONS:
        raise BundleError(
            f"object {obj['id']} has spec_version {version!r}; only STIX 2.0 and 2.1 are read"
        )
    return str(version)


def _upgrade_inline_observables(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """`obj` itself, or for observed-data with inline `objects`: it plus one object per entry.

    The observed-data's `object_refs` then lists the new ids, and each `*_ref(s)` between
    inline objects (their dictionary keys) is rewritten to the referenced object's new id.
    """
    inline = obj.get("objects")
    if obj.get("type") != "observed-data" or not isinstance(inline, dict):
        return [obj]
    owner = str(obj["id"])
    ids = {
        str(key): f"{item['type']}--{uuid.uuid5(UPGRADE_NAMESPACE, owner + '/' + str(key))}"
        for key, item in sorted(inline.items())
        if isinstance(item, dict) and isinstance(item.get("type"), str)
    }
    upgraded = [{**_rewrite_refs(inline[key], ids), "id": new_id} for key, new_id in ids.items()]
    refs = [*obj.get("object_refs", []), *ids.values()]
    observed = {k: v for k, v in obj.items() if k != "objects"}
    return [{**observed, "object_refs": refs}, *upgraded]


def _rewrite_refs(value: Any, ids: dict[str, str], key: str = "") -> Any:
    """Rewrite inline-object keys in `*_ref` / `*_refs` properties, at any depth."""
    if isinstance(value, dict):
        return {k: _rewrite_refs(v, ids, str(k)) for k, v in value.items()}
    if key.endswith("_refs") and isinstance(value, list):
        return [ids.get(str(v), v) for v in value]
    if key.endswith("_ref") and isinstance(value, str | int):
        return ids.get(str(value), value)
    if isinstance(value, list):
        return [_rewrite_refs(v, ids) for v in value]
    return value


# -- validation --------------------------------------------------------------------------------


def _validator() -> tuple[Any, Any]:
    """`stix2validator`'s options class and entry point, imported without a 1.5-6 s detour.

    The validator requires `jsonschema[format-nongpl]`, which installs `rfc3987-syntax`;
    jsonschema imports it when present, and it compiles about 40 Lark grammars at import for
    the `iri` format, which no STIX schema uses. Unless jsonschema is already loaded, it is
    loaded here without that checker (only this process's jsonschema is affected).
    """
    blocked = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if blocked:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
    try:
        from stix2validator import ValidationOptions, validate_instance
    finally:
        if blocked:
            del sys.modules["rfc3987_syntax"]
    return ValidationOptions, validate_instance


def validate(data: dict[str, Any], version: str, *, max_objects: int) -> dict[str, Any]:
    """The OASIS validator's findings on the bundle as read (never raises).

    The validator costs about 5 ms per object, so bundles above `max_objects` are not
    validated (and say so).
    """
    count = len(data.get("objects") or [])
    if count > max_objects:
        return {
            "checked": False,
            "note": f"not validated: {count} objects exceed config.validateMaxObjects "
            f"({max_objects})",
        }
    try:
        ValidationOptions, validate_instance = _validator()
    except ImportError:
        return {"checked": False, "note": "not validated: stix2-validator is not installed"}
    options = ValidationOptions(version=version if version in READ_VERSIONS else None, silent=True)
    logging.getLogger("stix2validator").setLevel(logging.CRITICAL)
    try:
        results = validate_instance(data, options)
    except Exception as exc:  # the validator's own failure must not hide the bundle
        return {"checked": False, "note": f"validator failed: {type(exc).__name__}: {exc}"}
    errors = [str(e) for e in results.errors]
    warnings = [str(w) for w in results.warnings or []]
    return {
        "checked": True,
        "validator": "stix2-validator",
        "valid": bool(results.is_valid),
        "errorCount": len(errors),
        "errors": errors[:MAX_LISTED_FINDINGS],
        "warningCount": len(warnings),
        "warnings": warnings[:MAX_LISTED_FINDINGS],
    }
