"""The Kubernetes API group and version of the project's kinds (Runbook, RunbookExecution).

One place for the strings that name the CRDs, label the operator's children and build REST paths.
"""

from __future__ import annotations

API_GROUP = "runbook-operator.dev"
API_VERSION_NAME = "v1alpha1"
API_VERSION = f"{API_GROUP}/{API_VERSION_NAME}"
"""The `apiVersion` of a Runbook or RunbookExecution manifest."""
