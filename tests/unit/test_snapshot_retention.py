"""Retention of old snapshot rows: the unchanged ones go, and as-of reads say what they said."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from services.ledger.retention import prune_snapshots
from shared.bus.memory import InMemoryBus
from shared.db.tables import Snapshot
from shared.events import Holding, HoldingSnapshot, utc_now
from tests.support.accounts import create_account
from tests.support.positions import positions_of

T0 = utc_now() - timedelta(days=30)


def _snapshot(account_id: uuid.UUID, minutes: int, quantity: str, price: str) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=T0 + timedelta(minutes=minutes),
        holdings=(
            Holding(
                symbol="TCS",
                exchange="NSE",
                currency="INR",
                quantity=Decimal(quantity),
                average_price=Decimal(100),
                last_price=Decimal(price),
            ),
        ),
    )


async def _quantities_at(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> list[Decimal]:
    async with sessions() as session:
        return [
            sum(
                (
                    p.quantity
                    for p in await positions_of(session, account_id, as_of=T0 + timedelta(minutes=m))
                ),
                Decimal(0),
            )
            for m in range(0, 75, 5)
        ]


async def test_unchanged_snapshots_past_the_retention_go_and_as_of_reads_keep_their_positions(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    sent = [
        _snapshot(account.id, 0, "10", "100"),
        _snapshot(account.id, 15, "10", "101"),  # unchanged: pruned
        _snapshot(account.id, 30, "10", "102"),  # unchanged: pruned
        _snapshot(account.id, 45, "11", "103"),  # changed: kept
        _snapshot(account.id, 60, "11", "104"),  # unchanged, but the current one: kept
    ]
    await Ledger(sessions=sessions, bus=bus).apply_batch(sent)
    before = await _quantities_at(sessions, account.id)

    pruned = await prune_snapshots(sessions, taken_before=utc_now())

    assert pruned == 2
    async with sessions() as session:
        left = set(await session.scalars(select(Snapshot.id).where(Snapshot.account_id == account.id)))
    assert left == {sent[0].event_id, sent[3].event_id, sent[4].event_id}
    assert await _quantities_at(sessions, account.id) == before
    assert await prune_snapshots(sessions, taken_before=utc_now()) == 0


async def test_the_last_unchanged_snapshot_before_a_pause_stays_and_keeps_the_days_closing_price(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    day = 24 * 60
    sent = [
        _snapshot(account.id, 0, "10", "100"),  # the first: kept
        _snapshot(account.id, 15, "10", "101"),  # unchanged: pruned
        _snapshot(account.id, 30, "10", "102"),  # unchanged, but the day's last: kept
        _snapshot(account.id, day, "10", "103"),  # unchanged: pruned
        _snapshot(account.id, day + 15, "11", "104"),  # changed: kept
        _snapshot(account.id, day + 30, "11", "105"),  # the current one: kept
    ]
    await Ledger(sessions=sessions, bus=bus).apply_batch(sent)

    assert await prune_snapshots(sessions, taken_before=utc_now()) == 2

    async with sessions() as session:
        left = set(await session.scalars(select(Snapshot.id).where(Snapshot.account_id == account.id)))
        [evening] = await positions_of(session, account.id, as_of=T0 + timedelta(hours=12))
    assert left == {sent[0].event_id, sent[2].event_id, sent[4].event_id, sent[5].event_id}
    assert (evening.quantity, evening.last_price) == (Decimal(10), Decimal(102))
