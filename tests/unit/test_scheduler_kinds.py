"""The scheduler honours every kind of schedule, its window and pause, and operators' broker pauses;
last run and run count move in the claim. Rerun on Postgres by tests/integration."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.handlers import emit_due_syncs
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.tables import BrokerAccount, BrokerPause, Schedule
from shared.events import SyncRequested, decode_event
from tests.support.accounts import create_account

NOW = datetime(2026, 3, 6, 14, 0, tzinfo=UTC)


def _requested(bus: InMemoryBus, broker: str = "sim") -> list[uuid.UUID]:
    return [
        decode_event(SyncRequested, r.value).account_id for r in bus.records(topics.sync_requests(broker))
    ]


async def _make(
    sessions: async_sessionmaker[AsyncSession], broker: str = "sim", **values: object
) -> BrokerAccount:
    account = await create_account(sessions, broker=broker)
    async with sessions.begin() as session:
        await session.execute(update(Schedule).where(Schedule.account_id == account.id).values(**values))
    return account


async def _schedule(sessions: async_sessionmaker[AsyncSession], account: BrokerAccount) -> Schedule:
    async with sessions() as session:
        schedule = await session.get(Schedule, account.id)
    assert schedule is not None
    return schedule


async def test_cron_moves_to_its_next_match_and_counts_the_run(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await _make(
        sessions,
        kind="cron",
        interval_seconds=None,
        cron="30 2 * * *",
        timezone="America/New_York",
        next_run_at=NOW - timedelta(hours=1),
    )
    assert await emit_due_syncs(sessions, bus, now=NOW, limit=100) == 1
    schedule = await _schedule(sessions, account)
    # Next: 2026-03-07 02:30 EST = 07:30 UTC.
    assert schedule.next_run_at == datetime(2026, 3, 7, 7, 30, tzinfo=UTC)
    assert (schedule.last_run_at, schedule.run_count) == (NOW, 1)
    # Over the spring-forward change: the 03-08 02:30 that does not exist fires at 03:00 EDT.
    spring = datetime(2026, 3, 7, 7, 30, tzinfo=UTC)
    assert await emit_due_syncs(sessions, bus, now=spring, limit=100) == 1
    assert (await _schedule(sessions, account)).next_run_at == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert _requested(bus) == [account.id, account.id]


async def test_a_cron_schedule_down_for_days_catches_up_once(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    await _make(
        sessions,
        kind="cron",
        interval_seconds=None,
        cron="*/5 * * * *",
        timezone="UTC",
        next_run_at=NOW - timedelta(days=3),
    )
    assert await emit_due_syncs(sessions, bus, now=NOW, limit=100) == 1
    assert await emit_due_syncs(sessions, bus, now=NOW + timedelta(minutes=4), limit=100) == 0
    assert await emit_due_syncs(sessions, bus, now=NOW + timedelta(minutes=5), limit=100) == 1


async def test_once_fires_then_has_no_next_run(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await _make(
        sessions,
        kind="once",
        interval_seconds=None,
        run_at=NOW - timedelta(minutes=1),
        next_run_at=NOW - timedelta(minutes=1),
    )
    assert await emit_due_syncs(sessions, bus, now=NOW, limit=100) == 1
    schedule = await _schedule(sessions, account)
    assert (schedule.next_run_at, schedule.run_count, schedule.last_run_at) == (None, 1, NOW)
    assert await emit_due_syncs(sessions, bus, now=NOW + timedelta(days=365), limit=100) == 0


async def test_interval_stops_at_its_end_and_a_tick_past_the_end_never_fires(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    ending = await _make(sessions, interval_seconds=600, end_at=NOW + timedelta(minutes=5), next_run_at=NOW)
    ended = await _make(
        sessions,
        interval_seconds=600,
        end_at=NOW - timedelta(minutes=1),
        next_run_at=NOW - timedelta(minutes=2),
    )
    assert await emit_due_syncs(sessions, bus, now=NOW, limit=100) == 1
    assert _requested(bus) == [ending.id]
    assert (await _schedule(sessions, ending)).next_run_at is None  # now + 600 s is past its end
    assert (await _schedule(sessions, ended)).run_count == 0


async def test_a_paused_schedule_and_a_paused_broker_fire_nothing_until_resumed(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    broker = f"b{uuid.uuid4().hex[:10]}"
    paused = await _make(sessions, enabled=False, next_run_at=NOW - timedelta(hours=1))
    outage = await _make(sessions, broker=broker, next_run_at=NOW - timedelta(hours=1))
    async with sessions.begin() as session:
        session.add(BrokerPause(broker=broker, reason="broker outage", paused_at=NOW))
    for minutes in (0, 10, 20):
        assert await emit_due_syncs(sessions, bus, now=NOW + timedelta(minutes=minutes), limit=100) == 0
    assert (await _schedule(sessions, outage)).run_count == 0

    async with sessions.begin() as session:
        await session.delete(await session.get(BrokerPause, broker))
        await session.execute(update(Schedule).where(Schedule.account_id == paused.id).values(enabled=True))
    later = NOW + timedelta(minutes=30)
    assert await emit_due_syncs(sessions, bus, now=later, limit=100) == 2  # one catch-up each
    assert _requested(bus, broker) == [outage.id]
    assert await emit_due_syncs(sessions, bus, now=later, limit=100) == 0


async def test_concurrent_schedulers_fire_each_cron_tick_once(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    accounts = [
        await _make(
            sessions,
            kind="cron",
            interval_seconds=None,
            cron="*/15 9-15 * * 1-5",
            timezone="Asia/Kolkata",
            next_run_at=NOW - timedelta(seconds=5),
        )
        for _ in range(10)
    ]
    counts = await asyncio.gather(*(emit_due_syncs(sessions, bus, now=NOW, limit=100) for _ in range(4)))
    assert sum(counts) == 10
    assert sorted(_requested(bus)) == sorted(a.id for a in accounts)
    for account in accounts:
        assert (await _schedule(sessions, account)).run_count == 1
