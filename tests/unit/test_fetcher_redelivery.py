"""A request delivered twice (the fetcher died between publishing and committing) is stored once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.fetcher.adapter import AccountContext, BrokerAnswer
from services.fetcher.brokers.simulated import holdings_answer, holdings_in
from services.fetcher.handlers import Fetcher
from services.fetcher.retry import RetryPolicy
from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import Snapshot
from shared.events import Holding, HoldingSnapshot, SyncRequested, SyncTrigger, decode_event
from tests.support.accounts import create_account

HOLDING = Holding(symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(3), average_price=Decimal(1))


class HoldsOne:
    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        return holdings_answer([HOLDING])

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return holdings_in(answer)

    async def aclose(self) -> None:
        return None


def _fetcher(bus: InMemoryBus) -> Fetcher:
    return Fetcher(
        adapter=HoldsOne(),
        bus=bus,
        cipher=CredentialCipher(CredentialCipher.generate_key()),
        slots=asyncio.Semaphore(1),
        retry=RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.01),
    )


async def test_a_request_fetched_twice_leaves_one_snapshot_in_the_ledger(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    request = SyncRequested(account_id=account.id, broker="sim", trigger=SyncTrigger.MANUAL)
    await _fetcher(bus).handle_requests([request])
    await _fetcher(bus).handle_requests([request])  # redelivered to another fetcher

    snapshots = [decode_event(HoldingSnapshot, r.value) for r in bus.records(topics.HOLDINGS_SNAPSHOTS)]
    assert len(snapshots) == 2
    ledger = Ledger(sessions=sessions, bus=bus)
    for snapshot in snapshots:  # in two batches, as two deliveries would come
        await ledger.apply_batch([snapshot])

    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Snapshot).where(Snapshot.account_id == account.id)
        )
    assert stored == 1
