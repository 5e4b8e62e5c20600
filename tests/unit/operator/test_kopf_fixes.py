"""kopf's own namespace observer, fed the two listings it makes at start-up: a namespace that
appears only in the second one (created in between) must still be watched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import fetching
from kopf._cogs.structs import references
from kopf._core.reactor import observation, queueing

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
