"""The ledger's consume loop on real Kafka and real Postgres: redelivery changes nothing, bad input
goes to the dead-letter topic, and the loop carries on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from services.ledger.main import run_ledger
from services.ledger.plan import BatchPlan
from services.ledger.store import Encoded
from shared import topics
from shared.bus.consumer import Write
from shared.bus.dead_letters import DeadLetter
from shared.bus.kafka import KafkaBus
from shared.bus.port import OutgoingMessage, Record
from shared.db.tables import Snapshot
from shared.events import Event, Holding, HoldingSnapshot, utc_now
from tests.support.accounts import create_account
from tests.support.positions import positions_of
from tests.support.waiting import eventually


def _snapshot(account_id: uuid.UUID, quantity: int) -> HoldingSnapshot:
    holding = Holding(
        symbol="INFY",
        exchange="NSE",
        currency="INR",
        quantity=Decimal(quantity),
        average_price=Decimal("1500.25"),
    )
    return HoldingSnapshot(
        account_id=account_id, request_id=uuid.uuid4(), broker="sim", taken_at=utc_now(), holdings=(holding,)
    )


async def _count(sessions: async_sessionmaker[AsyncSession], table: type[Snapshot]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(table)) or 0


class CrashAfterApply(Ledger):
    """A ledger that dies after its database commit and before the consumer commits the offsets."""

    def __init__(self, *, crashed: asyncio.Event, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.crashed = crashed

    async def write(self, plan: BatchPlan, encoded: Encoded) -> None:
        await super().write(plan, encoded)
        self.crashed.set()
        await asyncio.Event().wait()  # hang until the task is cancelled: the offsets stay uncommitted


class CountingLedger(Ledger):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.received: list[uuid.UUID] = []

    async def prepare(self, events: Sequence[Event]) -> Write:
        self.received.extend(e.event_id for e in events)
        return await super().prepare(events)


async def test_a_batch_redelivered_after_a_crash_is_applied_once(
    kafka_bus: KafkaBus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    accounts = [await create_account(sessions) for _ in range(5)]
    sent = [_snapshot(a.id, q) for a in accounts for q in (10, 20)]
    await kafka_bus.publish([OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, s) for s in sent])

    crashed = asyncio.Event()
    doomed = asyncio.create_task(
        run_ledger(
            CrashAfterApply(sessions=sessions, bus=kafka_bus, crashed=crashed), kafka_bus, asyncio.Event()
        )
    )
    await asyncio.wait_for(crashed.wait(), 60)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    applied_before_crash = await _count(sessions, Snapshot)
    assert applied_before_crash > 0

    stop = asyncio.Event()
    heir = CountingLedger(sessions=sessions, bus=kafka_bus)
    survivor = asyncio.create_task(run_ledger(heir, kafka_bus, stop))

    async def all_handled() -> bool:
        return len(heir.received) >= len(sent) and await _count(sessions, Snapshot) >= len(sent)

    await eventually(all_handled, timeout_s=60, what=f"{len(sent)} snapshots handled by the restarted ledger")
    stop.set()
    await survivor

    # Nothing was committed before the crash, so the heir saw every snapshot again, yet each is stored once.
    assert sorted(heir.received) == sorted(s.event_id for s in sent)
    assert await _count(sessions, Snapshot) == len(sent)
    async with sessions() as session:
        quantities = {p.account_id: p.quantity for a in accounts for p in await positions_of(session, a.id)}
    assert quantities == {a.id: Decimal(20) for a in accounts}


async def test_a_malformed_snapshot_goes_to_the_dlq_and_the_ledger_carries_on(
    kafka_bus: KafkaBus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = await create_account(sessions)
    good = _snapshot(account.id, 7)
    await kafka_bus.publish(
        [
            OutgoingMessage(topics.HOLDINGS_SNAPSHOTS, str(account.id), b'{"account_id": "not-a-uuid"}'),
            OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, good),
        ]
    )
    stop = asyncio.Event()
    ledger = asyncio.create_task(run_ledger(Ledger(sessions=sessions, bus=kafka_bus), kafka_bus, stop))
    watcher = await kafka_bus.subscribe([topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)], group="dlq-watcher")
    letters: list[Record] = []

    async def dead_lettered_and_applied() -> bool:
        letters.extend(await watcher.fetch(max_records=10, timeout_s=0.5))
        return bool(letters) and await _count(sessions, Snapshot) == 1

    await eventually(
        dead_lettered_and_applied, timeout_s=60, what="one DLQ entry and the good snapshot applied"
    )
    stop.set()
    await ledger
    await watcher.close()

    [letter] = [DeadLetter.model_validate_json(r.value) for r in letters]
    assert letter.source_topic == topics.HOLDINGS_SNAPSHOTS
    assert "account_id" in letter.error and "not a valid HoldingSnapshot" in letter.error
    assert letter.original_value() == b'{"account_id": "not-a-uuid"}'
