"""`python -m runbook_operator.triggers`: the Alertmanager webhook receiver (docs/triggers.md).

A process of its own (the chart runs it as a Deployment of the project image, with its own
ServiceAccount): it faces the network, so it holds only the rights a receiver needs, and a
flood of webhook requests costs the operator's reconciles nothing. Settings from variables:
RUNBOOK_TRIGGERS_HOST (0.0.0.0), RUNBOOK_TRIGGERS_PORT (8080), RUNBOOK_TRIGGERS_TLS_CERT and
RUNBOOK_TRIGGERS_TLS_KEY (files; optional: TLS), KUBECONFIG (outside a pod).
"""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from runbook_operator.kube import Kube, KubeError
from runbook_operator.triggers.receiver import TriggerReceiver, make_app


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        kube = Kube.connect(os.environ.get("KUBECONFIG") or None)
    except KubeError as exc:
        print(f"runbook-operator triggers: {exc}", file=sys.stderr)
        return 2
    app = make_app(TriggerReceiver(kube))
    cert = os.environ.get("RUNBOOK_TRIGGERS_TLS_CERT") or None
    key = os.environ.get("RUNBOOK_TRIGGERS_TLS_KEY") or None
    uvicorn.run(
        app,
        host=os.environ.get("RUNBOOK_TRIGGERS_HOST", "0.0.0.0"),
        port=int(os.environ.get("RUNBOOK_TRIGGERS_PORT", "8080")),
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_level="info",
        access_log=False,
        timeout_keep_alive=30,
        limit_concurrency=256,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
