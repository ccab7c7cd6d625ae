"""`holdings.current`: the ledger writes each account's complete positions with each change, through
the outbox; read from the start (compacted) it gives every account's latest positions."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.events import CurrentHoldings, Holding, HoldingsChanged, HoldingSnapshot, decode_event, utc_now
from tests.support.accounts import create_account

T0 = utc_now() - timedelta(hours=1)


def _holding(symbol: str, quantity: str, last: str | None = None) -> Holding:
    return Holding(
        symbol=symbol,
        exchange="NSE",
        currency="INR",
        quantity=Decimal(quantity),
        average_price=Decimal("100.5"),
        last_price=None if last is None else Decimal(last),
    )


def _snapshot(account_id: uuid.UUID, *holdings: Holding, at_min: int) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=T0 + timedelta(minutes=at_min),
        holdings=holdings,
    )


def _current(bus: InMemoryBus, account_id: uuid.UUID) -> list[CurrentHoldings]:
    return [
        decode_event(CurrentHoldings, r.value)
        for r in bus.records(topics.HOLDINGS_CURRENT)
        if r.key == str(account_id)
    ]


def _quantities(current: CurrentHoldings) -> dict[str, Decimal]:
    return {p.symbol: p.quantity for p in current.positions}


async def test_each_change_writes_the_accounts_complete_positions_with_its_snapshot_and_time(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    first = _snapshot(account.id, _holding("TCS", "10"), _holding("INFY", "5", last="1500"), at_min=1)
    second = _snapshot(account.id, _holding("TCS", "12"), _holding("INFY", "5", last="1510"), at_min=2)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([first])
    await ledger.apply_batch([second])

    written = _current(bus, account.id)
    changes = [decode_event(HoldingsChanged, r.value) for r in bus.records(topics.HOLDINGS_CHANGES)]
    assert [(c.snapshot_id, c.as_of) for c in written] == [(c.snapshot_id, c.taken_at) for c in changes]
    latest = written[-1]
    # Complete, not a diff: INFY did not move and is there, with the snapshot's prices.
    assert _quantities(latest) == {"TCS": 12, "INFY": 5}
    assert {p.symbol: p.last_price for p in latest.positions} == {"TCS": None, "INFY": Decimal("1510")}
    assert latest.portfolio_id == account.portfolio_id
    assert set(bus.compacted(topics.HOLDINGS_CURRENT)) == {str(account.id)}
    for record in bus.records(topics.HOLDINGS_CURRENT):  # written as the model itself writes it
        assert CurrentHoldings.model_validate_json(record.value).model_dump_json().encode() == record.value


async def test_a_snapshot_that_changes_nothing_or_comes_late_writes_nothing(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "10"), at_min=2)])
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "10"), at_min=3)])  # same quantities
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "99"), at_min=1)])  # older: history only

    assert [_quantities(c) for c in _current(bus, account.id)] == [{"TCS": 10}]


async def test_several_changes_in_one_batch_each_write_their_positions_in_order(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    accounts = [await create_account(sessions) for _ in range(3)]
    batch = [
        _snapshot(a.id, _holding("TCS", str(n + i)), at_min=n)
        for n in (1, 2, 3)
        for i, a in enumerate(accounts)
    ]
    await Ledger(sessions=sessions, bus=bus).apply_batch(batch)

    for i, account in enumerate(accounts):
        assert [_quantities(c)["TCS"] for c in _current(bus, account.id)] == [1 + i, 2 + i, 3 + i]
    latest = {
        key: decode_event(CurrentHoldings, r.value)
        for key, r in bus.compacted(topics.HOLDINGS_CURRENT).items()
    }
    assert {key: _quantities(c) for key, c in latest.items()} == {
        str(a.id): {"TCS": 3 + i} for i, a in enumerate(accounts)
    }


async def test_a_correction_of_the_current_snapshot_writes_the_corrected_positions(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    stored = _snapshot(account.id, _holding("TCS", "10"), at_min=1)
    await ledger.apply_batch([stored])
    correction = stored.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "holdings": (replace(_holding("TCS", "10"), isin="INE467B01029"), _holding("WIPRO", "3")),
            "replaces": stored.event_id,
        }
    )
    await ledger.apply_batch([correction])

    before, after = _current(bus, account.id)
    assert (
        (after.snapshot_id, after.as_of)
        == (before.snapshot_id, before.as_of)
        == (stored.event_id, stored.taken_at)
    )
    assert _quantities(after) == {"TCS": 10, "WIPRO": 3}
