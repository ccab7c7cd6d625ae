"""A `schedules` row as the rule `shared/schedule_times.py` computes with."""

from __future__ import annotations

from shared.db.tables import Schedule
from shared.schedule_times import KINDS, ScheduleKind, ScheduleRule


def rule_of(schedule: Schedule) -> ScheduleRule:
    """What the row says (kind, timing, window), without its state."""
    kind: ScheduleKind = next((k for k in KINDS if k == schedule.kind), "interval")
    return ScheduleRule(
        kind=kind,
        interval_seconds=schedule.interval_seconds,
        cron=schedule.cron,
        timezone=schedule.timezone,
        run_at=schedule.run_at,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
    )
