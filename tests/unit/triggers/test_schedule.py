"""The schedule planner (triggers/schedule.py): a fake clock drives it like the controller does.

`Loop` plays the trigger controller: it wakes at the planner's next fire time (plus a lag),
feeds back last_scheduled, keeps the active executions, and records what started. DST cases use
Europe/Berlin: 2026-03-29 02:00 CET → 03:00 CEST (spring forward), 2026-10-25 03:00 CEST →
02:00 CET (fall back).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_operator.triggers import schedule as sch
from runbook_operator.triggers.schedule import (
    Schedule,
    ScheduleError,
    execution_name,
    next_fire,
    plan,
)

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold).astimezone(UTC)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@dataclass
class Loop:
    """A fake clock and the controller's bookkeeping around `plan`."""

    schedule: Schedule
    now: datetime
    policy: str = sch.ALLOW
    max_runs: int = 1
    deadline: int | None = None
    lag: timedelta = timedelta(seconds=2)
    since: datetime = field(init=False)
    active: list[str] = field(default_factory=list)
    started: list[datetime] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.since = self.now

    def tick(self) -> sch.Plan:
        result = plan(
            self.schedule,
            since=self.since,
            now=self.now,
            starting_deadline_seconds=self.deadline,
            max_runs=self.max_runs,
            policy=self.policy,
            active=tuple(self.active),
        )
        for name in result.cancel:
            self.active.remove(name)
            self.cancelled.append(name)
        for at in result.start:
            self.started.append(at)
            self.active.append(execution_name("t", "uid", at))
        for reason, count in result.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        if result.last_scheduled is not None:
            self.since = result.last_scheduled
        return result

    def run_until(self, end: datetime) -> None:
        """Wake at each next fire time (late by `lag`) until `end`."""
        while True:
            result = self.tick()
            if result.next_fire is None or result.next_fire + self.lag > end:
                return
            self.now = result.next_fire + self.lag


def local(times: list[datetime]) -> list[str]:
    return [t.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for t in times]


# --- DST -------------------------------------------------------------------------------------


def test_spring_forward_a_missing_time_fires_once_right_after_the_gap() -> None:
    loop = Loop(Schedule.parse("30 2 * * *", "Europe/Berlin"), now=berlin(2026, 3, 27, 12, 0))
    loop.run_until(berlin(2026, 3, 31, 12, 0))
    assert local(loop.started) == [
        "03-28 02:30 CET",
        "03-29 03:00 CEST",  # 02:30 does not exist that day: once, at the end of the gap
        "03-30 02:30 CEST",
        "03-31 02:30 CEST",
    ]


def test_fall_back_a_repeated_time_fires_once_at_its_first_occurrence() -> None:
    loop = Loop(Schedule.parse("30 2 * * *", "Europe/Berlin"), now=berlin(2026, 10, 23, 12, 0))
    loop.run_until(berlin(2026, 10, 27, 12, 0))
    assert local(loop.started) == [
        "10-24 02:30 CEST",
        "10-25 02:30 CEST",  # 02:30 happens twice that day: only the first (CEST) one
        "10-26 02:30 CET",
        "10-27 02:30 CET",
    ]


def test_fall_back_a_trigger_made_inside_the_repeated_hour_fires_neither_occurrence() -> None:
    schedule = Schedule.parse("30 2 * * *", "Europe/Berlin")
    # Created at 02:10 CET (the second 02:xx hour, after 02:30 CEST has passed), looked at 02:40
    # CET: cronsim's wall-clock walk answers 02:30 (CEST), which is before the creation.
    since = berlin(2026, 10, 25, 2, 10, fold=1)
    result = plan(schedule, since=since, now=berlin(2026, 10, 25, 2, 40, fold=1))
    assert result.start == ()
    assert result.next_fire == berlin(2026, 10, 26, 2, 30)
    assert next(schedule.fire_times(since)) == berlin(2026, 10, 26, 2, 30)


def test_hourly_schedules_follow_elapsed_time_across_dst() -> None:
    hourly = Schedule.parse("@hourly", "Europe/Berlin")
    spring = list(
        itertools.takewhile(
            lambda t: t < berlin(2026, 3, 30, 0, 0), hourly.fire_times(berlin(2026, 3, 29, 0, 0))
        )
    )
    autumn = list(
        itertools.takewhile(
            lambda t: t < berlin(2026, 10, 26, 0, 0),
            hourly.fire_times(berlin(2026, 10, 25, 0, 0)),
        )
    )
    assert len(spring) == 22  # 01:00 .. 23:00 without 02:00 (the 00:00 start is excluded)
    assert len(autumn) == 24  # 01:00 .. 23:00 with 02:00 twice
    assert berlin(2026, 10, 25, 2, 0) in autumn and berlin(2026, 10, 25, 2, 0, fold=1) in autumn


def test_next_fire_is_in_utc_and_strictly_after() -> None:
    at = berlin(2026, 3, 29, 3, 0)
    assert next_fire("30 2 * * *", "Europe/Berlin", at - timedelta(seconds=1)) == at
    assert next_fire("30 2 * * *", "Europe/Berlin", at) == berlin(2026, 3, 30, 2, 30)
    assert next_fire("0 6 * * 1-5", "UTC", utc(2026, 1, 2, 6, 0)) == utc(2026, 1, 5, 6, 0)


# --- catch-up and deadlines ------------------------------------------------------------------


def test_catch_up_after_a_gap_starts_only_the_newest_max_runs() -> None:
    every_ten = Schedule.parse("*/10 * * * *")
    result = plan(every_ten, since=utc(2026, 5, 1, 10, 0), now=utc(2026, 5, 1, 11, 5), max_runs=2)
    # Due: 10:10 .. 11:00 (six); the newest two start, four are counted.
    assert result.start == (utc(2026, 5, 1, 10, 50), utc(2026, 5, 1, 11, 0))
    assert result.skipped == {sch.SKIP_CATCH_UP: 4}
    assert result.last_scheduled == utc(2026, 5, 1, 11, 0)
    assert result.next_fire == utc(2026, 5, 1, 11, 10)


def test_default_catch_up_is_cronjobs_only_the_latest_missed_run() -> None:
    result = plan(Schedule.parse("0 * * * *"), since=utc(2026, 5, 1, 0, 0), now=utc(2026, 5, 2))
    assert result.start == (utc(2026, 5, 2),)
    assert result.skipped == {sch.SKIP_CATCH_UP: 23}


def test_starting_deadline_drops_runs_that_are_too_late() -> None:
    every_ten = Schedule.parse("*/10 * * * *")
    result = plan(
        every_ten,
        since=utc(2026, 5, 1, 10, 0),
        now=utc(2026, 5, 1, 11, 5),
        max_runs=5,
        starting_deadline_seconds=20 * 60,
    )
    # 10:45 is the oldest allowed: only 10:50 and 11:00 are due within it.
    assert result.start == (utc(2026, 5, 1, 10, 50), utc(2026, 5, 1, 11, 0))
    assert result.skipped == {sch.SKIP_DEADLINE: 4}
    assert result.last_scheduled == utc(2026, 5, 1, 11, 0)


def test_a_run_exactly_at_the_deadline_still_starts_and_one_second_older_does_not() -> None:
    daily = Schedule.parse("0 6 * * *")
    on_edge = plan(
        daily, since=utc(2026, 5, 1), now=utc(2026, 5, 1, 6, 5), starting_deadline_seconds=300
    )
    assert on_edge.start == (utc(2026, 5, 1, 6, 0),)
    late = plan(
        daily, since=utc(2026, 5, 1), now=utc(2026, 5, 1, 6, 5, 1), starting_deadline_seconds=300
    )
    assert late.start == ()
    assert late.skipped == {sch.SKIP_DEADLINE: 1}
    # ... and it is handled: the next pass does not count it again.
    assert late.last_scheduled is not None and late.last_scheduled >= utc(2026, 5, 1, 6, 0)
    again = plan(
        daily, since=late.last_scheduled, now=utc(2026, 5, 1, 6, 10), starting_deadline_seconds=300
    )
    assert again.start == () and again.skipped == {}


def test_nothing_due_changes_nothing() -> None:
    result = plan(Schedule.parse("0 6 * * *"), since=utc(2026, 5, 1, 6), now=utc(2026, 5, 1, 7))
    assert result == sch.Plan(next_fire=utc(2026, 5, 2, 6))


def test_a_year_of_missed_minutes_is_bounded_work() -> None:
    result = plan(
        Schedule.parse("* * * * *"), since=utc(2025, 1, 1), now=utc(2026, 1, 1), max_runs=3
    )
    assert result.start == (utc(2025, 12, 31, 23, 58), utc(2025, 12, 31, 23, 59), utc(2026, 1, 1))
    assert result.skipped[sch.SKIP_CATCH_UP] >= sch.MAX_SCAN


def test_catch_up_loop_after_downtime() -> None:
    loop = Loop(Schedule.parse("*/5 * * * *"), now=utc(2026, 5, 1, 9, 58), max_runs=2)
    loop.run_until(utc(2026, 5, 1, 10, 12))
    assert loop.started == [utc(2026, 5, 1, 10, 0), utc(2026, 5, 1, 10, 5), utc(2026, 5, 1, 10, 10)]
    loop.now = utc(2026, 5, 1, 11, 1)  # the operator was down for 50 minutes
    loop.tick()
    assert loop.started[-2:] == [utc(2026, 5, 1, 10, 55), utc(2026, 5, 1, 11, 0)]
    assert loop.skipped == {sch.SKIP_CATCH_UP: 8}


# --- concurrency policies ---------------------------------------------------------------------


def test_forbid_skips_while_one_is_active_and_counts_it() -> None:
    loop = Loop(Schedule.parse("0 * * * *"), now=utc(2026, 5, 1, 0, 30), policy=sch.FORBID)
    loop.run_until(utc(2026, 5, 1, 3, 30))
    assert loop.started == [utc(2026, 5, 1, 1)]  # still active at 02:00 and 03:00
    assert loop.skipped == {sch.SKIP_FORBID: 2}
    loop.active.clear()  # it finished
    loop.now = utc(2026, 5, 1, 4, 0, 2)
    loop.tick()
    assert loop.started[-1] == utc(2026, 5, 1, 4)


def test_forbid_with_catch_up_starts_only_the_newest() -> None:
    result = plan(
        Schedule.parse("0 * * * *"),
        since=utc(2026, 5, 1),
        now=utc(2026, 5, 1, 3, 1),
        max_runs=3,
        policy=sch.FORBID,
    )
    assert result.start == (utc(2026, 5, 1, 3),)
    assert result.skipped == {sch.SKIP_FORBID: 2}


def test_replace_cancels_the_active_one_then_starts() -> None:
    loop = Loop(Schedule.parse("0 * * * *"), now=utc(2026, 5, 1, 0, 30), policy=sch.REPLACE)
    loop.run_until(utc(2026, 5, 1, 2, 30))
    first, second = (execution_name("t", "uid", t) for t in loop.started)
    assert loop.started == [utc(2026, 5, 1, 1), utc(2026, 5, 1, 2)]
    assert loop.cancelled == [first]
    assert loop.active == [second]


def test_allow_starts_beside_active_ones() -> None:
    loop = Loop(Schedule.parse("0 * * * *"), now=utc(2026, 5, 1, 0, 30), policy=sch.ALLOW)
    loop.run_until(utc(2026, 5, 1, 3, 30))
    assert len(loop.active) == 3 and loop.cancelled == [] and loop.skipped == {}


def test_max_concurrent_caps_allow_and_counts() -> None:
    result = plan(
        Schedule.parse("0 * * * *"),
        since=utc(2026, 5, 1),
        now=utc(2026, 5, 1, 3, 1),
        max_runs=3,
        active=("a",),
        max_concurrent=2,
    )
    assert result.start == (utc(2026, 5, 1, 3),)
    assert result.skipped == {sch.SKIP_MAX_CONCURRENT: 2}


def test_suspended_starts_nothing_and_moves_on() -> None:
    result = plan(
        Schedule.parse("0 * * * *"),
        since=utc(2026, 5, 1),
        now=utc(2026, 5, 1, 3, 1),
        suspended=True,
    )
    assert result.start == ()
    assert result.skipped == {sch.SKIP_SUSPENDED: 3}
    assert result.last_scheduled == utc(2026, 5, 1, 3)


# --- validation and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "zone", "field"),
    [
        ("* * * *", "UTC", "spec.schedule.cron"),
        ("0 0 * * * *", "UTC", "spec.schedule.cron"),  # six fields: seconds are not allowed
        ("61 * * * *", "UTC", "spec.schedule.cron"),
        ("0 0 31 2 *", "UTC", "spec.schedule.cron"),
        ("0 6 * * *", "Mars/Olympus", "spec.schedule.timezone"),
        ("0 6 * * *", "../etc/passwd", "spec.schedule.timezone"),
    ],
)
def test_bad_schedules_name_the_field(cron: str, zone: str, field: str) -> None:
    with pytest.raises(ScheduleError, match=field):
        Schedule.parse(cron, zone)


def test_bad_policy_names_the_field() -> None:
    with pytest.raises(ScheduleError, match="concurrencyPolicy"):
        plan(
            Schedule.parse("@daily"), since=utc(2026, 1, 1), now=utc(2026, 1, 2), policy="Sometimes"
        )


def test_execution_names_are_deterministic_short_and_distinct() -> None:
    at = utc(2026, 5, 1, 6)
    name = execution_name("nightly-report", "uid-1", at)
    assert name == execution_name("nightly-report", "uid-1", at)
    assert name.startswith("nightly-report-202605010600-")
    assert name != execution_name("nightly-report", "uid-2", at)  # a re-created trigger
    assert name != execution_name("nightly-report", "uid-1", at + timedelta(minutes=1))
    long = execution_name("x" * 253, "uid", at)
    assert len(long) <= 63
    assert execution_name("y" * 253, "uid", at) != long


# --- properties --------------------------------------------------------------------------------

CRONS = st.sampled_from(
    [
        "* * * * *",
        "*/7 * * * *",
        "0 * * * *",
        "30 2 * * *",
        "0 2,3 * * *",
        "*/15 2 * * *",
        "15 1-3 * * 0",
        "0 6 * * 1-5",
        "0 0 1 * *",
        "0 0 29 2 *",
    ]
)
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
INSTANTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
POLICY = st.sampled_from(sch.POLICIES)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cron=CRONS,
    zone=ZONES,
    since=INSTANTS,
    gap=st.integers(min_value=0, max_value=3 * 24 * 3600),
    max_runs=st.integers(min_value=0, max_value=5),
    deadline=st.none() | st.integers(min_value=0, max_value=24 * 3600),
    policy=POLICY,
    active=st.lists(st.text("abc", min_size=1, max_size=3), max_size=3, unique=True),
    max_concurrent=st.none() | st.integers(min_value=1, max_value=4),
)
def test_plan_properties(
    cron: str,
    zone: str,
    since: datetime,
    gap: int,
    max_runs: int,
    deadline: int | None,
    policy: str,
    active: list[str],
    max_concurrent: int | None,
) -> None:
    schedule = Schedule.parse(cron, zone)
    now = since + timedelta(seconds=gap)
    result = plan(
        schedule,
        since=since,
        now=now,
        starting_deadline_seconds=deadline,
        max_runs=max_runs,
        policy=policy,
        active=active,
        max_concurrent=max_concurrent,
    )
    due = list(itertools.takewhile(lambda t: t <= now, schedule.fire_times(since)))
    assert len(result.start) <= max_runs
    assert list(result.start) == sorted(set(result.start))
    assert set(result.start) <= set(due)
    for at in result.start:
        assert since < at <= now
        if deadline is not None:
            assert now - at <= timedelta(seconds=deadline)
    if due and result.start:
        assert result.start[-1] == due[-1]  # the newest due time is the one that starts
    if policy != sch.ALLOW:
        assert len(result.start) <= 1
    if policy == sch.FORBID and active:
        assert result.start == ()
    if max_concurrent is not None and result.start:
        running = 0 if result.cancel else len(active)
        assert running + len(result.start) <= max_concurrent
    # every due time is accounted for exactly once: started or skipped (counted exactly while
    # the walk is not cut short by MAX_SCAN; beyond it the count is a lower bound)
    accounted = len(result.start) + sum(result.skipped.values())
    if len(due) < sch.MAX_SCAN:
        assert accounted == len(due)
    else:
        assert sch.MAX_SCAN <= accounted <= len(due)
    if due:
        assert result.last_scheduled is not None and result.last_scheduled >= due[-1]
        assert result.last_scheduled <= now
    else:
        assert result.last_scheduled is None or result.last_scheduled <= now
    assert result.next_fire is None or result.next_fire > now
    names = [execution_name("t", "uid", at) for at in result.start]
    assert len(set(names)) == len(names)


@settings(max_examples=100, deadline=None)
@given(cron=CRONS, zone=ZONES, start=INSTANTS)
def test_fire_times_strictly_increase_and_names_stay_unique(
    cron: str, zone: str, start: datetime
) -> None:
    schedule = Schedule.parse(cron, zone)
    times = list(itertools.islice(schedule.fire_times(start), 200))
    assert all(a < b for a, b in itertools.pairwise(times))
    assert all(t > start for t in times)
    names = {execution_name("trigger", "uid", t) for t in times}
    assert len(names) == len(times)


@settings(max_examples=100, deadline=None)
@given(cron=CRONS, zone=ZONES, start=INSTANTS, cut=st.integers(min_value=1, max_value=40))
def test_walking_in_passes_sees_the_same_times_as_one_walk(
    cron: str, zone: str, start: datetime, cut: int
) -> None:
    """A controller that wakes at each fire time (last_scheduled fed back) starts exactly the
    times of one uninterrupted walk: no DST change loses or repeats one."""
    schedule = Schedule.parse(cron, zone)
    whole = list(itertools.islice(schedule.fire_times(start), cut))
    stepped: list[datetime] = []
    since = start
    for _ in range(cut):
        upcoming = next(schedule.fire_times(since), None)
        if upcoming is None:
            break
        result = plan(schedule, since=since, now=upcoming)
        stepped.extend(result.start)
        assert result.last_scheduled is not None
        since = result.last_scheduled
    assert stepped == whole


# --- where the shell resumes -------------------------------------------------------------------


def test_handled_until_takes_the_newest_of_status_executions_and_creation() -> None:
    import json

    from runbook_operator.execution.stamps import TRIGGER_EVENT
    from runbook_operator.triggers.scheduler import handled_until

    trigger = {"metadata": {"creationTimestamp": "2026-05-01T00:00:00Z"}, "status": {}}
    assert handled_until(trigger, []) == utc(2026, 5, 1)

    def execution(event: object) -> dict[str, object]:
        return {"metadata": {"annotations": {TRIGGER_EVENT: json.dumps(event)}}}

    mine = [
        execution({"kind": "schedule", "scheduledTime": "2026-05-01T06:00:00.000Z"}),
        execution({"kind": "schedule", "scheduledTime": "2026-05-01T05:00:00.000Z"}),
        execution({"kind": "alert", "scheduledTime": "2026-09-01T00:00:00.000Z"}),
        {"metadata": {"annotations": {TRIGGER_EVENT: "not json"}}},
        execution({"kind": "schedule"}),
    ]
    # The status was lost (a restore, a CRD without the field): the executions still tell.
    assert handled_until(trigger, mine) == utc(2026, 5, 1, 6)
    trigger["status"] = {"lastScheduleTime": "2026-05-01T07:00:00.000Z"}
    assert handled_until(trigger, mine) == utc(2026, 5, 1, 7)


def test_runbookctl_triggers_computes_next_fire_with_the_planner() -> None:
    """`runbookctl triggers` falls back on the planner when status.nextFire is not there yet."""
    from runbookctl.cluster import _next_fire

    compute = _next_fire()
    assert compute is not None
    spec = {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}
    assert compute(spec, utc(2026, 12, 4, 14)) == berlin(2026, 12, 7, 6, 0)  # Friday → Monday
