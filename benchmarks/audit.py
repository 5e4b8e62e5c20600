"""API requests of one controller, as the apiserver's audit log saw them.

hack/cluster/cluster-up.sh records, at Metadata level, only the two benchmark identities
(`bench:runbook-operator`, `bench:argo-workflow-controller`), so counting is a filter over
the lines a run appended.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection
from pathlib import Path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def offset(path: Path) -> int:
    """Where the log ends now: the start (or end) of one run's lines."""
    return path.stat().st_size if path.exists() else 0


def count_verbs(
    path: Path, start: int, end: int, user: str, namespaces: Collection[str]
) -> Counter[str]:
    """Requests by verb that `user` made in `namespaces` between two offsets of the log."""
    counts: Counter[str] = Counter()
    with path.open("rb") as log:
        log.seek(start)
        for line in log.read(max(0, end - start)).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("user", {}).get("username") != user:
                continue
            if (entry.get("objectRef") or {}).get("namespace") not in namespaces:
                continue
            counts[entry.get("verb", "?")] += 1
    return counts


def writes(counts: Counter[str]) -> int:
    return sum(n for verb, n in counts.items() if verb in WRITE_VERBS)
