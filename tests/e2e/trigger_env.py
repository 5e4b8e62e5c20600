"""The trigger receiver and real Alertmanagers, run as processes on this machine (issue 20).

The receiver runs from this checkout (`python -m runbook_operator.triggers`) against the real
cluster, as the operator does in operator_env.py. Alertmanager is v0.35.0 built from its Go
module by hack/cluster/build-tools.sh (test-only, never shipped); each instance is independent
(no gossip), so two of them deliver every notification twice, as an HA pair may.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .conftest import REPO_ROOT, Cluster, wait_for
from .operator_env import _free_port, _tool


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON body or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode(errors="replace")


@dataclass
class Process:
    """A child process with its log; `stop()` ends only this process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_receiver(cluster: Cluster, folder: Path) -> tuple[Process, str]:
    """The receiver on a free local port; returns it and its base URL once /healthz answers."""
    port = _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": cluster.kubeconfig or os.path.expanduser("~/.kube/config"),
        "RUNBOOK_TRIGGERS_HOST": "127.0.0.1",
        "RUNBOOK_TRIGGERS_PORT": str(port),
    }
    proc = Process(
        "receiver",
        [sys.executable, "-m", "runbook_operator.triggers"],
        env,
        folder / "receiver.log",
    )
    proc.start()
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.alive(), proc.tail()
        with contextlib.suppress(OSError):
            return http("GET", f"{base}/healthz")[0] == 200
        return False

    wait_for(healthy, 60, 0.2, "the trigger receiver's /healthz")
    return proc, base


def alertmanager_config(webhook_url: str, token: str) -> dict[str, Any]:
    """Group each alert on its own, notify within a second, resend nothing on its own."""
    return {
        "route": {
            "receiver": "runbooks",
            "group_by": ["..."],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "24h",
        },
        "receivers": [
            {
                "name": "runbooks",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }


def start_alertmanager(
    folder: Path, index: int, webhook_url: str, token: str
) -> tuple[Process, str]:
    """One independent Alertmanager (clustering off); returns it and its base URL once ready."""
    home = folder / f"alertmanager-{index}"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(webhook_url, token)))
    port = _free_port()
    argv = [
        _tool("alertmanager"),
        f"--config.file={config}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=debug",
    ]
    proc = Process(f"alertmanager-{index}", argv, dict(os.environ), home / "alertmanager.log")
    proc.start()
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.alive(), proc.tail()
        with contextlib.suppress(OSError):
            return http("GET", f"{base}/-/ready")[0] == 200
        return False

    wait_for(ready, 60, 0.2, f"alertmanager {index} ready")
    return proc, base


def post_alerts(base: str, alerts: list[dict[str, Any]]) -> None:
    """Alertmanager's own API, as Prometheus posts to it."""
    status, body = http("POST", f"{base}/api/v2/alerts", alerts)
    assert status == 200, (status, body)


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
