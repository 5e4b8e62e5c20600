"""One leader per scope: the Lease decisions (leadership.py) over a fake clock, the elector's
Lease I/O (election.py) against the in-memory API server, and the chart's lease settings.

The cluster half (two real operator processes, the leader SIGKILLed mid-run) is
tests/e2e/test_leadership.py.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_operator import kube as k
from runbook_operator import leadership as lead
from runbook_operator.config import SettingsError, load_config
from runbook_operator.election import Elector, HealthServer

from . import test_chart_render as chart
from .fakekube import FakeKube

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TIMING = lead.Timing(duration_s=15, renew_s=5, retry_s=2, skew_s=2)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def lease(
    holder: str | None,
    renewed: datetime | None = T0,
    *,
    duration: Any = 15,
    version: str = "7",
    scope: list[str] | None = None,
    name: str = "runbook-operator-x",
    transitions: int = 2,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": duration, "leaseTransitions": transitions}
    if holder is not None:
        spec["holderIdentity"] = holder
    if renewed is not None:
        spec["renewTime"] = lead.format_time(renewed)
        spec["acquireTime"] = lead.format_time(renewed - timedelta(minutes=5))
    annotations = {} if scope is None else {lead.SCOPE_ANNOTATION: json.dumps(scope)}
    return {
        "metadata": {
            "name": name,
            "namespace": "ops",
            "resourceVersion": version,
            "labels": dict(lead.LABELS),
            "annotations": annotations,
        },
        "spec": spec,
    }


def decide(obj: dict[str, Any] | None, now: datetime, **kw: Any) -> lead.Action:
    return lead.decide(obj, "me", now, kw.get("mono", 0.0), kw.get("sighting"), TIMING).action


# -- scope and name ----------------------------------------------------------------------------


def test_equal_scopes_meet_at_one_lease_whatever_the_order() -> None:
    one = lead.lease_name(lead.scope_of(["b", "a", " a "]))
    assert one == lead.lease_name(lead.scope_of(["a", "b"]))
    assert one != lead.lease_name(lead.scope_of(["a"]))
    assert lead.lease_name(()) != lead.lease_name(("*",))  # "" is not a pattern of kopf's


@given(st.lists(st.from_regex(r"[a-z0-9*?-]{1,63}", fullmatch=True), max_size=5))
def test_lease_names_are_valid_and_short(namespaces: list[str]) -> None:
    name = lead.lease_name(lead.scope_of(namespaces))
    assert DNS_SUBDOMAIN.match(name) and len(name) <= 63


# -- deciding ----------------------------------------------------------------------------------


def test_a_missing_lease_is_created() -> None:
    assert decide(None, T0) is lead.Action.CREATE


def test_a_free_lease_is_taken() -> None:
    assert decide(lease(None), T0) is lead.Action.TAKE
    assert decide(lease(""), T0) is lead.Action.TAKE


def test_a_live_foreign_lease_is_waited_for() -> None:
    assert decide(lease("other"), T0 + timedelta(seconds=10)) is lead.Action.STAND_BY


def test_an_expired_lease_is_taken_after_duration_and_skew() -> None:
    live = T0 + timedelta(seconds=15 + 2)  # the lease's end plus the skew margin: still live
    assert decide(lease("other"), live) is lead.Action.STAND_BY
    assert decide(lease("other"), live + timedelta(milliseconds=1)) is lead.Action.TAKE


def test_our_own_lease_is_renewed_even_when_stale() -> None:
    """A restart with the same identity (the same pod) takes its lease back at once."""
    assert decide(lease("me"), T0) is lead.Action.RENEW
    assert decide(lease("me"), T0 + timedelta(hours=1)) is lead.Action.RENEW


def test_a_holder_whose_clock_runs_ahead_is_outlived_by_observation() -> None:
    """renewTime an hour in the future (the holder's clock is wrong, then it died): the wall
    clock would wait an hour; an unchanged version for one lease duration is enough."""
    ahead = lease("other", T0 + timedelta(hours=1))
    holding = lead.holding_of(ahead, 15)
    seen = lead.sighted(None, holding, mono=100.0)
    assert decide(ahead, T0, mono=100.0, sighting=seen) is lead.Action.STAND_BY
    assert decide(ahead, T0, mono=115.0, sighting=seen) is lead.Action.STAND_BY
    assert decide(ahead, T0, mono=115.1, sighting=seen) is lead.Action.TAKE


def test_a_renewal_restarts_the_observation() -> None:
    first = lead.holding_of(lease("other", version="7"), 15)
    seen = lead.sighted(None, first, 100.0)
    assert lead.sighted(seen, first, 200.0) is seen
    renewed = lead.holding_of(lease("other", version="8"), 15)
    again = lead.sighted(seen, renewed, 200.0)
    assert again == lead.Sighting("8", 200.0)
    assert decide(lease("other", T0 + timedelta(hours=1), version="8"), T0, mono=210.0,
                  sighting=again) is lead.Action.STAND_BY  # fmt: skip


def test_a_sighting_of_another_version_does_not_count() -> None:
    seen = lead.Sighting("6", 0.0)
    assert decide(lease("other", T0 + timedelta(hours=1)), T0, mono=999.0, sighting=seen) is (
        lead.Action.STAND_BY
    )


@pytest.mark.parametrize("duration", [None, "15", True, -3, 0])
def test_a_malformed_duration_reads_as_ours_or_at_least_a_second(duration: Any) -> None:
    holding = lead.holding_of(lease("other", duration=duration), 15)
    assert holding.duration_s == (15 if duration in (None, "15", True) else 1)


def test_a_huge_duration_is_bounded() -> None:
    holding = lead.holding_of(lease("other", duration=10**9), 15)
    assert holding.duration_s == lead.MAX_LEASE_SECONDS


def test_a_lease_without_times_expires_by_observation_only() -> None:
    bare = lease("other", renewed=None)
    holding = lead.holding_of(bare, 15)
    assert holding.renewed is None
    seen = lead.sighted(None, holding, 0.0)
    assert decide(bare, T0, mono=15.0, sighting=seen) is lead.Action.STAND_BY
    assert decide(bare, T0, mono=15.5, sighting=seen) is lead.Action.TAKE


@given(
    sent=st.floats(0, 1e6),
    seen_after=st.floats(0, 30),
    leader_offset=st.floats(-1e4, 1e4),
    offset_gap=st.floats(-2, 2),
)
def test_no_standby_takes_over_before_the_leader_has_stopped(
    sent: float, seen_after: float, leader_offset: float, offset_gap: float
) -> None:
    """The leader renews at true time `sent` (its wall clock off by `leader_offset`), stops at
    its deadline; a standby whose wall clock differs from the leader's by at most the skew
    margin, which first saw that renewal `seen_after` later, must not consider it expired at
    that moment, by either rule. True time is the standby's monotonic clock here."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    renewed = base + timedelta(seconds=sent + leader_offset)
    obj = lease("leader", renewed, version="42")
    stop = lead.renewal_deadline(sent, TIMING)  # leader's mono == true time
    standby_wall = base + timedelta(seconds=stop + leader_offset + offset_gap)
    seen = lead.Sighting("42", sent + seen_after)
    holding = lead.holding_of(obj, TIMING.duration_s)
    assert not lead.expired(holding, standby_wall, stop, seen, TIMING)


@given(seen_at=st.floats(0, 1e6), renewed_offset=st.floats(-1e6, 1e6))
def test_a_dead_leaders_lease_is_taken_within_one_duration_of_being_seen(
    seen_at: float, renewed_offset: float
) -> None:
    """Whatever renewTime says, an unchanged lease is free one duration after first sight."""
    obj = lease("gone", T0 + timedelta(seconds=renewed_offset))
    holding = lead.holding_of(obj, TIMING.duration_s)
    seen = lead.Sighting(holding.version, seen_at)
    later = seen_at + TIMING.duration_s + 0.01
    assert lead.expired(holding, T0, later, seen, TIMING)


# -- overlapping scopes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other", "overlap"),
    [
        ((), ("a",), True),
        (("a",), ("a",), True),
        (("a",), ("b",), False),
        (("a", "b"), ("c", "b"), True),
        (("e2e-op-*",), ("e2e-op-123",), True),
        (("e2e-op-*",), ("e2e-kill-123",), False),
        (("e2e-op-*",), ("e2e-sec-1-*",), False),
        (("e2e-*",), ("e2e-op-*",), True),
        (("bench-op-*",), ("bench-op-chains-20x50-0",), True),
        (("*-prod",), ("*-dev",), False),
        (("team-?",), ("team-a",), True),
        (("!kube-system",), ("team-a",), True),
        (("a*b",), ("ab*",), True),
    ],
)
def test_scopes_overlap(one: tuple[str, ...], other: tuple[str, ...], overlap: bool) -> None:
    assert lead.scopes_overlap(one, other) is overlap
    assert lead.scopes_overlap(other, one) is overlap


patterns = st.from_regex(r"[ab]{0,3}(\*|\?)?[ab]{0,3}(\*)?[ab]{0,2}", fullmatch=True).filter(bool)
names = st.from_regex(r"[ab]{1,8}", fullmatch=True)


@given(patterns, patterns, st.lists(names, max_size=30))
def test_patterns_said_disjoint_share_no_namespace(one: str, other: str, ns: list[str]) -> None:
    """Disjoint must be sure (a missed overlap makes two leaders); an overlap may be assumed."""
    if not lead.patterns_overlap(one, other):
        assert not [n for n in ns if fnmatch.fnmatchcase(n, one) and fnmatch.fnmatchcase(n, other)]


def test_rivals_are_live_foreign_leases_of_overlapping_scopes() -> None:
    mine = lead.lease_name(("e2e-op-1",))
    leases = [
        lease("other", scope=["e2e-op-*"], name="runbook-operator-glob"),  # overlaps: rival
        lease("third", scope=["bench-*"], name="runbook-operator-bench"),  # disjoint
        lease("old", T0 - timedelta(minutes=5), scope=["*"], name="runbook-operator-old"),
        lease("", scope=["*"], name="runbook-operator-released"),
        lease("me", scope=["*"], name="runbook-operator-mine-too"),  # ours elsewhere
        lease("other", scope=["e2e-op-1"], name=mine),  # our own lease: decide() handles it
        lease("weird", name="runbook-operator-unknown-scope"),  # unreadable: assumed overlap
    ]
    found = lead.rivals(leases, mine, ("e2e-op-1",), "me", T0, 0.0, {}, TIMING)
    assert [h.name for h in found] == ["runbook-operator-glob", "runbook-operator-unknown-scope"]


# -- writing -----------------------------------------------------------------------------------


def test_a_new_lease_names_us_its_scope_and_labels() -> None:
    body = lead.claimed("ops", "runbook-operator-x", ("a", "b"), "me", T0, TIMING)
    assert body["kind"] == "Lease" and body["apiVersion"] == "coordination.k8s.io/v1"
    assert body["metadata"]["labels"] == lead.LABELS
    assert lead.holding_of(body, 15).scope == ("a", "b")
    assert body["spec"] == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-03-01T12:00:00.000000Z",
        "renewTime": "2026-03-01T12:00:00.000000Z",
        "leaseTransitions": 0,
    }
    assert "resourceVersion" not in body["metadata"]


def test_taking_over_counts_a_transition_and_keeps_the_version_guard() -> None:
    body = lead.claimed("ops", "runbook-operator-x", (), "me", T0, TIMING, lease("other"))
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["spec"]["leaseTransitions"] == 3
    assert body["spec"]["acquireTime"] == lead.format_time(T0)


def test_renewing_keeps_acquire_time_and_transitions() -> None:
    current = lease("me")
    body = lead.claimed("ops", "runbook-operator-x", (), "me", T0 + timedelta(seconds=5), TIMING,
                        current)  # fmt: skip
    assert body["spec"]["acquireTime"] == current["spec"]["acquireTime"]
    assert body["spec"]["leaseTransitions"] == 2
    assert body["spec"]["renewTime"] == lead.format_time(T0 + timedelta(seconds=5))


def test_only_our_own_lease_is_released() -> None:
    assert lead.released(lease("other"), "me", T0) is None
    freed = lead.released(lease("me"), "me", T0)
    assert freed is not None and "holderIdentity" not in freed["spec"]
    assert freed["metadata"]["resourceVersion"] == "7"
    assert decide(freed, T0) is lead.Action.TAKE


def test_times_round_trip() -> None:
    assert lead.parse_time(lead.format_time(T0)) == T0
    assert lead.parse_time("2026-03-01T12:00:00Z") == T0
    assert lead.parse_time("yesterday") is None and lead.parse_time(5) is None


def test_the_standby_message_says_who_holds_it_until_when() -> None:
    holding = lead.holding_of(lease("pod-a", scope=["team-a"]), 15)
    assert lead.standby_message(holding, 2) == (
        "standing by: lease ops/runbook-operator-x held by pod-a until "
        "2026-03-01T12:00:17.000000Z (its scope: team-a)"
    )


# -- settings ----------------------------------------------------------------------------------


def test_lease_settings_default_to_the_operators_namespace_and_host_pid() -> None:
    cfg = load_config({"RUNBOOK_OPERATOR_NAMESPACE": "runbook-system"})
    assert cfg.lease_namespace == "runbook-system"
    assert cfg.lease_timing == lead.Timing(15, 5, 2, 2)
    assert re.fullmatch(r".+_\d+", cfg.lease_identity)
    cfg = load_config(
        {
            "RUNBOOK_LEASE_NAMESPACE": "shared",
            "RUNBOOK_LEASE_IDENTITY": "pod-1",
            "RUNBOOK_LEASE_DURATION_SECONDS": "6",
            "RUNBOOK_LEASE_RENEW_SECONDS": "2",
        }
    )
    assert (cfg.lease_namespace, cfg.lease_identity) == ("shared", "pod-1")
    assert cfg.lease_timing.duration_s == 6


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RUNBOOK_LEASE_DURATION_SECONDS": "10", "RUNBOOK_LEASE_RENEW_SECONDS": "5"},
         "RUNBOOK_LEASE_RENEW_SECONDS"),
        ({"RUNBOOK_LEASE_DURATION_SECONDS": "2"}, "RUNBOOK_LEASE_DURATION_SECONDS"),
        ({"RUNBOOK_LEASE_DURATION_SECONDS": "99999"}, "RUNBOOK_LEASE_DURATION_SECONDS"),
        ({"RUNBOOK_LEASE_RETRY_SECONDS": "0"}, "RUNBOOK_LEASE_RETRY_SECONDS"),
        ({"RUNBOOK_LEASE_IDENTITY": "x" * 200}, "RUNBOOK_LEASE_IDENTITY"),
    ],
)  # fmt: skip
def test_bad_lease_settings_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_config(env)


# -- the elector against the in-memory API server ----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.wall, self.mono = T0, 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def elector(api: FakeKube, clock: Clock, identity: str = "me", scope: tuple[str, ...] = ("a",)
            ) -> Elector:  # fmt: skip
    return Elector(api, "ops", scope, identity, TIMING, wall=lambda: clock.wall,
                   mono=lambda: clock.mono)  # fmt: skip


def stored(api: FakeKube, el: Elector) -> dict[str, Any]:
    obj = api.stored(k.LEASES, "ops", el.name)
    assert obj is not None
    return obj


def test_the_first_operator_leads_and_the_second_stands_by() -> None:
    api, clock = FakeKube(), Clock()
    first, second = elector(api, clock, "one"), elector(api, clock, "two")
    assert first.try_acquire() == (True, None)
    assert first.deadline == clock.mono + 15 - 2
    leading, blocker = second.try_acquire()
    assert not leading and blocker is not None and blocker.holder == "one"
    assert stored(api, first)["spec"]["holderIdentity"] == "one"


def test_a_standby_takes_over_a_dead_leaders_lease_and_not_before() -> None:
    api, clock = FakeKube(), Clock()
    first, second = elector(api, clock, "one"), elector(api, clock, "two")
    first.try_acquire()
    assert second.try_acquire()[0] is False
    clock.advance(15)
    assert second.try_acquire()[0] is False  # seen 15 s unchanged, wall 15 s: not yet
    clock.advance(2.5)
    assert second.try_acquire() == (True, None)
    spec = stored(api, second)["spec"]
    assert spec["holderIdentity"] == "two" and spec["leaseTransitions"] == 1


def test_a_renewing_leader_is_never_taken_over() -> None:
    api, clock = FakeKube(), Clock()
    first, second = elector(api, clock, "one"), elector(api, clock, "two")
    first.try_acquire()
    for _ in range(20):
        clock.advance(5)
        assert first.renew_once() is None
        assert second.try_acquire()[0] is False
    assert first.deadline == clock.mono + 13


def test_an_overlapping_scope_already_led_wins_and_ours_is_handed_back() -> None:
    api, clock = FakeKube(), Clock()
    glob = elector(api, clock, "glob", ("e2e-op-*",))
    exact = elector(api, clock, "exact", ("e2e-op-1",))
    assert glob.try_acquire() == (True, None)
    leading, blocker = exact.try_acquire()
    assert not leading and blocker is not None and blocker.holder == "glob"
    assert "holderIdentity" not in stored(api, exact)["spec"]  # released at once
    other = elector(api, clock, "other", ("bench-*",))
    assert other.try_acquire() == (True, None)  # disjoint: not blocked


def test_losing_a_race_is_looking_again_not_leading() -> None:
    api, clock = FakeKube(), Clock()
    el = elector(api, clock)
    api.fail("create", k.LEASES, error=k.AlreadyExists(409, "AlreadyExists", "raced"))
    assert el.try_acquire() == (False, None)


def test_a_failed_rival_check_never_keeps_the_lease() -> None:
    api, clock = FakeKube(), Clock()
    el = elector(api, clock)
    api.fail("list", k.LEASES, error=k.KubeError(403, "Forbidden", "no list"))
    with pytest.raises(k.KubeError):
        el.try_acquire()
    assert "holderIdentity" not in stored(api, el)["spec"]


def test_renewal_finds_the_lease_taken_or_deleted() -> None:
    api, clock = FakeKube(), Clock()
    el = elector(api, clock)
    el.try_acquire()
    api.edit(k.LEASES, "ops", el.name, lambda o: o["spec"].update(holderIdentity="intruder"))
    assert el.renew_once() == f"lease ops/{el.name} is now held by intruder"
    el2 = elector(api, clock, "me2", ("b",))
    el2.try_acquire()
    api.delete(k.LEASES, "ops", el2.name)
    assert el2.renew_once() == f"lease ops/{el2.name} was deleted"


def test_a_leader_that_cannot_renew_is_stopped_at_its_deadline() -> None:
    api, clock = FakeKube(), Clock()
    el = elector(api, clock)
    el.try_acquire()
    api.fail("replace", k.LEASES, error=k.KubeError(0, "Unreachable", "down"), times=None)
    lost: list[str] = []
    stopped = threading.Event()

    def on_lost(reason: str) -> None:
        lost.append(reason)
        stopped.set()

    el.hold(on_lost)
    try:
        clock.advance(12.9)  # renewals fail, the deadline (13 s) not yet passed
        assert not stopped.wait(0.6)
        clock.advance(0.2)
        assert stopped.wait(2), "the watchdog did not stop the leader"
        assert "not renewed in time" in lost[0]
    finally:
        el.release()


def test_release_hands_the_lease_to_the_standby_at_once() -> None:
    api, clock = FakeKube(), Clock()
    first, second = elector(api, clock, "one"), elector(api, clock, "two")
    first.try_acquire()
    first.hold(lambda reason: None)
    first.release()
    assert second.try_acquire() == (True, None)


def test_health_says_standby_and_who_leads() -> None:
    api, clock = FakeKube(), Clock()
    first, second = elector(api, clock, "one"), elector(api, clock, "two")
    first.try_acquire()
    health = HealthServer.__new__(HealthServer)
    health.elector, health.kopf_url = second, "http://127.0.0.1:9/healthz"
    second.state.message = lead.standby_message(
        lead.holding_of(stored(api, first), 15), TIMING.skew_s
    )
    code, body = health.answer("/readyz")
    assert code == 200 and body["state"] == "standby" and "held by one" in body["message"]
    assert health.answer("/healthz")[0] == 200
    assert health.answer("/metrics")[0] == 404
    first_health = HealthServer.__new__(HealthServer)
    first_health.elector, first_health.kopf_url = first, "http://127.0.0.1:9/healthz"
    first.state.phase = "leading"
    assert first_health.answer("/readyz")[0] == 503  # kopf not answering: not ready


# -- the chart ---------------------------------------------------------------------------------


@chart.pytestmark
def test_the_chart_grants_leases_in_the_lease_namespace_only() -> None:
    docs = chart.render()
    role = chart.find(docs, "Role", "rel-runbook-operator-leader-election", "ops")
    assert chart.grants(role["rules"]) == {
        ("coordination.k8s.io", "leases"): {"get", "list", "create", "update"}
    }
    binding = chart.find(docs, "RoleBinding", "rel-runbook-operator-leader-election", "ops")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-runbook-operator", "namespace": "ops"}
    ]
    leases_elsewhere = [
        d
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
        and d["metadata"]["name"] != "rel-runbook-operator-leader-election"
        and any("leases" in r.get("resources", []) for r in d.get("rules") or [])
    ]
    assert leases_elsewhere == []
    shared = chart.render('leaderElection.namespace="runbook-leases"')
    chart.find(shared, "Role", "rel-runbook-operator-leader-election", "runbook-leases")
    assert chart.env_of(shared)["RUNBOOK_LEASE_NAMESPACE"] == "runbook-leases"


@chart.pytestmark
def test_the_charts_lease_settings_load_in_the_operator() -> None:
    docs = chart.render("replicas=2", "leaderElection.leaseDurationSeconds=30")
    deploy = chart.find(docs, "Deployment", "rel-runbook-operator", "ops")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = chart.env_of(docs)
    assert env["RUNBOOK_LEASE_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    cfg = load_config({**plain, "RUNBOOK_OPERATOR_NAMESPACE": "ops", "RUNBOOK_LEASE_IDENTITY": "p"})
    assert cfg.lease_namespace == "ops"
    assert cfg.lease_timing == lead.Timing(30, 5, 2, 2)


@chart.pytestmark
def test_the_chart_refuses_renewals_that_leave_no_second_try() -> None:
    stderr = chart.refused("leaderElection.renewSeconds=7")
    assert "leaderElection.renewSeconds" in stderr
