"""Deleting an account while the relay is publishing one of its changes: AccountRemoved comes after
that change on `holdings.changes`, never before (a subscriber would otherwise see the account come
back). On real Postgres, whose row locks order the two."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.removal import remove_account
from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.bus.port import OutgoingMessage
from shared.events import Holding, HoldingSnapshot, utc_now
from tests.support.accounts import create_account
from tests.support.waiting import eventually


class _HeldChanges(InMemoryBus):
    """An in-memory bus that holds every publish of a HoldingsChanged until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        changes = [m for m in messages if m.topic == topics.HOLDINGS_CHANGES]
        if any(b'"account_removed"' not in m.value for m in changes):
            self.reached.set()
            await self.release.wait()
        await super().publish(messages)


async def _waiting_on_a_lock(sessions: async_sessionmaker[AsyncSession]) -> bool:
    async with sessions() as session:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        return bool(await session.scalar(text(query)))


async def test_account_removed_comes_after_a_change_being_relayed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    account = await create_account(sessions)
    bus = _HeldChanges()
    await bus.start()
    holding = Holding(
        symbol="INFY", exchange="NSE", currency="INR", quantity=Decimal(5), average_price=Decimal(1)
    )
    snapshot = HoldingSnapshot(
        account_id=account.id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=utc_now() - timedelta(minutes=1),
        holdings=(holding,),
    )
    applying = asyncio.create_task(Ledger(sessions=sessions, bus=bus).apply_batch([snapshot]))
    await asyncio.wait_for(bus.reached.wait(), 30)  # committed; its relay holds the row, publishing

    async def remove() -> None:
        async with sessions() as session:
            await remove_account(session, bus, account.id)

    removing = asyncio.create_task(remove())
    await eventually(lambda: _waiting_on_a_lock(sessions), what="the removal to wait for the relay's rows")
    bus.release.set()
    await asyncio.gather(applying, removing)

    on_topic = [json.loads(r.value) for r in bus.records(topics.HOLDINGS_CHANGES) if r.key == str(account.id)]
    kinds = [m.get("event_type", "holdings_changed") for m in on_topic]
    assert kinds == ["holdings_changed", "account_removed"], kinds
