from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger, UnknownAccount
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.tables import BrokerAccount, Position, Snapshot, SnapshotHolding, SyncRun
from shared.events import (
    FailureKind,
    Holding,
    HoldingsChanged,
    HoldingSnapshot,
    SyncFailed,
    decode_event,
    utc_now,
)
from tests.support.accounts import create_account


def _holding(symbol: str, quantity: str) -> Holding:
    return Holding(
        symbol=symbol,
        exchange="NSE",
        currency="INR",
        quantity=Decimal(quantity),
        average_price=Decimal("100.5"),
    )


def _snapshot(account_id: uuid.UUID, *holdings: Holding, age_s: int = 0) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=utc_now() - timedelta(seconds=age_s),
        holdings=holdings,
    )


async def _positions(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> dict[str, Decimal]:
    async with sessions() as session:
        rows = await session.scalars(select(Position).where(Position.account_id == account_id))
        return {p.symbol: p.quantity for p in rows}


async def test_snapshot_becomes_current_positions_history_and_a_change_event(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    snapshot = _snapshot(account.id, _holding("TCS", "10"), _holding("INFY", "0.12345678"))
    await Ledger(sessions=sessions, bus=bus).apply_batch([snapshot])

    assert await _positions(sessions, account.id) == {"TCS": Decimal("10"), "INFY": Decimal("0.12345678")}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SnapshotHolding)) == 2
        stored = await session.get(BrokerAccount, account.id)
        assert stored is not None and stored.last_success_at == snapshot.taken_at
    [record] = bus.records(topics.HOLDINGS_CHANGES)
    changed = decode_event(HoldingsChanged, record.value)
    assert changed.snapshot_id == snapshot.event_id
    assert {(c.symbol, c.previous_quantity, c.quantity) for c in changed.changes} == {
        ("TCS", 0, 10),
        ("INFY", 0, Decimal("0.12345678")),
    }


async def test_the_same_snapshot_twice_changes_nothing_the_second_time(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    snapshot = _snapshot(account.id, _holding("TCS", "10"))
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([snapshot, snapshot])
    await ledger.apply_batch([snapshot])

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Snapshot)) == 1
    assert len(bus.records(topics.HOLDINGS_CHANGES)) == 1


async def test_a_later_snapshot_closes_what_it_no_longer_lists_and_an_older_one_only_enters_history(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "10"), _holding("INFY", "5"), age_s=60)])
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "12"), age_s=30)])
    await ledger.apply_batch([_snapshot(account.id, _holding("WIPRO", "1"), age_s=90)])

    assert await _positions(sessions, account.id) == {"TCS": Decimal("12")}
    last = decode_event(HoldingsChanged, bus.records(topics.HOLDINGS_CHANGES)[-1].value)
    assert {(c.symbol, c.quantity) for c in last.changes} == {("TCS", 12), ("INFY", 0)}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Snapshot)) == 3


async def test_auth_failure_marks_the_account_for_reauth_and_finishes_the_run(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    failure = SyncFailed(
        account_id=account.id,
        request_id=uuid.uuid4(),
        broker="sim",
        kind=FailureKind.AUTH,
        reason="token expired",
    )
    await Ledger(sessions=sessions, bus=bus).apply_batch([failure])
    async with sessions() as session:
        stored = await session.get(BrokerAccount, account.id)
        run = await session.get(SyncRun, failure.request_id)
    assert stored is not None and stored.needs_reauth and stored.consecutive_failures == 1
    assert run is not None and (run.status, run.failure_kind) == ("failed", "auth")


async def test_an_event_for_an_unknown_account_is_rejected_and_nothing_of_the_batch_is_written(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    with pytest.raises(UnknownAccount):
        await Ledger(sessions=sessions, bus=bus).apply_batch(
            [_snapshot(account.id, _holding("TCS", "1")), _snapshot(uuid.uuid4(), _holding("TCS", "1"))]
        )
    assert await _positions(sessions, account.id) == {}


def _failure(account_id: uuid.UUID, run_id: uuid.UUID, *, attempt: int, final: bool) -> SyncFailed:
    return SyncFailed(
        account_id=account_id,
        request_id=run_id,
        broker="sim",
        kind=FailureKind.TRANSIENT,
        reason="broker timed out",
        attempt=attempt,
        final=final,
        retry_at=None if final else utc_now() + timedelta(seconds=10),
    )


async def test_a_retried_run_shows_retrying_then_its_outcome_and_only_final_failures_count(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    run_id = uuid.uuid4()
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_failure(account.id, run_id, attempt=1, final=False)])
    async with sessions() as session:
        run = await session.get(SyncRun, run_id)
        stored = await session.get(BrokerAccount, account.id)
    assert run is not None and (run.status, run.attempts, run.failure_kind) == ("retrying", 1, "transient")
    assert run.next_attempt_at is not None and run.finished_at is None
    assert stored is not None and stored.consecutive_failures == 0 and stored.last_error is not None

    snapshot = _snapshot(account.id, _holding("TCS", "1")).model_copy(
        update={"request_id": run_id, "attempt": 2}
    )
    await ledger.apply_batch([snapshot])
    await ledger.apply_batch([_failure(account.id, run_id, attempt=1, final=False)])  # late news of attempt 1
    async with sessions() as session:
        run = await session.get(SyncRun, run_id)
    assert run is not None and (run.status, run.attempts, run.snapshot_id) == (
        "succeeded",
        2,
        snapshot.event_id,
    )


async def test_a_final_failure_after_retries_counts_once(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    run_id = uuid.uuid4()
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_failure(account.id, run_id, attempt=n, final=n == 3) for n in (1, 2, 3)])
    async with sessions() as session:
        run = await session.get(SyncRun, run_id)
        stored = await session.get(BrokerAccount, account.id)
    assert run is not None and (run.status, run.attempts, run.next_attempt_at) == ("failed", 3, None)
    assert stored is not None and stored.consecutive_failures == 1
