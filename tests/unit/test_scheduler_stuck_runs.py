"""The scheduler's pass over stuck runs: requested again once per STUCK_RUN_AFTER_SECONDS, same id."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.stuck_runs import rerequest_stuck_runs
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.tables import SyncRun
from shared.events import SyncRequested, utc_now
from tests.support.accounts import create_account


async def test_a_stuck_run_is_requested_again_once_per_period(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    account_id = (await create_account(sessions, broker="sim")).id
    async with sessions.begin() as session:
        stuck, fresh = uuid.uuid4(), uuid.uuid4()
        session.add(
            SyncRun(
                id=stuck,
                account_id=account_id,
                trigger="schedule",
                status="requested",
                requested_at=now - timedelta(hours=1),
            )
        )
        session.add(
            SyncRun(id=fresh, account_id=account_id, trigger="manual", status="requested", requested_at=now)
        )

    assert await rerequest_stuck_runs(sessions, bus, now=now, after_s=600, limit=10) == 1
    sent = [SyncRequested.model_validate_json(r.value) for r in bus.records(topics.sync_requests("sim"))]
    assert [(r.event_id, r.account_id) for r in sent] == [(stuck, account_id)]
    # Two schedulers' passes at the same moment, or the next tick: not again until another period.
    assert await rerequest_stuck_runs(sessions, bus, now=now, after_s=600, limit=10) == 0
    # Eleven minutes on, both have waited too long: the stuck one since it was requested again.
    later = now + timedelta(minutes=11)
    assert await rerequest_stuck_runs(sessions, bus, now=later, after_s=600, limit=10) == 2
    async with sessions() as session:
        assert (await session.get(SyncRun, stuck)) is not None
        assert (await session.scalar(select(SyncRun.status).where(SyncRun.id == stuck))) == "requested"
