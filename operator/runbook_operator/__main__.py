"""`python -m runbook_operator`: run the operator (settings from RUNBOOK_* variables).

It first takes its scope's Lease (election.py): while another operator leads an overlapping
scope it stands by, saying so in its log and on /readyz, and starts kopf only once it leads.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import threading
from typing import Any

import kopf

from runbook_operator import (
    handlers,  # noqa: F401  (registers the handlers)
    kopf_fixes,
    malloc,
)
from runbook_operator.config import OperatorConfig, SettingsError, load_config
from runbook_operator.election import Elector, HealthServer
from runbook_operator.kube import Kube, KubeError
from runbook_operator.leadership import describe, scope_of
from runbook_operator.ledger.checkpoint import Signer, SigningKeyError

log = logging.getLogger("runbook_operator")
LOST_LEASE_EXIT = 3
"""Exit status of a leader that lost its Lease (Kubernetes restarts it; it then stands by)."""


APISERVER_MAX_DEPTH = 10_000
"""The apiserver refuses JSON nested deeper than this (Go's encoding/json limit; tried on
v1.34: a RunbookExecution whose spec.input nests 9,994 levels is stored, 9,995 is refused)."""
RECURSION_LIMIT = 4 * APISERVER_MAX_DEPTH
"""Python's default (1,000) lets one such object crash the operator: kopf decodes every watch
event and list response with `json.loads` before any handler runs, and the C decoder raises
RecursionError past the limit, which ends the watcher and the whole operator, for every tenant,
again after each restart. Each level costs one count in json's decoder and encoder and in
kopf's diff, two in copy.deepcopy (kopf copies bodies): 4x covers the deepest object the
apiserver stores with room for the frames below (asyncio, kopf)."""
STACK_BYTES = 64 * 1024 * 1024
"""C stack for the main thread (the event loop, where kopf decodes) and every thread started
after start-up (the reconcile pool decodes with the kubernetes client). The C json decoder,
dict comparison, repr and kopf's diff take up to ~210 bytes of C stack per level (measured on
3.11): at RECURSION_LIMIT that is ~8 MiB, so a host's 8 MiB default is just enough and a 4 MiB
one crashes the process (SIGSEGV, no exception). 64 MiB leaves a margin of 7x whatever the
host sets; it is address space, touched only when used."""
STACK_BYTES_PER_LEVEL = 1024
"""With a smaller stack (a hard RLIMIT_STACK below STACK_BYTES), the recursion limit is lowered
to stack / this, so the interpreter raises RecursionError before the C stack runs out."""


def allow_the_deepest_objects() -> int:
    """Let the operator decode, copy and compare any object the apiserver stores (see
    RECURSION_LIMIT); returns the recursion limit set. Threads started from here on get
    STACK_BYTES; the main thread's stack grows up to the soft RLIMIT_STACK, raised here (Linux
    checks it when the stack grows) as far as the hard limit allows."""
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft != unlimited and soft < STACK_BYTES:
        raised = STACK_BYTES if hard == unlimited else min(STACK_BYTES, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_STACK, (raised, hard))
            soft = raised
    stack = STACK_BYTES if soft == unlimited else soft
    threading.stack_size(STACK_BYTES)
    limit = min(RECURSION_LIMIT, stack // STACK_BYTES_PER_LEVEL)
    if limit < RECURSION_LIMIT:
        log.warning(
            "the stack limit (ulimit -s) is %d KiB: objects nested deeper than about %d levels "
            "may stop the operator; allow %d KiB",
            stack // 1024,
            limit // 4,
            STACK_BYTES // 1024,
        )
    sys.setrecursionlimit(max(sys.getrecursionlimit(), limit))
    return limit


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_now(reason: str) -> None:
    """A leader without a valid Lease: stop reconciling at once, whatever is in flight (every
    write is idempotent and a restart resumes; two leaders would create Jobs twice)."""
    log.critical("lost the leadership: %s; exiting so that no two operators reconcile", reason)
    for handler in logging.getLogger().handlers + log.handlers:
        handler.flush()
    os._exit(LOST_LEASE_EXIT)


def _elector(cfg: OperatorConfig) -> Elector:
    kube = Kube.connect(connections=4)
    kube.timeout = float(cfg.lease_timing.renew_s)  # a hung call must not outlast the lease
    return Elector(
        kube,
        cfg.lease_namespace,
        scope_of(cfg.namespaces),
        cfg.lease_identity,
        cfg.lease_timing,
    )


def _stand_by(elector: Elector) -> bool:
    """Wait for the Lease; SIGTERM/SIGINT while waiting end the process cleanly (False)."""
    stop = threading.Event()

    def stop_waiting(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, stop_waiting) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return elector.acquire(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> int:
    malloc.cap_arenas()  # before any thread starts: they would take arenas of their own
    try:
        cfg = load_config()
        signer, mounted = Signer.mounted_or_generated(cfg.signing_key_file)
    except SigningKeyError as exc:
        print(f"runbook-operator: bad setting: RUNBOOK_SIGNING_KEY_FILE: {exc}", file=sys.stderr)
        return 2
    except (SettingsError, ValueError) as exc:
        print(f"runbook-operator: bad setting: {exc}", file=sys.stderr)
        return 2
    kopf.configure(log_format=kopf.LogFormat.JSON)
    allow_the_deepest_objects()  # before any thread starts (the health server, the elector)
    if not mounted:
        log.warning(
            "no signing key at %s: a key is generated for this process only (checkpoints "
            "will not verify after a restart); mount one (the Helm chart does)",
            cfg.signing_key_file,
        )
    try:
        elector = _elector(cfg)
    except KubeError as exc:
        print(f"runbook-operator: {exc}", file=sys.stderr)
        return 2
    kopf_port = _free_loopback_port()
    health = HealthServer(cfg.health_port, kopf_port, elector)
    health.start()
    scope = describe(elector.scope)
    log.info("taking lease %s (scope: %s) as %s", elector.where, scope, cfg.lease_identity)
    if not _stand_by(elector):
        elector.release()
        health.stop()
        return 0
    elector.hold(on_lost=_stop_now)
    log.info("leading: lease %s (scope: %s) as %s", elector.where, scope, cfg.lease_identity)
    kopf_fixes.keep_namespace_listings()
    kopf_fixes.free_bodies_without_daemons()
    # kopf logs every handled watch event at INFO ("Handler ... succeeded"): keep warnings.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # kopf's liveness server is only asked by our /healthz and /readyz now: no line per probe.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    memo = kopf.Memo(cfg=cfg, signer=signer)
    try:
        kopf.run(
            clusterwide=not cfg.namespaces,
            namespaces=cfg.namespaces,
            standalone=True,
            liveness_endpoint=f"http://127.0.0.1:{kopf_port}/healthz",
            memo=memo,
        )
    finally:
        # Hand the Lease over only once no reconcile runs any more (kopf has stopped its
        # daemons; their blocking calls finish on the pool).
        pool = memo.get("pool")
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        elector.release()
        health.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
