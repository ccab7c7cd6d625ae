"""The schedule maths: every kind, the window, and daylight-saving changes in America/New_York."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.schedule_times import InvalidSchedule, ScheduleRule, check_cron, zone_named

NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")


def _ny(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK).replace(fold=fold).astimezone(UTC)  # type: ignore[misc]


def test_interval_fires_every_n_seconds_after_the_last_fire() -> None:
    rule = ScheduleRule(kind="interval", interval_seconds=600)
    now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    assert rule.next_after(now) == now + timedelta(seconds=600)
    assert rule.first_at(now, last_run_at=None) == now
    assert rule.first_at(now, last_run_at=now - timedelta(seconds=100)) == now + timedelta(seconds=500)
    assert rule.preview(now, now=now) == [now + timedelta(seconds=600 * i) for i in range(5)]


def test_an_overdue_tick_is_previewed_once_then_the_times_after_now() -> None:
    rule = ScheduleRule(kind="interval", interval_seconds=60)
    now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    overdue = now - timedelta(days=2)
    assert rule.preview(overdue, now=now)[:3] == [
        overdue,
        now + timedelta(seconds=60),
        now + timedelta(seconds=120),
    ]


def test_cron_fires_in_market_hours_of_its_zone() -> None:
    rule = ScheduleRule(kind="cron", cron="*/15 9-15 * * 1-5", timezone="Asia/Kolkata")
    friday_evening = datetime(2026, 5, 8, 15, 50, tzinfo=KOLKATA).astimezone(UTC)  # a Friday
    fires = rule.preview(rule.first_at(friday_evening, last_run_at=None), now=friday_evening)
    assert [f.astimezone(KOLKATA).strftime("%a %H:%M") for f in fires] == [
        "Mon 09:00",
        "Mon 09:15",
        "Mon 09:30",
        "Mon 09:45",
        "Mon 10:00",
    ]
    assert all(f.tzinfo == UTC for f in fires)
    assert fires[0] == datetime(2026, 5, 11, 3, 30, tzinfo=UTC)  # 09:00 IST is 03:30 UTC


def test_cron_next_after_a_fire_is_the_next_match_not_the_same_one() -> None:
    rule = ScheduleRule(kind="cron", cron="0 * * * *", timezone="UTC")
    at = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    assert rule.next_after(at) == at + timedelta(hours=1)


def test_spring_forward_a_daily_0230_fires_once_at_0300_on_the_day_0230_does_not_exist() -> None:
    rule = ScheduleRule(kind="cron", cron="30 2 * * *", timezone="America/New_York")
    now = _ny(2026, 3, 7, 12, 0)
    fires = rule.preview(rule.first_at(now, last_run_at=None), now=now, count=3)
    assert fires == [
        _ny(2026, 3, 8, 3, 0),  # 02:00 EST jumps to 03:00 EDT: the skipped 02:30 fires right after
        _ny(2026, 3, 9, 2, 30),
        _ny(2026, 3, 10, 2, 30),
    ]
    assert fires[0] == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert fires[1] == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)  # EDT: UTC-4


def test_fall_back_a_daily_0130_fires_once_on_the_day_0130_happens_twice() -> None:
    rule = ScheduleRule(kind="cron", cron="30 1 * * *", timezone="America/New_York")
    now = _ny(2026, 10, 31, 12, 0)
    fires = rule.preview(rule.first_at(now, last_run_at=None), now=now, count=3)
    assert fires == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first of the two
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # 01:30 EST
        datetime(2026, 11, 3, 6, 30, tzinfo=UTC),
    ]
    # The scheduler, firing at the first 01:30, moves to the next day, not to the second 01:30.
    assert rule.next_after(fires[0]) == fires[1]


def test_once_fires_at_its_time_then_never() -> None:
    at = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    rule = ScheduleRule(kind="once", run_at=at)
    now = at - timedelta(days=1)
    assert rule.first_at(now, last_run_at=None) == at
    assert rule.preview(at, now=now) == [at]
    assert rule.next_after(at) is None
    assert rule.first_at(at + timedelta(hours=1), last_run_at=at) is None  # fired already
    assert rule.first_at(at + timedelta(hours=1), last_run_at=None) == at  # past and not fired: at once


def test_start_and_end_bound_every_kind() -> None:
    start = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    end = start + timedelta(hours=2)
    now = start - timedelta(days=3)
    interval = ScheduleRule(kind="interval", interval_seconds=3600, start_at=start, end_at=end)
    assert interval.first_at(now, last_run_at=None) == start
    assert interval.preview(start, now=now) == [start, start + timedelta(hours=1), end]
    assert interval.next_after(end) is None

    cron = ScheduleRule(kind="cron", cron="0 * * * *", timezone="UTC", start_at=start, end_at=end)
    assert cron.first_at(now, last_run_at=None) == start  # a match exactly at start counts
    assert cron.preview(start, now=now) == [start, start + timedelta(hours=1), end]

    once = ScheduleRule(kind="once", run_at=end + timedelta(seconds=1), end_at=end)
    assert once.first_at(now, last_run_at=None) is None


def test_the_shortest_gap_of_a_cron_expression() -> None:
    now = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    assert ScheduleRule(kind="cron", cron="* * * * *", timezone="UTC").shortest_gap(now) == timedelta(
        minutes=1
    )
    assert ScheduleRule(kind="cron", cron="0,5 * * * *", timezone="UTC").shortest_gap(now) == timedelta(
        minutes=5
    )
    assert ScheduleRule(kind="once", run_at=now).shortest_gap(now) is None


@pytest.mark.parametrize("expression", ["61 * * * *", "* * *", "every day", "* * * * * * * *"])
def test_malformed_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(InvalidSchedule, match="cron expression"):
        check_cron(expression)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "", "asia/kolkata"])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(InvalidSchedule, match="IANA"):
        zone_named(name)
