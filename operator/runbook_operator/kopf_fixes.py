"""A namespace created while kopf (1.45) starts, or while its namespace watch relists, is
never watched: this closes that gap.

With namespace globs (`RUNBOOK_NAMESPACES=team-*`), kopf lists the namespaces once, then
starts a namespace watcher that lists them *again* and hands that second listing over as
events of type None, which `process_discovered_namespace_event` drops as "already known".
A namespace created between the two listings, or while the watch was down and had to relist,
so appears in no event kopf acts on, and its executions stay without a status until the
operator restarts (seen in CI: a test namespace created right after start-up). Revising the
namespaces from the listing too is idempotent (a known namespace is added again), so the fix
is to stop dropping it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

log = logging.getLogger("runbook_operator")
TESTED_KOPF = ((1, 45, 2), (1, 46, 0))
"""kopf releases this patch was tested against: [lowest, first untested). pyproject.toml pins
the same range; tests/unit/operator/test_kopf_fixes.py fails on a kopf outside it."""
_MARK = "_runbook_operator_keeps_listings"


def _listing_kept(original: Callable[..., Any], revise: Callable[..., None]) -> Callable[..., Any]:
    async def process_discovered_namespace_event(
        *, raw_event: Any, namespaces: Collection[Any], insights: Any, **kwargs: Any
    ) -> None:
        if raw_event.get("type") is not None:
            await original(raw_event=raw_event, namespaces=namespaces, insights=insights, **kwargs)
            return
        async with insights.revised:
            revise(raw_events=[raw_event], insights=insights, namespaces=namespaces)
            insights.revised.notify_all()

    setattr(process_discovered_namespace_event, _MARK, True)
    return process_discovered_namespace_event


def keep_namespace_listings() -> bool:
    """Patch kopf so a relisted namespace is revised like a new one. False (and a warning)
    when kopf's internals moved: the operator still runs, with kopf's own behaviour."""
    observation = _observation()
    original = getattr(observation, "process_discovered_namespace_event", None)
    revise = getattr(observation, "revise_namespaces", None)
    if original is None or revise is None:
        log.warning(
            "kopf internals changed: new namespaces seen only in a relisting stay unwatched"
        )
        return False
    if not getattr(original, _MARK, False):
        observation.process_discovered_namespace_event = _listing_kept(original, revise)
    return True


def applied() -> bool:
    fn = getattr(_observation(), "process_discovered_namespace_event", None)
    return bool(getattr(fn, _MARK, False))


def _observation() -> Any:
    try:
        from kopf._core.reactor import observation
    except ImportError:  # kopf moved its internals
        return None
    return observation
