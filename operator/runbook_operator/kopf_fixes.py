"""Two patches to kopf (1.45) internals, each tested against kopf's own code.

1. A namespace created while kopf starts, or while its namespace watch relists, is never
watched: `keep_namespace_listings` closes that gap.

With namespace globs (`RUNBOOK_NAMESPACES=team-*`), kopf lists the namespaces once, then
starts a namespace watcher that lists them *again* and hands that second listing over as
events of type None, which `process_discovered_namespace_event` drops as "already known".
A namespace created between the two listings, or while the watch was down and had to relist,
so appears in no event kopf acts on, and its executions stay without a status until the
operator restarts (seen in CI: a test namespace created right after start-up). Revising the
namespaces from the listing too is idempotent (a known namespace is added again), so the fix
is to stop dropping it.

2. kopf keeps the latest body of every object that has had a daemon (`live_fresh_body`, the
live `body` a daemon sees), for as long as the object exists. It frees it when the daemon exits
on its own, but the next watch event stores it again, and nothing frees it after that: every
finished RunbookExecution (its daemon ended with the execution, its final status arrived as an
event right after) cost the operator ~30 KB until deleted, ~40 KB of RSS each in
tests/e2e/test_fairness.py. `free_bodies_without_daemons` drops it after each event whenever no
daemon of that object runs; kopf stores it again from the next event before it spawns one.
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
_FREES = "_runbook_operator_frees_bodies"


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


def _frees_bodies(original: Callable[..., Any]) -> Callable[..., Any]:
    async def process_spawning_cause(*, memory: Any, **kwargs: Any) -> Any:
        delays = await original(memory=memory, **kwargs)
        daemons = memory.daemons_memory
        if not daemons.running_daemons:  # no daemon reads it; the next event sets it again
            daemons.live_fresh_body = None
        return delays

    setattr(process_spawning_cause, _FREES, True)
    return process_spawning_cause


def free_bodies_without_daemons() -> bool:
    """Patch kopf so an object whose daemons have all ended keeps no copy of its body. False
    (and a warning) when kopf's internals moved: the operator still runs, keeping them."""
    processing = _processing()
    original = getattr(processing, "process_spawning_cause", None)
    if original is None:
        log.warning("kopf internals changed: finished executions keep their last body in memory")
        return False
    if not getattr(original, _FREES, False):
        processing.process_spawning_cause = _frees_bodies(original)
    return True


def frees_bodies() -> bool:
    fn = getattr(_processing(), "process_spawning_cause", None)
    return bool(getattr(fn, _FREES, False))


def _processing() -> Any:
    try:
        from kopf._core.reactor import processing
    except ImportError:  # kopf moved its internals
        return None
    return processing


def _observation() -> Any:
    try:
        from kopf._core.reactor import observation
    except ImportError:  # kopf moved its internals
        return None
    return observation
