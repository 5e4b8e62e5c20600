"""The web console's two performance figures (issue 21), measured in the same headless
Chromium as the e2e tests; a benchmark, not a test:

- a 1,000-step execution page interactive (`domInteractive`) in < 1 s, and loaded;
- a page of 100 executions out of 10,000 served in < 300 ms.

python -m benchmarks.console [--steps 1000] [--executions 10000] [--repeat 5]
                             [--cluster-namespace NS]

By default the data is in memory (a source shaped like the cluster's), so the figures are the
console's own cost: rendering, the SVG graph and timeline, the browser. With
`--cluster-namespace NS` the list figure is also taken against the real apiserver (as the
kubeconfig's user) over the RunbookExecutions already in NS (e.g. the kwok benchmark's).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import threading
import time
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook_engine.model import RunbookDefinition
from runbook_engine.plan import Plan, compile_plan
from runbookctl.ui import model
from runbookctl.ui.source import Answer, Page

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def _ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


class Synthetic:
    """`steps` steps (a chain of stages, each fanning out) and `executions` list entries."""

    read_only = False

    def __init__(self, steps: int, executions: int) -> None:
        ids = [f"s{i:04d}" for i in range(steps)]
        specs: list[dict[str, Any]] = []
        for i, sid in enumerate(ids):
            stage = i // 100
            deps = [f"s{(stage - 1) * 100:04d}"] if stage and i % 100 else []
            if i % 100 == 0 and stage:
                deps = [f"s{j:04d}" for j in range((stage - 1) * 100 + 1, stage * 100)][:99]
            specs.append({"id": sid, "actionType": "TRANSFORM", "dependsOn": deps})
        self.plan = compile_plan(RunbookDefinition.model_validate({"id": "big", "steps": specs}))
        self.entries: list[dict[str, Any]] = []
        status_steps = []
        for i, sid in enumerate(ids):
            start, end = i * 0.01, i * 0.01 + 0.5
            status_steps.append(
                {
                    "stepId": sid,
                    "status": "SUCCEEDED",
                    "attempt": 1,
                    "startedAt": _ts(start),
                    "finishedAt": _ts(end),
                }
            )
            for kind, when in (("STEP_STARTED", start), ("STEP_SUCCEEDED", end)):
                self.entries.append(
                    {
                        "seq": len(self.entries),
                        "timestamp": _ts(when),
                        "eventType": kind,
                        "stepId": sid,
                        "actorId": "system:runbook-operator",
                        "details": {"attempt": 1},
                    }
                )
        self.big = {
            "metadata": {"name": "big", "namespace": "bench", "uid": "u-big"},
            "spec": {"runbookRef": {"name": "big"}},
            "status": {"phase": "COMPLETED", "progress": f"{steps}/{steps}", "steps": status_steps},
        }
        self.items = [
            {
                "metadata": {
                    "name": f"run-{i:05d}",
                    "namespace": "bench",
                    "uid": f"u{i}",
                    "creationTimestamp": _ts(i),
                },
                "spec": {"runbookRef": {"name": "big"}},
                "status": {"phase": "COMPLETED", "progress": "3/3"},
            }
            for i in range(executions)
        ]

    def whoami(self) -> str:
        return "bench"

    def namespaces(self) -> list[str]:
        return ["bench"]

    def list_executions(
        self, namespace: str, limit: int, token: str, filters: Mapping[str, str]
    ) -> Page:
        start = int(token or 0)  # the apiserver's continue token, in memory
        end = start + limit
        return Page(self.items[start:end], str(end) if end < len(self.items) else "")

    def execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.big if name == "big" else None

    def pinned(self, namespace: str, obj: Mapping[str, Any]) -> tuple[Plan | None, str | None]:
        return self.plan, None

    def ledger(self, namespace: str, name: str, uid: str) -> tuple[list[Any], model.Badge]:
        return self.entries, model.badge_from_report(True, None, True, "OK")

    def output(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[Any, str | None]:
        return None, "not kept"

    def pod_logs(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[str | None, str]:
        return None, "gone"

    def runbooks(self, namespace: str) -> tuple[list[dict[str, Any]], str | None]:
        return [], None

    def runbook(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def recent_executions(self, namespace: str, runbook: str) -> list[dict[str, Any]]:
        return []

    def start(
        self, namespace: str, runbook: str, spec: Mapping[str, Any]
    ) -> tuple[Answer, str | None]:
        return Answer(405, "benchmark"), None


def _serve(source: Any) -> tuple[str, Any]:
    import uvicorn

    from runbookctl.ui.app import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(build_app(source), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver") or "chromedriver")
    )


def _ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f})"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.console", description=__doc__)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--executions", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cluster-namespace", default=None)
    args = ap.parse_args(argv)
    source = Synthetic(args.steps, args.executions)
    base, server = _serve(source)
    try:
        served: list[float] = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            with urllib.request.urlopen(f"{base}/executions?limit=100&continue=5000") as resp:
                resp.read()
            served.append((time.perf_counter() - t) * 1000)
        print(
            f"list: a page of 100 of {args.executions} executions served: {_ms(served)} (target < 300 ms)"
        )
        driver = _browser()
        try:
            interactive, loaded, html = [], [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                with urllib.request.urlopen(f"{base}/executions/bench/big") as resp:
                    resp.read()
                html.append((time.perf_counter() - t) * 1000)
                driver.get(f"{base}/executions/bench/big")
                timing = driver.execute_script(
                    "const t = performance.getEntriesByType('navigation')[0];"
                    "return [t.domInteractive, t.loadEventEnd];"
                )
                interactive.append(float(timing[0]))
                loaded.append(float(timing[1]))
            print(f"execution page, {args.steps} steps: server {_ms(html)}")
            print(f"  interactive (domInteractive): {_ms(interactive)} (target < 1000 ms)")
            print(f"  loaded (loadEventEnd): {_ms(loaded)}")
        finally:
            driver.quit()
    finally:
        server.should_exit = True
    if args.cluster_namespace:
        from runbook_operator.kube import Kube
        from runbookctl.ui.source import ClusterSource

        cluster = ClusterSource(Kube.connect(), [args.cluster_namespace])
        timings = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            cluster.list_executions(args.cluster_namespace, 100, "", {})
            timings.append((time.perf_counter() - t) * 1000)
        print(
            f"cluster list (100 from {args.cluster_namespace}, apiserver limit/continue): {_ms(timings)}"
        )


if __name__ == "__main__":
    main()
