"""`python -m runbook_operator`: run the operator (settings from RUNBOOK_* variables)."""

from __future__ import annotations

import logging
import resource
import sys
import threading

import kopf

from runbook_operator import (
    handlers,  # noqa: F401  (registers the handlers)
    kopf_fixes,
)
from runbook_operator.config import SettingsError, load_config
from runbook_operator.ledger.checkpoint import Signer, SigningKeyError

log = logging.getLogger("runbook_operator")

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


def main() -> int:
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
    allow_the_deepest_objects()  # before any thread starts
    if not mounted:
        log.warning(
            "no signing key at %s: a key is generated for this process only (checkpoints "
            "will not verify after a restart); mount one (the Helm chart does)",
            cfg.signing_key_file,
        )
    kopf_fixes.keep_namespace_listings()
    # kopf logs every handled watch event at INFO ("Handler ... succeeded"): keep warnings.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not cfg.namespaces,
        namespaces=cfg.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz",
        memo=kopf.Memo(cfg=cfg, signer=signer),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
