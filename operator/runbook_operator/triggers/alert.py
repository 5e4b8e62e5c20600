"""From an Alertmanager webhook notification to the executions it asks for (pure).

Alertmanager (notify/webhook/webhook.go) posts `version: "4"` messages: one per group, with
every alert of the group in `alerts[]`. It re-sends the group every `group_interval` while it
changes and every `repeat_interval` otherwise, retries on 5xx, and an HA pair sends each message
twice. So the unit of work is the alert *occurrence* (fingerprint, startsAt), not the message:
its execution's name is derived from it, and a repeat meets AlreadyExists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jmespath
from pydantic import BaseModel, ConfigDict, Field

from runbook_operator.names import dns_part, short_hash
from runbook_operator.triggers.model import AlertmanagerSource, compile_label_regex

MAX_ALERTS = 1000
"""Alerts in one message (Alertmanager's `max_alerts` truncates; 0 means all)."""
EXECUTION_NAME_MAX = 63
"""Execution names stay label values as they are (names.label_value keeps ≤ 63)."""


class _Loose(BaseModel):
    """Alertmanager adds fields between releases: keep unknown ones, check the ones we read."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Alert(_Loose):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict, max_length=256)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=256)
    starts_at: str = Field(alias="startsAt", min_length=1, max_length=64)
    ends_at: str | None = Field(default=None, alias="endsAt", max_length=64)
    generator_url: str = Field(default="", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-zA-Z]+$")


class Notification(_Loose):
    """The webhook message (version 4)."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert] = Field(max_length=MAX_ALERTS)


def labels_match(source: AlertmanagerSource, labels: Mapping[str, str]) -> bool:
    """Every `match` label equal, every `matchRegex` label matching (a missing label is "",
    as in Alertmanager)."""
    if any(labels.get(name, "") != wanted for name, wanted in source.match.items()):
        return False
    return all(
        compile_label_regex(pattern).match(labels.get(name, "")) is not None
        for name, pattern in source.match_regex.items()
    )


def execution_name(namespace: str, trigger: str, fingerprint: str, starts_at: str) -> str:
    """One name per alert occurrence: a re-send, a retry or the HA twin gets the same one."""
    digest = short_hash(namespace, trigger, fingerprint, starts_at, length=20)
    return f"{dns_part(trigger, EXECUTION_NAME_MAX - 21)}-{digest}"


class InputError(ValueError):
    """An `input` expression failed on this event (names the field)."""


def map_input(expressions: Mapping[str, str], event: Mapping[str, Any]) -> dict[str, Any]:
    """The execution's input: each field is its JMESPath expression over the event (missing
    paths give null, as JMESPath says; an expression that errors names its field)."""
    out: dict[str, Any] = {}
    for name, expression in expressions.items():
        try:
            out[name] = jmespath.search(expression, event)
        except jmespath.exceptions.JMESPathError as exc:
            raise InputError(f"spec.input.{name}: {exc}") from None
    return out


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One alert of a message that the trigger selects, with the event its input reads."""

    alert: Alert
    execution: str
    event: dict[str, Any]
    """The message as Alertmanager sent it with `alerts` narrowed to this alert, so
    `alerts[0]` is always the alert the execution is for."""


def occurrences(
    notification: Notification,
    raw: Mapping[str, Any],
    source: AlertmanagerSource,
    namespace: str,
    trigger: str,
) -> list[Occurrence]:
    """The alerts of the message the trigger selects (firing and resolved alike), in order."""
    raw_alerts = raw.get("alerts") or []
    selected = []
    for index, alert in enumerate(notification.alerts):
        if not labels_match(source, alert.labels):
            continue
        event = {**raw, "alerts": [raw_alerts[index]]}
        name = execution_name(namespace, trigger, alert.fingerprint, alert.starts_at)
        selected.append(Occurrence(alert, name, event))
    return selected


def alert_record(alert: Alert) -> dict[str, Any]:
    """What the execution (and so its ledger) records of the alert that started it."""
    return {
        "fingerprint": alert.fingerprint,
        "startsAt": alert.starts_at,
        "labels": dict(alert.labels),
        "generatorURL": alert.generator_url,
    }
