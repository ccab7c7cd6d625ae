"""Deleting an account while the scheduler claims its schedule: the two take row locks in opposite
orders (the deletion: account, then schedule; the scheduler: schedule, then the account's key for the
run it inserts), so Postgres breaks the deadlock by failing one of them. When the deletion is the
one failed, it is retried and completes, with the scheduler's run deleted too; the user never sees
a 503 for it. On real Postgres, whose lock manager this is."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.removal import remove_account
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.tables import BrokerAccount, Schedule, SyncRun
from shared.events import utc_now
from tests.support.accounts import create_account
from tests.support.waiting import eventually


async def _removal_waits_on_a_lock(sessions: async_sessionmaker[AsyncSession]) -> bool:
    async with sessions() as session:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM broker_accounts%'"
        )
        return bool(await session.scalar(text(query)))


async def test_a_removal_failed_to_break_a_deadlock_with_the_scheduler_is_retried_and_completes(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    account = await create_account(sessions)
    bus = InMemoryBus()
    await bus.start()
    caplog.set_level(logging.INFO, logger="services.api.removal")

    async with sessions() as scheduler:
        # The scheduler's claim: the due schedule locked (it then inserts the tick's run).
        await scheduler.execute(select(Schedule).where(Schedule.account_id == account.id).with_for_update())
        async with sessions() as api:
            removal = asyncio.create_task(remove_account(api, bus, account.id))
            # The deletion holds the account and waits for the schedule's row...
            await eventually(lambda: _removal_waits_on_a_lock(sessions), what="the removal to wait")
            # ...while the scheduler's run needs the account's key: a cycle. The removal, waiting
            # longer, is the one Postgres fails (after deadlock_timeout); the run goes in.
            scheduler.add(
                SyncRun(
                    id=uuid.uuid4(),
                    account_id=account.id,
                    trigger="schedule",
                    status="requested",
                    requested_at=utc_now(),
                )
            )
            await scheduler.commit()
            await asyncio.wait_for(removal, timeout=30)

    said = [r.getMessage() for r in caplog.records if r.name == "services.api.removal"]
    assert said == ["removal retried", "account removed"]
    async with sessions() as session:
        assert await session.get(BrokerAccount, account.id) is None
        runs = select(func.count()).select_from(SyncRun).where(SyncRun.account_id == account.id)
        assert await session.scalar(runs) == 0
    # Published by each attempt, with the same event id: subscribers apply it once.
    announced = await bus.recent(topics.HOLDINGS_CHANGES, per_partition=10)
    assert len(announced) == 2
    assert len({(r.key, json.loads(r.value)["event_id"]) for r in announced}) == 1
