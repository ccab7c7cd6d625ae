"""The transactional outbox: HoldingsChanged is committed with the change it announces, then relayed.

A crash between the commit and the publish leaves the message in the outbox; the relay publishes it
when the ledger runs again. A message is deleted only after Kafka acknowledged it, so at worst a
crash in that instant publishes it twice with the same event id, which subscribers can dedupe on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus.port import MessageBus, OutgoingMessage
from shared.db.tables import OutboxMessage

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], bus: MessageBus, batch: int = 1000
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._batch = batch

    async def publish_pending(self) -> int:
        """Publish everything waiting in the outbox, oldest first; return how many messages."""
        total = 0
        while True:
            async with self._sessions.begin() as session:
                rows = (
                    await session.execute(
                        select(
                            OutboxMessage.id,
                            OutboxMessage.topic,
                            OutboxMessage.message_key,
                            OutboxMessage.payload,
                        )
                        .order_by(OutboxMessage.id)
                        .limit(self._batch)
                        # Several ledgers may relay at once: each takes rows the others do not hold.
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                if not rows:
                    return total
                await self._bus.publish(
                    [OutgoingMessage(topic, key, payload.encode()) for _, topic, key, payload in rows]
                )
                await session.execute(
                    delete(OutboxMessage).where(OutboxMessage.id.in_([row[0] for row in rows]))
                )
            total += len(rows)

    async def run(self, stop: asyncio.Event, *, interval_s: float = 1.0) -> None:
        """Sweep now and then for messages a crashed or interrupted relay left behind."""
        while not stop.is_set():
            try:
                await self.publish_pending()
            except (OSError, TimeoutError) as exc:
                log.warning("outbox relay failed; trying again", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
