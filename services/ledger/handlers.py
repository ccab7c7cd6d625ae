"""Apply a batch of snapshots, failures and reviews in one transaction, idempotently on event id.

The batch commits before the consumer commits its offsets, so a crash redelivers at worst a batch
that is already applied, and the dedupe makes that redelivery change nothing. HoldingsChanged goes
into the outbox in the same transaction, and the relay publishes it after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.outbox import OutboxRelay
from services.ledger.plan import UnknownAccount, plan_batch
from services.ledger.store import LedgerStore, PositionsCache
from shared.bus.port import MessageBus
from shared.events import Event

log = logging.getLogger(__name__)

CONSUMER = "ledger"

__all__ = ["CONSUMER", "Ledger", "UnknownAccount"]


class Ledger:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], bus: MessageBus) -> None:
        self._sessions = sessions
        self.relay = OutboxRelay(sessions=sessions, bus=bus)
        self._positions = PositionsCache()

    async def apply_batch(self, events: Sequence[Event]) -> None:
        try:
            await self._apply(events)
        except IntegrityError:
            # Another ledger applied some of these between our dedupe and our insert (a rebalance
            # handed it the same records): once more, and the dedupe now skips them.
            log.info("batch raced another ledger; applying what is left", extra={"events": len(events)})
            await self._apply(events)
        await self.relay.publish_pending()

    async def _apply(self, events: Sequence[Event]) -> None:
        async with self._sessions.begin() as session:
            store = LedgerStore(session, consumer=CONSUMER)
            fresh = await store.new_events(events)
            if not fresh:
                return
            accounts = await store.accounts({e.account_id for e in fresh}, self._positions)
            runs = await store.runs(fresh)
            plan = plan_batch(fresh, accounts, runs, consumer=CONSUMER)
            await store.write(plan)
        for account in accounts.values():
            if account.current_snapshot_id is not None:
                self._positions.remember(account.id, account.current_snapshot_id, account.positions)
