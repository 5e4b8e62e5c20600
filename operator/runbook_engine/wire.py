"""The wire spelling of every model: camelCase keys on the wire, snake_case in Python.

The reference design and Kubernetes both spell fields in camelCase; one base class keeps the
runbook model, the executor contract and the operator's kinds consistent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Base for wire models: camelCase on the wire, snake_case in Python, unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """JSON-ready dict with camelCase keys and no unset optional noise."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
