"""The transactional outbox: HoldingsChanged is committed with the change it announces, then relayed.

Right after a batch commits, its messages are relayed from memory (`publish_committed`); a sweep
every second relays whatever is left (`publish_pending`). A crash between the commit and the
publish leaves the message in the outbox, and the sweep publishes it when the ledger runs again.
A message's delete commits only once Kafka has acknowledged it. The one moment left, a crash after
the acknowledgement but before the delete, would publish it twice, so a message that has waited in
the outbox longer than a relay pass takes (an orphan of a crashed or failed pass) is first looked
for in the topic's tail, and skipped if it is already there.
Only the relay's last batch can be in that state, so the tail to read is one batch per partition.

The pass that deletes a message also marks the snapshot it announces `announced_at` (one statement per
pass), in the same transaction: what `GET /v1/admin/runs/{id}/trace` shows as "announced".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared.bus.port import BusUnavailable, MessageBus, OutgoingMessage
from shared.db.errors import is_transient_db_error
from shared.db.sets import among
from shared.db.tables import OutboxMessage, Snapshot
from shared.events import utc_now
from shared.test_hooks import LEDGER_AFTER_RELAY_ACK, crash_point

log = logging.getLogger(__name__)

# Older than this, a pending message may be an orphan whose publish was acknowledged.
ORPHAN_AFTER = timedelta(seconds=5)
# The sweep leaves a batch's messages this long to the batch itself, which relays them from memory.
SWEEP_AFTER = timedelta(seconds=2)

# id, event_id, topic, key, payload, snapshot_id
_Pending = Row[int, uuid.UUID, str, str, str, uuid.UUID | None]


class OutboxRelay:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], bus: MessageBus, batch: int = 1000
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._batch = batch
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"
        # Rows created before this moment may have been published by a pass that died: a previous
        # process's (before this relay started) or one of ours that failed (moved on each failure).
        self._doubt_before = utc_now()
        self._relaying: asyncio.Task[None] | None = None

    def _among(self, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
        return among(column, values, postgres=self._postgres)

    async def hand_over(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Relay a just-committed batch's messages while the ledger writes the next batch. One batch
        at a time: this first waits for the previous one, so messages keep their order and what
        waits in memory stays bounded. Should the publish fail, the sweep publishes them."""
        await self.settle()
        self._relaying = asyncio.create_task(self._publish_committed_or_leave(rows))

    async def settle(self) -> None:
        """Wait until every batch handed over is relayed (or left to the sweep)."""
        if self._relaying is not None:
            await self._relaying
            self._relaying = None

    async def _publish_committed_or_leave(self, rows: Sequence[tuple[Any, ...]]) -> None:
        try:
            await self.publish_committed(rows)
        except Exception as exc:
            log.warning("relaying a batch failed; the sweep will", extra={"error": repr(exc)})

    async def publish_committed(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Relay outbox rows a batch has just committed, from memory (`BatchPlan.OUTBOX_COLUMNS`).

        Deleting them first locks them, so a sweep running meanwhile skips them; what a sweep took
        first is not returned by the delete, and is left to that sweep."""
        if not rows:
            return
        async with self._sessions.begin() as session:
            taken = set(
                await session.scalars(
                    delete(OutboxMessage)
                    .where(self._among(OutboxMessage.event_id, [row[0] for row in rows]))
                    .returning(OutboxMessage.event_id)
                )
            )
            await self._publish(
                [
                    OutgoingMessage(topic, key, payload.encode())
                    for event_id, topic, key, payload, _, _ in rows
                    if event_id in taken
                ]
            )
            await self._mark_announced(session, [row[5] for row in rows if row[0] in taken])

    async def _mark_announced(self, session: AsyncSession, snapshot_ids: list[uuid.UUID | None]) -> None:
        announced = [i for i in snapshot_ids if i is not None]
        if announced:
            await session.execute(
                update(Snapshot)
                .where(self._among(Snapshot.id, announced))
                .values(announced_at=utc_now())
                .execution_options(synchronize_session=False)
            )

    async def _publish(self, messages: list[OutgoingMessage]) -> None:
        try:
            await self._bus.publish(messages)
        except BaseException:
            self._doubt_before = utc_now()  # some of these may have reached Kafka
            raise
        crash_point(LEDGER_AFTER_RELAY_ACK)

    async def publish_pending(self, *, older_than: timedelta = timedelta(0)) -> int:
        """Publish what has waited in the outbox longer than `older_than`, oldest first; return how
        many messages."""
        total = 0
        while True:
            async with self._sessions.begin() as session:
                rows = (
                    await session.execute(
                        select(
                            OutboxMessage.id,
                            OutboxMessage.event_id,
                            OutboxMessage.topic,
                            OutboxMessage.message_key,
                            OutboxMessage.payload,
                            OutboxMessage.snapshot_id,
                        )
                        .where(OutboxMessage.created_at <= utc_now() - older_than)
                        .order_by(OutboxMessage.id)
                        .limit(self._batch)
                        # Several passes (and ledgers) relay at once: each takes rows no other holds.
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                if not rows:
                    return total
                already = await self._already_published(session, rows)
                fresh = [
                    OutgoingMessage(topic, key, payload.encode())
                    for _, event_id, topic, key, payload, _ in rows
                    if event_id not in already
                ]
                await self._publish(fresh)
                await session.execute(
                    delete(OutboxMessage).where(self._among(OutboxMessage.id, [row[0] for row in rows]))
                )
                # Those a previous pass published too: they were announced, only not marked.
                await self._mark_announced(session, [row[5] for row in rows])
            total += len(fresh)

    async def _already_published(self, session: AsyncSession, rows: Sequence[_Pending]) -> set[uuid.UUID]:
        # Also suspect: rows of another ledger that died; they have been waiting a while.
        doubt_before = max(self._doubt_before, utc_now() - ORPHAN_AFTER)
        suspects = set(
            await session.scalars(
                select(OutboxMessage.event_id).where(
                    self._among(OutboxMessage.id, [row[0] for row in rows]),
                    OutboxMessage.created_at < doubt_before,
                )
            )
        )
        if not suspects:
            return set()
        published: set[uuid.UUID] = set()
        for topic in {row[2] for row in rows}:
            # A dead process may have had two passes in flight (after a batch, and the sweep).
            for record in await self._bus.recent(topic, per_partition=2 * self._batch):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    published.add(uuid.UUID(json.loads(record.value)["event_id"]))
        found = suspects & published
        if found:
            log.info(
                "outbox: skipping messages a previous pass already published", extra={"count": len(found)}
            )
        return found

    async def sample_backlog(self) -> None:
        """Set the outbox gauges: messages waiting, and how long the oldest has waited."""
        async with self._sessions() as session:
            count, oldest = (
                await session.execute(select(func.count(), func.min(OutboxMessage.created_at)))
            ).one()
        OUTBOX_BACKLOG.set(count)
        OUTBOX_OLDEST_AGE.set(0.0 if oldest is None else max(0.0, (utc_now() - oldest).total_seconds()))

    async def run(self, stop: asyncio.Event, *, interval_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        """Sweep now and then for messages a crashed or interrupted relay left behind. A database
        or bus outage is waited out, sweeping less often while it lasts; a bug still ends the run."""
        wait_s = interval_s
        while not stop.is_set():
            try:
                await self.publish_pending(older_than=SWEEP_AFTER)
                await self.sample_backlog()
                wait_s = interval_s
            except Exception as exc:
                if not (isinstance(exc, BusUnavailable) or is_transient_db_error(exc)):
                    raise
                wait_s = min(wait_s * 2, max_backoff_s)
                log.warning(
                    "outbox relay failed; trying again", extra={"error": repr(exc), "retry_in_s": wait_s}
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait_s)
