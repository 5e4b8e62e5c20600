"""The project's own kinds: pydantic resources, generated CRDs, CEL rules, Runbook status."""
