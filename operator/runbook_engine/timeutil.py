"""UTC timestamps in one fixed text form (RFC 3339, millisecond precision, `Z`)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """`2024-01-15T10:00:00.000Z`: fixed width, so text order is time order in the ledger."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    """Inverse of format_time; accepts any RFC 3339 form Python understands."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
