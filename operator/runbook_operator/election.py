"""Leader election for the operator's scope: take the Lease or stand by, renew it, stop at once
when it cannot be renewed, hand it back at shutdown. The decisions are leadership.py's; this
module does the Lease I/O (through kube.py), the threads and the health endpoints.

A leader that cannot renew by its deadline exits the process (`on_lost`): kopf, its daemons and
every reconcile thread stop with it, and Kubernetes restarts the container, which then stands
by. Exiting is the only stop that cannot leave a reconcile running behind (docs/operator.md,
"One active operator per scope").
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runbook_operator import leadership as lead
from runbook_operator.kube import LEASES, AlreadyExists, Conflict, Kube, KubeError, NotFound

log = logging.getLogger("runbook_operator")
STANDBY_LOG_EVERY_S = 60.0
"""A standby repeats its "standing by" line this often (and whenever the holder changes)."""
RENEW_RETRY_S = 1.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class State:
    """What the health endpoints report; written by the elector, read by the server."""

    phase: str = "standby"  # standby | leading | stopping
    message: str = "looking for the lease"
    polled: float = field(default_factory=time.monotonic)


class Elector:
    """One operator's claim on its scope's Lease."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        scope: tuple[str, ...],
        identity: str,
        timing: lead.Timing,
        *,
        wall: Callable[[], datetime] = utc_now,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.scope = scope
        self.name = lead.lease_name(scope)
        self.identity = identity
        self.timing = timing
        self.wall = wall
        self.mono = mono
        self.state = State()
        self._lease: dict[str, Any] | None = None
        """The Lease as we last wrote it, while we hold it."""
        self._sightings: dict[str, lead.Sighting] = {}
        self._deadline = 0.0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def deadline(self) -> float:
        """Monotonic time by which the leader must have renewed (0 while not leading)."""
        return self._deadline

    # -- taking the lease ----------------------------------------------------------------------
    def _sight(self, lease: dict[str, Any]) -> lead.Sighting:
        holding = lead.holding_of(lease, self.timing.duration_s)
        seen = lead.sighted(self._sightings.get(holding.name), holding, self.mono())
        self._sightings[holding.name] = seen
        return seen

    def try_acquire(self) -> tuple[bool, lead.Holding | None]:
        """One round: (True, None) when we now lead; (False, the lease we wait for), or
        (False, None) after losing a race (look again soon). Raises KubeError on API trouble."""
        try:
            current: dict[str, Any] | None = self.kube.get(LEASES, self.namespace, self.name)
        except NotFound:
            current = None
        sighting = self._sight(current) if current is not None else None
        decision = lead.decide(
            current, self.identity, self.wall(), self.mono(), sighting, self.timing
        )
        if decision.action is lead.Action.STAND_BY:
            return False, decision.holding
        sent = self.mono()
        body = lead.claimed(
            self.namespace,
            self.name,
            self.scope,
            self.identity,
            self.wall(),
            self.timing,
            None if decision.action is lead.Action.CREATE else current,
        )
        try:
            if decision.action is lead.Action.CREATE:
                written = self.kube.create(LEASES, self.namespace, body)
            else:
                written = self.kube.replace(LEASES, self.namespace, self.name, body)
        except (AlreadyExists, Conflict):
            return False, None
        self._lease, self._deadline = written, lead.renewal_deadline(sent, self.timing)
        # Ours now; an overlapping scope's live Lease (another install's glob, a list that
        # shares a namespace) still wins: it was there first, or both of us back off.
        try:
            leases = self.kube.list(LEASES, self.namespace, lead.SELECTOR)
        except KubeError:
            self._hand_back()  # never hold it while unsure: stand by, look again
            raise
        sightings = {lease["metadata"]["name"]: self._sight(lease) for lease in leases}
        found = lead.rivals(
            leases,
            self.name,
            self.scope,
            self.identity,
            self.wall(),
            self.mono(),
            sightings,
            self.timing,
        )
        if found:
            self._hand_back()
            return False, found[0]
        return True, None

    def acquire(self, stop: threading.Event) -> bool:
        """Stand by until we lead (True) or `stop` is set (False); says why in the log and in
        the health endpoints' state."""
        said, said_at = "", -STANDBY_LOG_EVERY_S
        while not stop.is_set():
            try:
                leading, blocker = self.try_acquire()
            except KubeError as exc:
                leading, blocker = False, None
                message = f"standing by: cannot use lease {self.where}: {exc}"
                if exc.status == 403:
                    message += (
                        f" (the operator needs get, list, create and update on leases in "
                        f"{self.namespace})"
                    )
            else:
                if leading:
                    self.state = State("leading", f"leading: lease {self.where}")
                    return True
                message = lead.standby_message(blocker, self.timing.skew_s) if blocker else ""
            self.state = State("standby", message or self.state.message)
            key = f"{blocker.where} {blocker.holder}" if blocker else message
            if message and (key != said or self.mono() - said_at >= STANDBY_LOG_EVERY_S):
                log.warning("%s", message)
                said, said_at = key, self.mono()
            pause = self.timing.retry_s * (1 + random.random() / 2)
            stop.wait(pause if message else random.random() * self.timing.retry_s)
        return False

    # -- holding it ----------------------------------------------------------------------------
    def hold(self, on_lost: Callable[[str], None]) -> None:
        """Renew every renew_s in a thread; a second thread calls `on_lost` (which must stop
        the process) the moment the deadline passes or the Lease is found to be someone
        else's."""
        renew = threading.Thread(
            target=self._renew_loop, args=(on_lost,), name="lease-renew", daemon=True
        )
        watch = threading.Thread(
            target=self._watchdog, args=(on_lost,), name="lease-watchdog", daemon=True
        )
        self._threads = [renew, watch]
        for thread in self._threads:
            thread.start()

    def renew_once(self) -> str | None:
        """One renewal: None when renewed, or why the Lease is lost. Raises KubeError on
        trouble that a retry may cure (unreachable, 5xx)."""
        assert self._lease is not None
        sent = self.mono()
        body = lead.claimed(
            self.namespace,
            self.name,
            self.scope,
            self.identity,
            self.wall(),
            self.timing,
            self._lease,
        )
        try:
            written = self.kube.replace(LEASES, self.namespace, self.name, body)
        except NotFound:
            return f"lease {self.where} was deleted"
        except Conflict:
            try:
                fresh = self.kube.get(LEASES, self.namespace, self.name)
            except NotFound:
                return f"lease {self.where} was deleted"
            holder = lead.holding_of(fresh, self.timing.duration_s).holder
            if holder != self.identity:
                return f"lease {self.where} is now held by {holder or 'nobody'}"
            self._lease = fresh  # our own write that timed out did land: renew from it
            raise KubeError(409, "Conflict", "renewal raced with our own earlier one") from None
        self._lease, self._deadline = written, lead.renewal_deadline(sent, self.timing)
        return None

    def _renew_loop(self, on_lost: Callable[[str], None]) -> None:
        wait = float(self.timing.renew_s)
        while not self._stopping.wait(wait):
            try:
                lost = self.renew_once()
            except KubeError as exc:
                log.warning("cannot renew lease %s (will retry): %s", self.where, exc)
                wait = RENEW_RETRY_S
                continue
            if lost is not None and not self._stopping.is_set():
                on_lost(lost)
                return
            wait = float(self.timing.renew_s)

    def _watchdog(self, on_lost: Callable[[str], None]) -> None:
        while not self._stopping.wait(0.2):
            if self.mono() > self._deadline:
                on_lost(
                    f"lease {self.where} not renewed in time (deadline passed "
                    f"{self.mono() - self._deadline:.1f} s ago)"
                )
                return

    # -- handing it back -----------------------------------------------------------------------
    def _hand_back(self) -> None:
        lease, self._lease, self._deadline = self._lease, None, 0.0
        if lease is None:
            return
        body = lead.released(lease, self.identity, self.wall())
        if body is None:
            return
        try:
            self.kube.replace(LEASES, self.namespace, self.name, body)
        except KubeError as exc:  # it lapses by itself
            log.warning("could not release lease %s (it expires by itself): %s", self.where, exc)

    def release(self) -> None:
        """Stop renewing and hand the Lease back, so a standby takes over at once. Call only
        when nothing reconciles any more."""
        self._stopping.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(self.kube.timeout + 1)
        self.state = State("stopping", f"released lease {self.where}")
        self._hand_back()


# -- health endpoints --------------------------------------------------------------------------


class HealthServer:
    """/healthz and /readyz on the health port, for the operator's whole life.

    Standing by: /healthz is 200 while the standby keeps looking at the Lease, /readyz is 200
    with `"state": "standby"` and who holds the Lease (a standby is ready to take over; a
    rolling update waits for the new pod's readiness while the old one still leads). Leading:
    both ask kopf's own liveness endpoint (on a loopback port), so a frozen operator fails
    them as before; /readyz answers 503 until kopf has started.
    """

    def __init__(self, port: int, kopf_port: int, elector: Elector) -> None:
        self.kopf_url = f"http://127.0.0.1:{kopf_port}/healthz"
        self.elector = elector
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = server.answer(self.path.split("?", 1)[0])
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds: not worth a log line

        self._http = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _kopf_alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.kopf_url, timeout=4) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        state = self.elector.state
        body: dict[str, Any] = {
            "state": state.phase,
            "message": state.message,
            "lease": self.elector.where,
            "identity": self.elector.identity,
        }
        if path not in ("/healthz", "/readyz"):
            return 404, {"error": f"no such endpoint: {path}"}
        if state.phase == "leading":
            alive = self._kopf_alive()
            if not alive:
                body["message"] = "leading; kopf not answering (starting, or stuck)"
            return (200 if alive else 503), body
        if path == "/readyz":
            return 200, body
        timing = self.elector.timing
        stale = time.monotonic() - state.polled > 3 * (timing.retry_s * 1.5 + timing.renew_s) + 5
        return (503 if stale else 200), body
