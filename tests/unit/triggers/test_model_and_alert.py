"""RunbookTrigger spec validation and the pure webhook → occurrence mapping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from runbook_operator.triggers import alert
from runbook_operator.triggers.model import AlertmanagerSource, parse_spec

AM = {"tokenSecretRef": {"name": "am-token", "key": "token"}}


def spec(**extra: Any) -> dict[str, Any]:
    return {"runbookRef": {"name": "rb"}, **extra}


def test_exactly_one_source_is_required() -> None:
    with pytest.raises(
        ValidationError, match=r"exactly one of spec\.alertmanager or spec\.schedule"
    ):
        parse_spec(spec())
    with pytest.raises(
        ValidationError, match=r"exactly one of spec\.alertmanager or spec\.schedule"
    ):
        parse_spec(spec(alertmanager=AM, schedule={"cron": "* * * * *"}))
    assert parse_spec(spec(alertmanager=AM)).alertmanager is not None
    assert parse_spec(spec(schedule={"cron": "0 6 * * 1-5"})).schedule is not None


def test_the_issue_example_parses_with_its_schedule_fields() -> None:
    parsed = parse_spec(
        spec(
            legalBasis="legitimate_interests",
            dataLicenses=["internal_use_only"],
            schedule={
                "cron": "0 6 * * 1-5",
                "timezone": "Europe/Berlin",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 300,
                "catchUp": {"maxRuns": 1},
            },
            input={"alertName": "commonLabels.alertname"},
            maxConcurrent=3,
            rateLimit={"perMinute": 10},
            suspend=False,
            historyLimit={"succeeded": 10, "failed": 5},
        )
    )
    assert parsed.schedule is not None and parsed.schedule.concurrency_policy == "Forbid"
    assert parsed.schedule.catch_up.max_runs == 1


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"alertmanager": {**AM, "match": {"bad-name": "x"}}}, "not a Prometheus label name"),
        ({"alertmanager": {**AM, "matchRegex": {"a": "(("}}}, "matchRegex.a: not an RE2"),
        ({"alertmanager": {**AM, "onResolved": "delete"}}, "onResolved"),
        ({"alertmanager": {}}, "tokenSecretRef"),
        ({"alertmanager": AM, "input": {"x": "alerts[0"}}, "input.x: not a JMESPath"),
        ({"alertmanager": AM, "rateLimit": {"perMinute": 0}}, "perMinute"),
        ({"alertmanager": AM, "maxConcurrent": 0}, "maxConcurrent"),
        (
            {"schedule": {"cron": "* * * * *", "concurrencyPolicy": "Sometimes"}},
            "concurrencyPolicy",
        ),
    ],
)
def test_bad_specs_name_the_field(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_spec(spec(**bad))
    assert where in str(info.value)


def source(**extra: Any) -> AlertmanagerSource:
    return AlertmanagerSource.model_validate({**AM, **extra})


def test_label_match_is_equality_and_anchored_regex() -> None:
    eq = source(match={"alertname": "HighErrorRate", "severity": "critical"})
    assert alert.labels_match(eq, {"alertname": "HighErrorRate", "severity": "critical", "x": "y"})
    assert not alert.labels_match(eq, {"alertname": "HighErrorRate", "severity": "warning"})
    assert not alert.labels_match(eq, {"alertname": "HighErrorRate"})
    rx = source(matchRegex={"severity": "crit.*|page"})
    assert alert.labels_match(rx, {"severity": "critical"})
    assert alert.labels_match(rx, {"severity": "page"})
    assert not alert.labels_match(rx, {"severity": "xcritical"})  # anchored, as Alertmanager's =~
    assert not alert.labels_match(rx, {})


def test_regex_is_linear_time_on_a_catastrophic_pattern() -> None:
    # (a+)+$ against "aaaa…b" backtracks exponentially in Python's re; RE2 answers at once.
    rx = source(matchRegex={"x": "(a+)+"})
    assert not alert.labels_match(rx, {"x": "a" * 5000 + "b"})


def test_execution_name_is_per_occurrence_and_a_valid_label() -> None:
    a = alert.execution_name("ns", "high-error-rate", "f1", "2026-01-01T00:00:00Z")
    assert a == alert.execution_name("ns", "high-error-rate", "f1", "2026-01-01T00:00:00Z")
    assert a != alert.execution_name("ns", "high-error-rate", "f1", "2026-01-01T00:05:00Z")
    assert a != alert.execution_name("ns", "high-error-rate", "f2", "2026-01-01T00:00:00Z")
    assert a != alert.execution_name("ns", "other", "f1", "2026-01-01T00:00:00Z")


@given(st.text(min_size=1, max_size=253), st.text(max_size=64), st.text(max_size=64))
def test_execution_names_are_dns_labels(trigger: str, fp: str, starts: str) -> None:
    name = alert.execution_name("ns", trigger, fp, starts)
    assert len(name) <= 63
    assert name[0].isalnum() and name[-1].isalnum()
    assert all(c.isdigit() or c == "-" or "a" <= c <= "z" for c in name)


def message(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "runbooks",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate"},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": list(alerts),
    }


def one(fp: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", **labels},
        "annotations": {"indicators": "1.2.3.4"},
        "startsAt": "2026-12-03T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom/graph",
        "fingerprint": fp,
    }


def test_occurrences_narrow_alerts_to_the_one_they_are_for() -> None:
    raw = message(
        one("aa", severity="critical"), one("bb", severity="info"), one("cc", severity="critical")
    )
    parsed = alert.Notification.model_validate(raw)
    got = alert.occurrences(parsed, raw, source(match={"severity": "critical"}), "ns", "t")
    assert [o.alert.fingerprint for o in got] == ["aa", "cc"]
    assert got[1].event["alerts"][0]["fingerprint"] == "cc"
    assert got[1].event["commonLabels"] == {"alertname": "HighErrorRate"}
    mapped = alert.map_input(
        {
            "indicators": "alerts[0].annotations.indicators",
            "name": "commonLabels.alertname",
            "none": "nope",
        },
        got[0].event,
    )
    assert mapped == {"indicators": "1.2.3.4", "name": "HighErrorRate", "none": None}
    assert alert.alert_record(got[0].alert) == {
        "fingerprint": "aa",
        "startsAt": "2026-12-03T10:00:00Z",
        "labels": {"alertname": "HighErrorRate", "severity": "critical"},
        "generatorURL": "http://prom/graph",
    }


@pytest.mark.parametrize(
    "broken",
    [
        {**message(one("aa")), "version": "3"},
        {**message(one("aa")), "alerts": [{"status": "firing"}]},
        {**message(one("aa")), "alerts": [{**one("aa"), "fingerprint": "../x"}]},
        {**message(one("aa")), "alerts": [one("aa")] * (alert.MAX_ALERTS + 1)},
    ],
)
def test_malformed_messages_are_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        alert.Notification.model_validate(broken)


def test_a_pattern_cannot_break_out_of_its_anchors() -> None:
    with pytest.raises(ValidationError, match="unexpected"):
        source(matchRegex={"severity": "a)|(b"})
