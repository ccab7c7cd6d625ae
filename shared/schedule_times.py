"""When a schedule fires: every N seconds, on a cron expression in an IANA time zone, or once.

The API (validation, the preview of the next fire times) and the scheduler (the time after a fire)
compute with the same functions. Cron expressions are parsed and matched by `cronsim` in the
schedule's zone, so daylight-saving changes follow the zone's rules as Debian's cron does: a wall
time skipped by the spring-forward change fires right after it (02:30 fires at 03:00), and one
repeated by the fall-back change fires once (at its first occurrence). Every time leaving here is
UTC.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cronsim import CronSim, CronSimError

ScheduleKind = Literal["interval", "cron", "once"]
KINDS: tuple[ScheduleKind, ...] = ("interval", "cron", "once")

PREVIEW_COUNT = 5
"""How many fire times a schedule's preview shows."""

_CRON_GAP_CHECKED = 50
"""How many consecutive fires of a cron expression are checked against the minimum interval."""


class InvalidSchedule(ValueError):
    """A schedule that cannot be computed: an unknown zone, a malformed cron expression."""


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_named(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name` (e.g. `Asia/Kolkata`); InvalidSchedule for anything else, so that
    no path or file name reaches zoneinfo."""
    if name not in _zone_names():
        raise InvalidSchedule(f"unknown time zone {name[:64]!r}: use an IANA name such as Asia/Kolkata")
    return zoneinfo.ZoneInfo(name)


def check_cron(expression: str) -> str:
    """`expression` if cronsim reads it (five fields: minute hour day month weekday)."""
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise InvalidSchedule(
            f"not a cron expression cronsim reads ({exc}): e.g. */15 9-15 * * 1-5"
        ) from None
    return expression


@dataclass(frozen=True, slots=True)
class ScheduleRule:
    """What a schedule says, without its state (next run, last run, count)."""

    kind: ScheduleKind
    interval_seconds: int | None = None
    cron: str | None = None
    timezone: str | None = None
    run_at: datetime | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None

    def _in_window(self, at: datetime | None) -> datetime | None:
        if at is None or (self.end_at is not None and at > self.end_at):
            return None
        return at

    def _cron_times(self, after: datetime) -> Iterator[datetime]:
        """Cron matches strictly after `after` (and not before start_at), in UTC, without end."""
        assert self.cron is not None and self.timezone is not None
        zone = zone_named(self.timezone)
        if self.start_at is not None and self.start_at > after:
            # A match exactly at start_at counts: start just before it.
            after = self.start_at - timedelta(microseconds=1)
        for local in CronSim(self.cron, after.astimezone(zone)):
            yield local.astimezone(UTC)

    def next_after(self, now: datetime) -> datetime | None:
        """The fire time after one at `now`: what the scheduler stores once it has fired.

        interval: now + N (one catch-up run after downtime, not one per missed tick); cron: the next
        match after now; once: none. None also when it would fall after end_at.
        """
        if self.kind == "interval":
            assert self.interval_seconds is not None
            at = now + timedelta(seconds=self.interval_seconds)
            if self.start_at is not None and self.start_at > at:
                at = self.start_at
            return self._in_window(at)
        if self.kind == "cron":
            return self._in_window(next(self._cron_times(now), None))
        return None

    def first_at(self, now: datetime, *, last_run_at: datetime | None) -> datetime | None:
        """When a schedule set (or resumed) at `now` first fires.

        interval: N after its last run, or now if that is past (or it never ran); cron: the next
        match; once: run_at (a time in the past fires at once, unless it fired already). Never
        before start_at, never after end_at.
        """
        if self.kind == "interval":
            assert self.interval_seconds is not None
            at = now
            if last_run_at is not None:
                at = max(now, last_run_at + timedelta(seconds=self.interval_seconds))
            if self.start_at is not None and self.start_at > at:
                at = self.start_at
            return self._in_window(at)
        if self.kind == "cron":
            return self._in_window(next(self._cron_times(now), None))
        assert self.run_at is not None
        if last_run_at is not None and last_run_at >= self.run_at:
            return None  # it fired for this time already
        return self._in_window(self.run_at)

    def preview(
        self, next_run_at: datetime | None, *, now: datetime, count: int = PREVIEW_COUNT
    ) -> list[datetime]:
        """The next `count` fire times: `next_run_at` (a due one fires at the scheduler's next pass),
        then each the kind's next time after the one before it (or after now, for an overdue one)."""
        times: list[datetime] = []
        at = self._in_window(next_run_at)
        while at is not None and len(times) < count:
            times.append(at)
            at = self.next_after(max(at, now))
        return times

    def shortest_gap(self, now: datetime) -> timedelta | None:
        """The shortest time between two consecutive fires (cron: over the next fifty); None for one
        that fires at most once."""
        if self.kind == "interval":
            assert self.interval_seconds is not None
            return timedelta(seconds=self.interval_seconds)
        if self.kind == "once":
            return None
        times = self._cron_times(now)
        previous = next(times, None)
        gap: timedelta | None = None
        for _ in range(_CRON_GAP_CHECKED):
            current = next(times, None)
            if previous is None or current is None:
                break
            gap = current - previous if gap is None else min(gap, current - previous)
            previous = current
        return gap
