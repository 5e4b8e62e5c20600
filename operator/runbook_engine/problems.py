"""Validation problems: every one names the field and the reason."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input, e.g. ``steps[2].dependsOn[0]: unknown step 'x'``."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class InvalidRunbook(ValueError):
    """Raised with every problem found, so the user fixes them all in one go."""

    def __init__(self, problems: Sequence[Problem], *, source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{prefix}invalid ({len(self.problems)} problem(s)):\n{lines}")


def format_loc(loc: Iterable[int | str], prefix: str = "") -> str:
    """Turn a pydantic location tuple into ``spec.steps[2].retryPolicy.maxAttempts``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from_pydantic(error: ValidationError, prefix: str = "") -> list[Problem]:
    """Pydantic errors as Problems, with wire (camelCase) field paths."""
    problems = []
    for err in error.errors():
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(Problem(format_loc(err["loc"], prefix), msg))
    return problems
