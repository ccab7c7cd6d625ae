"""An account's schedule, and the brokers operators paused: reads and writes of the API's columns.

The API writes what a schedule says and `next_run_at` when that changes; the scheduler writes
`next_run_at`, `last_run_at` and `run_count` when it fires, by compare-and-set on `next_run_at`. A
write here replaces `next_run_at` outright: a tick being fired meanwhile keeps its own claim (the
scheduler's update then finds another `next_run_at` and skips it, or has committed first).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import BrokerPause, Schedule
from shared.schedule_times import ScheduleRule


async def schedule_of(session: AsyncSession, account_id: uuid.UUID) -> Schedule | None:
    return await session.get(Schedule, account_id, populate_existing=True)


async def save_schedule(
    session: AsyncSession,
    account_id: uuid.UUID,
    rule: ScheduleRule,
    *,
    enabled: bool,
    now: datetime,
    recompute: bool,
) -> Schedule:
    """Make the account's schedule say `rule`, creating it if need be. `recompute`: its next fire
    becomes the rule's first time from now (a changed rule, a resume); otherwise it stays."""
    schedule = await schedule_of(session, account_id)
    if schedule is None:
        schedule = Schedule(account_id=account_id, run_count=0, last_run_at=None)
        session.add(schedule)
        recompute = True
    schedule.kind = rule.kind
    schedule.interval_seconds = rule.interval_seconds
    schedule.cron = rule.cron
    schedule.timezone = rule.timezone
    schedule.run_at = rule.run_at
    schedule.start_at = rule.start_at
    schedule.end_at = rule.end_at
    schedule.enabled = enabled
    if recompute:
        schedule.next_run_at = rule.first_at(now, last_run_at=schedule.last_run_at)
    await session.commit()
    return schedule


async def delete_schedule(session: AsyncSession, account_id: uuid.UUID) -> bool:
    deleted = await session.execute(delete(Schedule).where(Schedule.account_id == account_id))
    await session.commit()
    return bool(deleted.rowcount)  # type: ignore[attr-defined]


async def broker_pause(session: AsyncSession, broker: str) -> BrokerPause | None:
    return await session.get(BrokerPause, broker, populate_existing=True)


async def broker_pauses(session: AsyncSession) -> dict[str, BrokerPause]:
    return {p.broker: p for p in (await session.execute(select(BrokerPause))).scalars()}


async def pause_broker(
    session: AsyncSession, broker: str, *, reason: str, operator_id: uuid.UUID, now: datetime
) -> BrokerPause:
    """Pause `broker`, or replace the reason of a pause already in force (who and when stay)."""
    pause = await broker_pause(session, broker)
    if pause is None:
        pause = BrokerPause(broker=broker, reason=reason, paused_by=operator_id, paused_at=now)
        session.add(pause)
    else:
        pause.reason = reason
    await session.commit()
    return pause


async def resume_broker(session: AsyncSession, broker: str) -> None:
    await session.execute(delete(BrokerPause).where(BrokerPause.broker == broker))
    await session.commit()
