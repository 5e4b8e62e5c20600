"""kopf settings and the objects every handler shares (set up once, at start-up)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from runbook_operator import metrics
from runbook_operator.apigroup import API_GROUP, API_VERSION_NAME
from runbook_operator.config import OperatorConfig
from runbook_operator.execution.child_watch import ChildWatch
from runbook_operator.execution.controller import JOB_CREATE_CONCURRENCY, Controller
from runbook_operator.execution.fair_pool import FairPool
from runbook_operator.kube import Kube
from runbook_operator.ledger.checkpoint import Signer
from runbook_operator.ledger.store import (
    LedgerStore,
    publish_ledger_anchor,
    publish_public_key,
)
from runbook_operator.names import ExecutionRef
from runbook_operator.triggers.controller import TriggerController
from runbook_operator.triggers.scheduler import Scheduler

GROUP = API_GROUP
VERSION = API_VERSION_NAME
log = logging.getLogger("runbook_operator")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """kopf's settings, then the objects every handler shares."""
    cfg: OperatorConfig = memo.cfg
    _tune(settings, cfg)
    kube = Kube.connect(connections=cfg.reconcile_workers + JOB_CREATE_CONCURRENCY)
    signer: Signer = memo.signer
    publish_public_key(kube, cfg.operator_namespace, cfg.public_key_configmap, signer)
    # The trust anchor verify reads (never raises: without the rights it warns and verify then
    # needs --key-namespace).
    publish_ledger_anchor(kube, cfg.operator_namespace, cfg.public_key_configmap, cfg.namespaces)
    memo.controller = Controller(kube, cfg, _ledger_factory, signer)
    memo.kube = kube
    memo.triggers = TriggerController(kube)
    memo.wakers = {}
    memo.scheduler = Scheduler(kube)
    memo.trigger_wakers = {}
    memo.driven = {}  # (namespace, name) → uid of the execution a daemon drives
    loop = asyncio.get_running_loop()

    def wake(uid: str) -> None:  # called from the watch threads
        def set_waker() -> None:
            event = memo.wakers.get(uid)
            if event is not None:
                event.set()

        loop.call_soon_threadsafe(set_waker)

    memo.controller.wake = wake  # executions held by the namespace's cap, when a Job ends
    memo.child_watch = ChildWatch(kube, memo.controller.children, cfg.namespaces, wake)
    memo.child_watch.start()
    metrics.RUNNING_JOBS.set_function(memo.controller.children.running_jobs)
    # Reconcile workers serve namespaces in turn, not first come first served.
    memo.pool = FairPool(cfg.reconcile_workers, "reconcile")
    start_http_server(cfg.metrics_port)
    log.info("runbook-operator started (namespaces: %s)", ", ".join(cfg.namespaces) or "all")


def _tune(settings: kopf.OperatorSettings, cfg: OperatorConfig) -> None:
    """Progress and diff-base in annotations (our status schema would prune `status.kopf`),
    watch timeouts against silent freezes, one standalone replica, our own Events only."""
    prefix = API_GROUP
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{prefix}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.peering.standalone = True
    settings.execution.max_workers = 16
    # Exact namespaces (the chart's namespaced mode, which grants nothing cluster-scoped): no
    # scans of all namespaces and CRDs, which kopf would retry for ~54 s before falling back.
    settings.scanning.disabled = bool(cfg.namespaces) and not any(
        set(ns) & set("*?[!") for ns in cfg.namespaces
    )


def _ledger_factory(kube: Kube, ref: ExecutionRef) -> LedgerStore:
    return LedgerStore(kube, ref)


__all__ = ["GROUP", "VERSION", "configure"]
