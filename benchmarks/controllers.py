"""The two controllers under test, each a fresh process per run, and what they cost.

Peak RSS is the kernel's high-water mark (VmHWM) and CPU is utime + stime from /proc, so
the figures are the process's own, sampled without instrumenting it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .workloads import KWOK_SELECTOR, KWOK_TOLERATIONS

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} did not open port {port} in {timeout:.0f} s")


@dataclass
class Controller:
    """A started controller process; `cpu_s()` and `peak_rss_mib()` read /proc."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@dataclass
class Controllers:
    """The replicas of one system in a run: CPU adds up, RSS is the largest replica's."""

    replicas: list[Controller]

    def cpu_s(self) -> float:
        return sum(c.cpu_s() for c in self.replicas)

    def peak_rss_mib(self) -> float:
        return max(c.peak_rss_mib() for c in self.replicas)

    def stop(self) -> None:
        for c in self.replicas:
            c.stop()

    def print_logs(self, lines: int = 40) -> None:
        for c in self.replicas:
            text = c.log.read_text(errors="replace") if c.log.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            print(f"--- {c.name} log ({c.log.parent.name}, tail) ---\n{tail}")


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")


def control_plane_cpu_s(cluster_dir: Path) -> float:
    """CPU seconds used so far by the cluster's own processes (pids recorded by cluster-up)."""
    total = 0.0
    for name in CONTROL_PLANE:
        pid = (cluster_dir / "pids" / f"{name}.pid").read_text().split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _signing_key(folder: Path) -> Path:
    path = folder / "ed25519.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def start_operator(
    kubeconfig: Path, folder: Path, namespaces: str, home: str, *, kwok: bool
) -> Controller:
    """`python -m runbook_operator` as the `bench:runbook-operator` identity."""
    folder.mkdir(parents=True, exist_ok=True)
    health = free_port()
    env = dict(os.environ) | {
        "KUBECONFIG": str(kubeconfig),
        "RUNBOOK_NAMESPACES": namespaces,
        "RUNBOOK_SIGNING_KEY_FILE": str(_signing_key(folder)),
        "RUNBOOK_OPERATOR_NAMESPACE": home,
        "RUNBOOK_METRICS_PORT": str(free_port()),
        "RUNBOOK_HEALTH_PORT": str(health),
        "RUNBOOK_JOB_TTL_SECONDS": "3600",
        # The bench cluster has no admission policies installed (the chart installs them): the
        # executions it creates carry no identity stamp, so do not refuse them for it.
        "RUNBOOK_REQUIRE_IDENTITY": "false",
    }
    if kwok:
        env["RUNBOOK_EXECUTOR_NODE_SELECTOR"] = json.dumps(KWOK_SELECTOR)
        env["RUNBOOK_EXECUTOR_TOLERATIONS"] = json.dumps(KWOK_TOLERATIONS)
    log = folder / "operator.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook_operator"],
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    _wait_port(health, proc, "the operator")
    _wait_leading(health, proc)
    _maybe_profile(proc.pid)
    return Controller("runbook-operator", proc, log)


def _wait_leading(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the operator leads its scope (its /readyz says so): a standby would leave the
    submitted units waiting and the wall time would count its wait."""
    deadline, said = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: the operator exited with {proc.returncode} at start")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                state = json.loads(resp.read())
        except (OSError, ValueError):
            state = {}
        if state.get("state") == "leading":
            return
        said = str(state.get("message") or said)
        time.sleep(0.1)
    raise SystemExit(f"bench: the operator is not leading after {timeout:.0f} s: {said}")


def _maybe_profile(pid: int) -> None:
    """BENCH_PROFILE=DIR: sample the operator with py-spy into DIR (collapsed stacks)."""
    folder = os.environ.get("BENCH_PROFILE")
    if folder:
        out = Path(folder) / f"operator-{pid}.txt"
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "--format",
                "raw",
                "--rate",
                "50",
                "-o",
                str(out),
                "--pid",
                str(pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def start_argo(binary: Path, kubeconfig: Path, folder: Path, home: str) -> Controller:
    """Argo's workflow-controller with its defaults, as `bench:argo-workflow-controller`."""
    log = folder / "argo.log"
    metrics = 9090  # fixed by the controller's default configuration
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", metrics), 0.2):
        raise SystemExit(f"bench: port {metrics} is taken: is another workflow-controller running?")
    proc = subprocess.Popen(
        [
            str(binary),
            "--kubeconfig", str(kubeconfig),
            "--namespace", home,
            "--executor-image", "argoexec:bench",
            "--executor-image-pull-policy", "Never",
            "--loglevel", "warn",
        ],
        env=dict(os.environ) | {"LEADER_ELECTION_DISABLE": "true"},
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_port(metrics, proc, "Argo's workflow-controller")
    return Controller("argo-workflows", proc, log)
