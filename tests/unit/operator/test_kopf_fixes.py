"""The patches of kopf_fixes, run against kopf's own code: its namespace observer, fed the two
listings it makes at start-up (a namespace that appears only in the second one, created in
between, must still be watched), and its daemon spawning (an object whose daemons have ended
must not keep its body)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import fetching
from kopf._cogs.structs import bodies, patches, references
from kopf._core.intents import causes, registries
from kopf._core.reactor import inventory, observation, processing, queueing

from runbook_operator import kopf_fixes

NAMESPACES = references.Resource(group="", version="v1", plural="namespaces", namespaced=False)


def _ns(name: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **meta}}


def _observe(monkeypatch: pytest.MonkeyPatch, first: list[str], second: list[Any]) -> set[Any]:
    """Run kopf's namespace_observer against a first LIST and a watcher whose own initial
    listing (type None events, as kopf's continuous_watch yields them) is `second`."""

    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[list[Any], str]]:
        yield [_ns(n) for n in first], "1"

    async def watcher(*, processor: Callable[..., Any], **_: Any) -> None:
        for item in second:
            event = item if "type" in item else {"type": None, "object": item}
            await processor(raw_event=event)

    monkeypatch.setattr(fetching, "fetch_objs", fetch_objs)
    monkeypatch.setattr(queueing, "watcher", watcher)

    async def run() -> set[Any]:
        insights = references.Insights()
        await insights.backbone.fill(resources=[NAMESPACES])
        await observation.namespace_observer(
            clusterwide=False,
            namespaces=["team-*"],
            insights=insights,
            settings=kopf.OperatorSettings(),
        )
        return set(insights.namespaces)

    return asyncio.run(run())


@pytest.fixture
def restore_kopf(monkeypatch: pytest.MonkeyPatch) -> None:
    fn = observation.process_discovered_namespace_event
    monkeypatch.setattr(observation, "process_discovered_namespace_event", fn)


def test_without_the_fix_kopf_drops_a_namespace_seen_only_in_the_relisting(
    monkeypatch: pytest.MonkeyPatch, restore_kopf: None
) -> None:
    assert not kopf_fixes.applied()
    seen = _observe(monkeypatch, ["team-a"], [_ns("team-a"), _ns("team-b")])
    assert seen == {"team-a"}  # the gap this module closes; if kopf fixed it, drop the patch


def test_with_the_fix_a_namespace_created_between_the_two_listings_is_watched(
    monkeypatch: pytest.MonkeyPatch, restore_kopf: None
) -> None:
    assert kopf_fixes.keep_namespace_listings()
    assert kopf_fixes.applied()
    seen = _observe(
        monkeypatch,
        ["team-a", "other"],
        [_ns("team-a"), _ns("team-b"), _ns("other"), {"type": "ADDED", "object": _ns("team-c")}],
    )
    assert seen == {"team-a", "team-b", "team-c"}


def test_with_the_fix_a_terminated_namespace_is_still_dropped(
    monkeypatch: pytest.MonkeyPatch, restore_kopf: None
) -> None:
    kopf_fixes.keep_namespace_listings()
    gone = {"type": "DELETED", "object": _ns("team-a")}
    assert _observe(monkeypatch, ["team-a"], [_ns("team-a"), gone]) == set()


def test_applying_twice_wraps_once(restore_kopf: None) -> None:
    kopf_fixes.keep_namespace_listings()
    once = observation.process_discovered_namespace_event
    kopf_fixes.keep_namespace_listings()
    assert observation.process_discovered_namespace_event is once


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def test_the_installed_kopf_is_one_the_patch_was_tested_against() -> None:
    """kopf_fixes reaches into kopf._core: a kopf release outside the tested range must fail
    here (re-run these tests against it, then widen TESTED_KOPF and pyproject.toml together)."""
    from importlib.metadata import version

    low, high = kopf_fixes.TESTED_KOPF
    installed = _release(version("kopf"))
    assert low <= installed < high, f"kopf {installed} is outside the tested range {low}..{high}"


def test_pyproject_pins_the_tested_kopf_range() -> None:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    low, high = kopf_fixes.TESTED_KOPF
    pin = f"kopf>={'.'.join(map(str, low))},<{'.'.join(map(str, high[:2]))}"
    assert pin in deps, f"pyproject.toml should pin {pin!r}, has {[d for d in deps if 'kopf' in d]}"


# -- finished daemons: no body kept -------------------------------------------------------------
THINGS = references.Resource(group="g.dev", version="v1", plural="things", namespaced=True)


def _memory_after_events(events: int) -> inventory.ResourceMemory:
    """Run kopf's own spawning code for an object whose one daemon ends at once (as an
    execution's does when it finishes), then for `events` more watch events of it."""
    registry = registries.OperatorRegistry()

    @kopf.daemon("g.dev", "v1", "things", registry=registry)
    async def ends_at_once(**_: Any) -> None:
        return

    raw = {"apiVersion": "g.dev/v1", "kind": "Thing", "metadata": {"name": "x", "uid": "u"}}

    async def event(memory: inventory.ResourceMemory) -> None:
        cause = causes.SpawningCause(
            logger=logging.getLogger("test"),
            indices={},  # type: ignore[arg-type]
            memo=memory.memo,
            resource=THINGS,
            patch=patches.Patch(),
            body=bodies.Body(raw),
            reset=True,
        )
        await processing.process_spawning_cause(
            registry=registry,
            settings=kopf.OperatorSettings(),
            memory=memory,
            cause=cause,
            operator_paused=None,
        )

    async def run() -> inventory.ResourceMemory:
        memory = inventory.ResourceMemory()  # its clock is the running loop's
        await event(memory)
        for _ in range(200):  # the daemon task ends on the loop's next turns
            if not memory.daemons_memory.running_daemons:
                break
            await asyncio.sleep(0.01)
        assert memory.daemons_memory.forever_stopped  # it ended on its own: never again
        for _ in range(events):
            await event(memory)
        return memory

    return asyncio.run(run())


@pytest.fixture
def restore_spawning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processing, "process_spawning_cause", processing.process_spawning_cause)


def test_without_the_fix_kopf_keeps_the_body_of_an_object_whose_daemon_ended(
    restore_spawning: None,
) -> None:
    assert not kopf_fixes.frees_bodies()
    assert _memory_after_events(0).daemons_memory.live_fresh_body is None  # freed at the end
    kept = _memory_after_events(1).daemons_memory.live_fresh_body
    assert kept is not None  # ...and kept again from the next event on; if kopf fixed it, drop


def test_with_the_fix_no_body_is_kept_once_the_daemons_have_ended(
    restore_spawning: None,
) -> None:
    assert kopf_fixes.free_bodies_without_daemons()
    assert kopf_fixes.frees_bodies()
    once = processing.process_spawning_cause
    kopf_fixes.free_bodies_without_daemons()
    assert processing.process_spawning_cause is once  # wrapped once
    memory = _memory_after_events(3)
    assert memory.daemons_memory.live_fresh_body is None
    assert memory.daemons_memory.running_daemons == {}
