"""`python -m runbook_operator`: run the operator (settings from RUNBOOK_* variables)."""

from __future__ import annotations

import logging
import sys

import kopf

from runbook_operator import (
    handlers,  # noqa: F401  (registers the handlers)
    kopf_fixes,
)
from runbook_operator.config import SettingsError, load_config
from runbook_operator.ledger.checkpoint import Signer, SigningKeyError

log = logging.getLogger("runbook_operator")


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
    if not mounted:
        log.warning(
            "no signing key at %s: a key is generated for this process only (checkpoints "
            "will not verify after a restart); mount one (the Helm chart does)",
            cfg.signing_key_file,
        )
    kopf_fixes.keep_namespace_listings()
    kopf_fixes.free_bodies_without_daemons()
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
