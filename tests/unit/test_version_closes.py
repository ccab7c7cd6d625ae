"""Closing versions the ledger must keep or write: a replay correcting the current snapshot keeps the
closes of its time, and a current snapshot that keeps its own holdings (accepted after being held,
corrected) does not leave the versions' other open positions open forever."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from shared.bus.memory import InMemoryBus
from shared.db.tables import PositionVersion
from shared.events import Holding, HoldingSnapshot, SnapshotAccepted
from tests.support.accounts import create_account
from tests.support.positions import positions_of
from tests.unit.test_ledger import T0, _holding, _snapshot


async def _positions(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID, *, at_min: float | None = None
) -> dict[str, Decimal]:
    as_of = None if at_min is None else T0 + timedelta(minutes=at_min)
    async with sessions() as session:
        return {p.symbol: p.quantity for p in await positions_of(session, account_id, as_of=as_of)}


def _correction(replaced: HoldingSnapshot, *holdings: Holding) -> HoldingSnapshot:
    return replaced.model_copy(
        update={"event_id": uuid.uuid4(), "holdings": holdings, "replaces": replaced.event_id}
    )


async def test_a_correction_of_the_current_snapshot_keeps_the_closes_of_its_time(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    current = _snapshot(account.id, _holding("TCS", "10"), at_min=1)  # closes INFY
    await Ledger(sessions=sessions, bus=bus).apply_batch(
        [_snapshot(account.id, _holding("TCS", "10"), _holding("INFY", "5")), current]
    )

    await Ledger(sessions=sessions, bus=bus).apply_batch([_correction(current, _holding("TCS", "11"))])

    assert await _positions(sessions, account.id) == {"TCS": 11}
    assert await _positions(sessions, account.id, at_min=1.5) == {"TCS": 11}
    await Ledger(sessions=sessions, bus=bus).apply_batch(
        [_snapshot(account.id, _holding("TCS", "11"), at_min=2)]
    )
    assert await _positions(sessions, account.id) == {"TCS": 11}, "INFY stays closed"


async def test_the_sync_after_an_accepted_snapshot_closes_every_position_the_versions_hold_open(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    """The versions hold a position (E) that the current snapshot, which keeps its own holdings, does
    not list: as a replay correcting it left them before it kept the closes of its time."""
    account = await create_account(sessions)
    five = [_holding(s, "1") for s in "ABCDE"]
    current = _snapshot(account.id, *five[:4], at_min=1)  # closes E
    await Ledger(sessions=sessions, bus=bus).apply_batch([_snapshot(account.id, *five), current])
    await Ledger(sessions=sessions, bus=bus).apply_batch([_correction(current, *five[:4])])
    async with sessions.begin() as session:
        await session.execute(
            delete(PositionVersion).where(
                PositionVersion.account_id == account.id,
                PositionVersion.symbol == "E",
                PositionVersion.valid_from == current.taken_at,
            )
        )
    held = _snapshot(account.id, five[0], at_min=5)  # 1 of 4 kept: held
    await Ledger(sessions=sessions, bus=bus).apply_batch([held])
    accepted = SnapshotAccepted(account_id=account.id, snapshot_id=held.event_id, accepted_by=uuid.uuid4())
    await Ledger(sessions=sessions, bus=bus).apply_batch([accepted])

    await Ledger(sessions=sessions, bus=bus).apply_batch(
        [_snapshot(account.id, five[0], _holding("F", "1"), at_min=10)]
    )

    assert await _positions(sessions, account.id) == {"A": 1, "F": 1}
    assert await _positions(sessions, account.id, at_min=11) == {"A": 1, "F": 1}
