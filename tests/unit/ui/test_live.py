"""The shared watch: one watch thread feeds every subscriber; a page gets each event once."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

from runbookctl.ui.live import Hub


class OneWatch:
    """A Kube stand-in: a list, then one watch that sends two events and then waits."""

    def __init__(self) -> None:
        self.watches = 0
        self.release = threading.Event()
        self.listening = threading.Event()

    def call(self, method: str, path: str, query: Any = None) -> dict[str, Any]:
        self.listening.wait(5)  # every page has subscribed: none misses an event
        return {"metadata": {"resourceVersion": "10"}}

    def watch(
        self, res: Any, ns: Any, selector: str, version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        self.watches += 1
        for phase in ("RUNNING", "PAUSED"):
            obj = {
                "metadata": {"name": "x", "namespace": "soc", "uid": "u1", "resourceVersion": "11"},
                "spec": {"runbookRef": {"name": "rb"}, "paused": phase == "PAUSED"},
                "status": {"phase": phase, "progress": "1/2", "message": "<b>"},
            }
            yield {"type": "MODIFIED", "object": obj}
        self.release.wait(5)


def test_every_page_gets_each_event_from_one_watch() -> None:
    kube = OneWatch()
    hub = Hub(kube, ["soc"])  # type: ignore[arg-type]

    async def page() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        stream = hub.subscribe()
        assert (await anext(stream)).startswith("retry:")
        while len(got) < 2:
            line = await anext(stream)
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
        await stream.aclose()
        return got

    async def all_subscribed() -> None:
        while hub.subscribers < 3:
            await asyncio.sleep(0.01)
        kube.listening.set()

    async def three_pages() -> list[list[dict[str, Any]]]:
        pages = asyncio.gather(page(), page(), page(), all_subscribed())
        return list(await asyncio.wait_for(pages, 10))[:3]

    pages = asyncio.run(three_pages())
    kube.release.set()
    hub.stop()
    assert kube.watches == 1 and hub.watches_started == 1
    for got in pages:
        assert [(m["uid"], m["phase"], m["paused"]) for m in got] == [
            ("u1", "RUNNING", ""),
            ("u1", "PAUSED", "yes"),
        ]
        assert "message" not in got[0]
    assert hub.subscribers == 0
