from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.handlers import emit_due_syncs
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.tables import BrokerAccount, Schedule, SyncRun
from shared.events import SyncRequested, SyncTrigger, decode_event, utc_now
from tests.support.accounts import create_account


def _requests(bus: InMemoryBus, broker: str = "sim") -> list[SyncRequested]:
    return [decode_event(SyncRequested, r.value) for r in bus.records(topics.sync_requests(broker))]


async def test_due_schedule_emits_one_request_and_moves_to_the_next_interval(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    due = await create_account(sessions, interval_seconds=600, next_run_at=now - timedelta(seconds=1))
    await create_account(sessions, next_run_at=now + timedelta(minutes=5))

    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 1
    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 0

    [request] = _requests(bus)
    assert (request.account_id, request.trigger) == (due.id, SyncTrigger.SCHEDULE)
    async with sessions() as session:
        schedule = await session.get(Schedule, due.id)
        run = await session.get(SyncRun, request.event_id)
    assert schedule is not None and schedule.next_run_at == now + timedelta(seconds=600)
    assert run is not None and run.status == "requested"


async def test_many_missed_ticks_give_one_catch_up_run(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    await create_account(sessions, interval_seconds=60, next_run_at=now - timedelta(days=2))
    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 1
    assert await emit_due_syncs(sessions, bus, now=now + timedelta(seconds=30), limit=100) == 0


async def test_concurrent_schedulers_never_emit_the_same_tick_twice(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    accounts = [await create_account(sessions, next_run_at=now - timedelta(seconds=5)) for _ in range(20)]
    counts = await asyncio.gather(*(emit_due_syncs(sessions, bus, now=now, limit=100) for _ in range(4)))
    emitted = _requests(bus)
    assert sum(counts) == len(emitted) == 20
    assert sorted(r.account_id for r in emitted) == sorted(a.id for a in accounts)


async def test_accounts_needing_reauth_are_not_scheduled(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions, next_run_at=utc_now() - timedelta(seconds=1))
    async with sessions.begin() as session:
        stored = await session.scalar(select(BrokerAccount).where(BrokerAccount.id == account.id))
        assert stored is not None
        stored.needs_reauth = True
    assert await emit_due_syncs(sessions, bus, now=utc_now(), limit=100) == 0
