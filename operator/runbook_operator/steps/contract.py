"""The step-pod contract: what the operator mounts and sets, and what the step pod reads.

Both sides (`jobs`, which builds the Job, and `pod`, which runs in it) take these names from
here, so a path or a key renamed on one side cannot silently break the other. Custom images
rely on them too (docs/operator.md, "What a step pod sees").
"""

from __future__ import annotations

from typing import Final

MOUNT: Final = "/var/run/runbook"
DEFINITION_DIR: Final = f"{MOUNT}/definition"
"""The pinned definition ConfigMap: DEFINITION_KEY and REQUEST_KEY."""
UPSTREAM_DIR: Final = f"{MOUNT}/upstream"
"""Upstream results, one `<step id>{UPSTREAM_SUFFIX}` file each."""
FILES_DIR: Final = f"{MOUNT}/files"
"""The runbook's data files ConfigMap (RUNBOOK_BASE_DIR of the executors)."""
TERMINATION_LOG: Final = "/dev/termination-log"

DEFINITION_KEY: Final = "definition.json"
REQUEST_KEY: Final = "request.json"
RESULT_KEY: Final = "result.json.gz"
"""The key of a result ConfigMap: the result's canonical JSON, gzip-compressed."""
UPSTREAM_SUFFIX: Final = ".json.gz"

ENV_EXECUTION: Final = "RUNBOOK_EXECUTION"
ENV_EXECUTION_UID: Final = "RUNBOOK_EXECUTION_UID"
ENV_EXECUTION_ID: Final = "RUNBOOK_EXECUTION_ID"
ENV_STEP_ID: Final = "RUNBOOK_STEP_ID"
ENV_ATTEMPT: Final = "RUNBOOK_ATTEMPT"
ENV_RESULT_CONFIGMAP: Final = "RUNBOOK_RESULT_CONFIGMAP"
ENV_MAX_OUTPUT_BYTES: Final = "RUNBOOK_MAX_OUTPUT_BYTES"
ENV_NAMESPACE: Final = "RUNBOOK_NAMESPACE"
ENV_BASE_DIR: Final = "RUNBOOK_BASE_DIR"
