"""Which images a step may run, and how they are pulled (pure).

A cluster admin may restrict step images to registry/repository prefixes and/or require a
digest (`RUNBOOK_IMAGE_ALLOW_PREFIXES`, `RUNBOOK_IMAGE_REQUIRE_DIGEST`; chart `stepImages`).
The operator's own executor image is always allowed: it runs the built-in steps. The check
runs when a Runbook is validated (a problem on its status) and again on a Job's manifest right
before the Job is created, so a policy tightened after a Runbook was accepted still holds.

Images are compared the way the container runtime resolves them (`busybox` is
`docker.io/library/busybox`, `acme/tool` is `docker.io/acme/tool`), and a prefix matches only
at a boundary (`/`, `:`, `@` or the end), so `ghcr.io/acme` allows `ghcr.io/acme/tool` but not
`ghcr.io/acme-evil/tool` or `ghcr.io.evil.example/x`. An image that does not parse as a
reference is refused whenever a policy is set: the prefix check must see what the runtime pulls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runbook_engine.problems import Problem

DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
MAX_IMAGE_LENGTH = 4096
MAX_SHOWN_PREFIXES = 5
"""Prefixes named in a problem; the rest are counted (a status stays small)."""

# The reference grammar of distribution/reference (docker, containerd, the kubelet).
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
SHA256_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    """What step images may be. The default (no prefixes, no digest) allows every image."""

    allow_prefixes: tuple[str, ...] = ()
    """Registry/repository prefixes, as configured; empty: any registry."""
    require_digest: bool = False
    """Only `image@sha256:<64 hex>`: a tag can be moved to other content, a digest cannot."""
    own_image: str | None = None
    """The operator's executor image: always allowed, whatever the rules say."""

    @property
    def restricts(self) -> bool:
        return bool(self.allow_prefixes) or self.require_digest


def _is_registry(component: str) -> bool:
    """The runtime's rule: a first component with `.` or `:`, or `localhost`, is a registry."""
    return "." in component or ":" in component or component == "localhost"


def normalize(image: str) -> str:
    """`image` as the runtime resolves it: registry host first, Docker Hub spelled out."""
    first, sep, rest = image.partition("/")
    if not sep or not _is_registry(first):
        path = image if sep else f"library/{image}"
        return f"{DOCKER_HUB}/{path}"
    host = first.lower()
    if host in _HUB_ALIASES:
        host = DOCKER_HUB
    return f"{host}/{rest}"


def normalize_prefix(prefix: str) -> str:
    """A configured prefix in the same form as `normalize` gives images (`acme/` is Docker
    Hub's `docker.io/acme/`); a bare registry host (`ghcr.io`) stays a host."""
    prefix = prefix.strip()
    if "/" not in prefix and _is_registry(prefix):
        return prefix.lower()
    return normalize(prefix)


def _under(image: str, prefix: str) -> bool:
    if not image.startswith(prefix):
        return False
    return len(image) == len(prefix) or prefix.endswith("/") or image[len(prefix)] in "/:@"


def _same(image: str, other: str | None) -> bool:
    return other is not None and (image == other or normalize(image) == normalize(other))


def _shown(prefixes: Sequence[str]) -> str:
    shown = ", ".join(prefixes[:MAX_SHOWN_PREFIXES])
    more = len(prefixes) - MAX_SHOWN_PREFIXES
    return shown + (f" and {more} more" if more > 0 else "")


def image_problem(image: str, policy: ImagePolicy) -> str | None:
    """Why `image` may not run under `policy`, or None when it may."""
    if not policy.restricts or _same(image, policy.own_image):
        return None
    if len(image) > MAX_IMAGE_LENGTH or (parsed := REFERENCE.fullmatch(image)) is None:
        return (
            f"image {image[:200]!r} is not a valid image reference, so the image policy "
            "cannot check it"
        )
    if policy.require_digest and not SHA256_DIGEST.fullmatch(parsed["digest"] or ""):
        return (
            f"image {image!r} has no digest: the image policy requires one "
            "(name@sha256:<64 hex digits>)"
        )
    if policy.allow_prefixes:
        resolved = normalize(image)
        if not any(_under(resolved, normalize_prefix(p)) for p in policy.allow_prefixes):
            return (
                f"image {image!r} (resolved as {resolved!r}) is not under an allowed prefix "
                f"of the image policy ({_shown(policy.allow_prefixes)})"
            )
    return None


def step_image_problems(spec: Mapping[str, Any], policy: ImagePolicy) -> list[Problem]:
    """Problems of a Runbook `spec`'s step images, each naming `spec.steps[i].container.image`.

    Reads the raw spec, so a Runbook with other problems still gets its image problems too.
    """
    steps = spec.get("steps")
    if not policy.restricts or not isinstance(steps, list):
        return []
    problems = []
    for i, step in enumerate(steps):
        container = step.get("container") if isinstance(step, Mapping) else None
        image = container.get("image") if isinstance(container, Mapping) else None
        if isinstance(image, str) and (why := image_problem(image, policy)):
            problems.append(Problem(f"spec.steps[{i}].container.image", why))
    return problems


def manifest_problem(manifest: Mapping[str, Any], policy: ImagePolicy) -> str | None:
    """Why a Job (or pod) manifest may not be created: the first refused container image."""
    spec = manifest.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    containers: Iterable[Mapping[str, Any]] = [
        *(pod.get("initContainers") or []),
        *(pod.get("containers") or []),
    ]
    for container in containers:
        why = image_problem(str(container.get("image") or ""), policy)
        if why:
            return f"container {container.get('name')!r}: {why}"
    return None


def pull_policy(image: str, *, own_image: str, own_policy: str, step_policy: str) -> str:
    """The operator's own image keeps its pull policy; any other image gets `step_policy`
    (`Always` by default: the kubelet then checks the pod may pull it, so a private image
    another tenant left on the node does not run without pull secrets)."""
    return own_policy if _same(image, own_image) else step_policy
