"""The transactional outbox: HoldingsChanged is committed with the change it announces, then relayed
(and with it the account's CurrentHoldings for `holdings.current`, under the same key).

What `holdings.changes` (and so `holdings.current`) guarantees (docs/events.md, "Delivery guarantee"):

- **At least once.** A message leaves the outbox only in the transaction that deletes it, which
  commits only after Kafka acknowledged it (acks=all). A crash anywhere leaves it to be published.
- **Per account, in commit order.** One account's rows are committed in outbox-id order (the
  ledger's fence on the account serialises its writes), and a relay publishes a row only when no
  older row of its account is left in the outbox, its own pass's rows aside: an older row still
  waiting, or held by another pass, holds the account's newer ones back.
- **A repeat is rare, and comes at once.** A publish may land and its delete not commit (a crash,
  a lost connection). Every row a sweep takes may be such a one, so the sweep first reads the topic
  back to the oldest taken row's time (each record carries its row's `created_at` as its Kafka
  timestamp) and skips what it finds there. What remains is a record Kafka appended without
  acknowledging and made readable only after that check; then the change goes out twice, the
  second time right after the first for its account (its next change waits for the row's delete).
  Subscribers drop a change whose `event_id` they have seen.

Two paths relay. Right after a batch commits, its rows are relayed from memory (`publish_committed`)
without looking on the topic: nobody has published them yet, unless a sweep took them first, and a
sweep commits `in_doubt` on the rows it takes before it publishes, so the batch's relay leaves those
(and rows a sweep holds locked) alone. Every second a sweep (`publish_pending`) relays whatever is
left: marked in doubt, taken under a row lock (SKIP LOCKED: several ledgers sweep at once), checked
against the topic, published, deleted.

The pass that deletes a message also marks the snapshot it announces `announced_at` (one statement per
pass), in the same transaction: what `GET /v1/admin/runs/{id}/trace` shows as "announced".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, Row, Select, delete, false, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from services.ledger.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared.bus.port import BusUnavailable, MessageBus, OutgoingMessage
from shared.db.errors import is_transient_db_error
from shared.db.sets import among
from shared.db.tables import OutboxMessage, Snapshot
from shared.events import utc_now
from shared.test_hooks import LEDGER_AFTER_RELAY_ACK, crash_point

log = logging.getLogger(__name__)

# The sweep leaves a batch's messages this long to the batch itself, which relays them from memory.
# Only for speed: whatever a sweep takes, it checks on the topic first.
SWEEP_AFTER = timedelta(seconds=2)


class _Row(NamedTuple):
    """An outbox row as a relay pass holds it."""

    id: int
    event_id: uuid.UUID
    topic: str
    key: str
    payload: str
    created_at: datetime
    snapshot_id: uuid.UUID | None

    def message(self) -> OutgoingMessage:
        # Its Kafka timestamp is when it was committed: a sweep finds it again by that time.
        return OutgoingMessage(self.topic, self.key, self.payload.encode(), timestamp=self.created_at)


class OutboxRelay:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], bus: MessageBus, batch: int = 1000
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._batch = batch
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"
        self._relaying: asyncio.Task[None] | None = None
        # Event ids of batches handed over and not yet relayed: this process's sweep leaves them to
        # the batch (taking them would only cost a look on the topic, under load when the batch's
        # relay waits behind the previous one).
        self._in_hand: set[uuid.UUID] = set()
        # SQLite (the embedded mode, one process) has no row locks: there, passes take turns.
        self._turns = contextlib.nullcontext() if self._postgres else asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _pass(self) -> AsyncIterator[AsyncSession]:
        """One transaction of a relay pass: what it locks, no other pass takes until it ends."""
        async with self._turns, self._sessions.begin() as session:
            yield session

    def _among(self, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
        return among(column, values, postgres=self._postgres)

    async def hand_over(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Relay a just-committed batch's messages while the ledger writes the next batch. One batch
        at a time: this first waits for the previous one, so what waits in memory stays bounded.
        Should the publish fail, the sweep publishes them."""
        handed = {row[0] for row in rows}
        self._in_hand |= handed
        await self.settle()
        self._relaying = asyncio.create_task(self._publish_committed_or_leave(rows, handed))

    async def settle(self) -> None:
        """Wait until every batch handed over is relayed (or left to the sweep)."""
        if self._relaying is not None:
            await self._relaying
            self._relaying = None

    async def _publish_committed_or_leave(
        self, rows: Sequence[tuple[Any, ...]], handed: set[uuid.UUID]
    ) -> None:
        try:
            await self.publish_committed(rows)
        except Exception as exc:
            log.warning("relaying a batch failed; the sweep will", extra={"error": repr(exc)})
        finally:
            self._in_hand -= handed

    async def publish_committed(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Relay outbox rows a batch has just committed, from memory (`BatchPlan.OUTBOX_COLUMNS`),
        without looking on the topic: only rows no sweep has taken, so nobody published them yet.

        Left to the sweep: rows a sweep holds (skipped, not waited for: should its commit fail, a
        publish of ours would repeat its publish), rows a sweep marked in doubt, and rows of an
        account with an older row still waiting (a crash's leftovers go out first)."""
        if not rows:
            return
        by_event = {row[0]: row for row in rows}
        async with self._pass() as session:
            held = await self._take_in_account_order(
                session,
                select(OutboxMessage.id, OutboxMessage.event_id, OutboxMessage.message_key).where(
                    self._among(OutboxMessage.event_id, list(by_event)), OutboxMessage.in_doubt == false()
                ),
            )
            # Straight from the batch's rows to messages: no object of our own per row in between.
            taken = [(row_id, by_event[event_id]) for row_id, event_id, _ in held]
            await self._publish(
                [
                    # Its Kafka timestamp is when it was committed: a sweep finds it again by that time.
                    OutgoingMessage(topic, key, payload.encode(), created_at)
                    for _, (_, topic, key, payload, created_at, _) in taken
                ]
            )
            await self._delete(
                session, [row_id for row_id, _ in taken], [row[5] for _, row in taken if row[5] is not None]
            )

    async def publish_pending(self, *, older_than: timedelta = timedelta(0)) -> int:
        """Publish what has waited in the outbox longer than `older_than`, oldest first, each
        account's rows in order; skip what the topic already has. Return how many were published."""
        total = 0
        while True:
            await self._mark_in_doubt(older_than)
            async with self._pass() as session:
                relayed = [
                    _Row(*row)
                    for row in await self._take_in_account_order(
                        session,
                        select(
                            OutboxMessage.id,
                            OutboxMessage.event_id,
                            OutboxMessage.topic,
                            OutboxMessage.message_key,
                            OutboxMessage.payload,
                            OutboxMessage.created_at,
                            OutboxMessage.snapshot_id,
                        ).where(OutboxMessage.in_doubt == true()),
                        limit=self._batch,
                    )
                ]
                if not relayed:
                    return total  # nothing, or only rows waiting on an older one another pass holds
                already = await self._already_published(relayed)
                fresh = [row for row in relayed if row.event_id not in already]
                await self._publish([row.message() for row in fresh])
                # Those a previous pass published too: they were announced, only not deleted.
                announced = [r.snapshot_id for r in relayed if r.snapshot_id is not None]
                await self._delete(session, [r.id for r in relayed], announced)
            total += len(fresh)

    async def _mark_in_doubt(self, older_than: timedelta) -> None:
        """Commit `in_doubt` on the oldest rows waiting longer than `older_than` that no pass holds,
        before any sweep publishes them: from then on the batch's own relay leaves them alone, even
        should the sweep's publish land and its delete fail."""
        async with self._pass() as session:
            waiting = [OutboxMessage.in_doubt == false(), OutboxMessage.created_at <= utc_now() - older_than]
            if self._in_hand:
                waiting.append(~self._among(OutboxMessage.event_id, self._in_hand))
            oldest = (
                select(OutboxMessage.id)
                .where(*waiting)
                .order_by(OutboxMessage.id)
                .limit(self._batch)
                .with_for_update(skip_locked=True)
                # Chosen once. As a plain subquery of the UPDATE, Postgres could run it again for
                # every row it looked at (a nested loop, on a young table's statistics): minutes of
                # CPU while the ledger's stop waited (bench/README.md, "Ledger", the stall).
                .cte("oldest")
                .prefix_with("MATERIALIZED", dialect="postgresql")
            )
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(select(oldest.c.id)))
                .values(in_doubt=True)
                .execution_options(synchronize_session=False)
            )

    async def _take_in_account_order(
        self, session: AsyncSession, rows: Select[*tuple[Any, ...]], *, limit: int | None = None
    ) -> list[Row[*tuple[Any, ...]]]:
        """Lock the oldest `limit` of `rows` (which select `id` and `message_key` among their
        columns) that no other pass holds (SKIP LOCKED: several passes, and ledgers, relay at once),
        and return those this pass may publish now, in id order: per account, those before the first
        older row of the account it did not take (still waiting, or held by another pass).

        One statement, one round trip. Its look at the older rows is a plain read: it sees every
        row committed when the statement began, those other passes hold locked or have deleted
        without committing yet included, so it holds back rather than overtakes. Every older row of
        an account whose row it took is among them: one account's rows commit in id order (see the
        module's docstring)."""
        taken = rows.order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True).cte("taken")
        older = aliased(OutboxMessage)
        waiting_before = (
            select(older.id)
            .where(
                older.message_key == taken.c.message_key,
                older.id < taken.c.id,
                older.id.not_in(select(taken.c.id).correlate(None)),
            )
            .exists()
        )
        return list(await session.execute(select(taken).where(~waiting_before).order_by(taken.c.id)))

    async def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if messages:
            await self._bus.publish(messages)
            crash_point(LEDGER_AFTER_RELAY_ACK)  # acknowledged, not yet deleted: only tests arm it

    async def _delete(self, session: AsyncSession, ids: list[int], announced: list[uuid.UUID]) -> None:
        """Delete relayed rows (`ids`) and mark the snapshots they announce announced, in the pass's
        transaction: it commits only after Kafka acknowledged them."""
        if not ids:
            return
        relayed = delete(OutboxMessage).where(self._among(OutboxMessage.id, ids))
        if not announced:
            await session.execute(relayed)
            return
        mark = (
            update(Snapshot)
            .where(self._among(Snapshot.id, announced))
            .values(announced_at=utc_now())
            .execution_options(synchronize_session=False)
        )
        if self._postgres:  # one round trip: the delete rides in the update as a CTE
            await session.execute(mark.add_cte(relayed.cte("relayed")))
        else:
            await session.execute(relayed)
            await session.execute(mark)

    async def _already_published(self, rows: Sequence[_Row]) -> set[uuid.UUID]:
        """Which of `rows` are on their topic already: an earlier pass's publish landed and its delete
        did not commit. Read back to the oldest row's time, which every record of these rows is
        stamped with or after, however many records came since."""
        since = min(row.created_at for row in rows)
        wanted = {row.event_id for row in rows}
        found: set[uuid.UUID] = set()
        for topic in {row.topic for row in rows}:
            async with contextlib.aclosing(self._bus.published_since(topic, since)) as chunks:
                async for chunk in chunks:
                    found.update(i for i in map(_event_id, (r.value for r in chunk)) if i in wanted)
        if found:
            log.info(
                "outbox: skipping messages a previous pass already published", extra={"count": len(found)}
            )
        return found

    async def sample_backlog(self) -> datetime | None:
        """Set the outbox gauges: messages waiting, and how long the oldest has waited. Return when
        the oldest was written (None: the outbox is empty)."""
        async with self._sessions() as session:
            count, oldest = (
                await session.execute(select(func.count(), func.min(OutboxMessage.created_at)))
            ).one()
        OUTBOX_BACKLOG.set(count)
        OUTBOX_OLDEST_AGE.set(0.0 if oldest is None else max(0.0, (utc_now() - oldest).total_seconds()))
        return cast("datetime | None", oldest)

    async def run(self, stop: asyncio.Event, *, interval_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        """Sweep now and then for messages a crashed or interrupted relay left behind. A database
        or bus outage is waited out, sweeping less often while it lasts; a bug still ends the run."""
        wait_s = interval_s
        while not stop.is_set():
            try:
                # A sweep costs six round trips to Postgres, and under load every second finds only
                # rows the batches are relaying: it runs only when a row has waited long enough to
                # be its to take (every row a sweep marked in doubt has, too).
                oldest = await self.sample_backlog()
                due = oldest is not None and oldest <= utc_now() - SWEEP_AFTER
                if due and await self.publish_pending(older_than=SWEEP_AFTER):
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


def _event_id(value: bytes) -> uuid.UUID | None:
    """The event id a record carries; None for one that carries none (not ours to recognise)."""
    try:
        return uuid.UUID(json.loads(value)["event_id"])
    except (ValueError, KeyError, TypeError):
        return None
