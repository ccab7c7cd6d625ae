from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.storage import store_credentials
from services.ledger.handlers import Ledger
from services.ledger.main import run_ledger
from services.ledger.outbox import OutboxRelay
from services.ledger.plan import BatchPlan, plan_batch
from services.ledger.store import ConcurrentWrite, Encoded, LedgerStore, PositionsCache
from shared import topics
from shared.bus.consumer import Outcomes
from shared.bus.memory import InMemoryBus
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.db.tables import (
    BrokerAccount,
    InstrumentPrice,
    OutboxMessage,
    PositionVersion,
    Snapshot,
    SnapshotStatus,
    SyncRun,
    Transaction,
)
from shared.events import (
    FailureKind,
    Holding,
    HoldingsChanged,
    HoldingSnapshot,
    ReportedTrade,
    SnapshotAccepted,
    SyncFailed,
    TradeSide,
    decode_event,
    utc_now,
)
from tests.support.accounts import create_account
from tests.support.positions import positions_of
from tests.support.waiting import eventually

T0 = utc_now() - timedelta(hours=1)


def _holding(symbol: str, quantity: str, average: str = "100.5", last: str | None = None) -> Holding:
    return Holding(
        symbol=symbol,
        exchange="NSE",
        currency="INR",
        quantity=Decimal(quantity),
        average_price=Decimal(average),
        last_price=None if last is None else Decimal(last),
    )


def _snapshot(
    account_id: uuid.UUID, *holdings: Holding, at_min: int = 0, trades: Sequence[ReportedTrade] = ()
) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=T0 + timedelta(minutes=at_min),
        holdings=holdings,
        trades=tuple(trades),
    )


async def _current(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> dict[str, Decimal]:
    async with sessions() as session:
        return {p.symbol: p.quantity for p in await positions_of(session, account_id)}


async def _account(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> BrokerAccount:
    async with sessions() as session:
        account = await session.get(BrokerAccount, account_id)
    assert account is not None
    return account


async def _status(sessions: async_sessionmaker[AsyncSession], snapshot_id: uuid.UUID) -> str:
    async with sessions() as session:
        return (await session.get(Snapshot, snapshot_id)).status  # type: ignore[union-attr]


async def _trades(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> list[tuple[object, ...]]:
    async with sessions() as session:
        rows = await session.execute(
            select(
                Transaction.symbol,
                Transaction.kind,
                Transaction.quantity,
                Transaction.price,
                Transaction.origin,
            )
            .where(Transaction.account_id == account_id)
            .order_by(Transaction.occurred_at, Transaction.symbol)
        )
        return [tuple(row) for row in rows]


def _announced(bus: InMemoryBus) -> list[HoldingsChanged]:
    return [decode_event(HoldingsChanged, r.value) for r in bus.records(topics.HOLDINGS_CHANGES)]


async def test_snapshot_becomes_current_positions_history_and_a_change_event(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    snapshot = _snapshot(account.id, _holding("TCS", "10"), _holding("INFY", "0.123456789012345678"))
    await Ledger(sessions=sessions, bus=bus).apply_batch([snapshot])

    assert await _current(sessions, account.id) == {"TCS": 10, "INFY": Decimal("0.123456789012345678")}
    stored = await _account(sessions, account.id)
    assert (stored.current_snapshot_id, stored.last_success_at) == (snapshot.event_id, snapshot.taken_at)
    [changed] = _announced(bus)
    assert changed.snapshot_id == snapshot.event_id
    assert {(c.symbol, c.previous_quantity, c.quantity) for c in changed.changes} == {
        ("TCS", 0, 10),
        ("INFY", 0, Decimal("0.123456789012345678")),
    }
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0, (
            "relayed, then removed"
        )


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
        assert await session.scalar(select(func.count()).select_from(Transaction)) == 1
    assert len(_announced(bus)) == 1


async def test_a_later_snapshot_closes_what_it_no_longer_lists_and_an_older_one_only_enters_history(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "10"), _holding("INFY", "5"), at_min=1)])
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "12"), _holding("INFY", "5"), at_min=2)])
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "12"), at_min=3)])
    late = _snapshot(account.id, _holding("WIPRO", "1"), at_min=0)
    await ledger.apply_batch([late])

    assert await _current(sessions, account.id) == {"TCS": Decimal("12")}
    last = _announced(bus)[-1]
    assert {(c.symbol, c.quantity) for c in last.changes} == {("INFY", 0)}
    assert await _status(sessions, late.event_id) == SnapshotStatus.LATE
    assert len(_announced(bus)) == 3, "the late snapshot announces nothing"


async def test_consecutive_snapshots_derive_trades_with_estimated_prices(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch(
        [_snapshot(account.id, _holding("TCS", "10", "100"), _holding("INFY", "4", "50", "55"))]
    )
    # TCS: +10 at a price that moves the average from 100 to 110 -> bought at 120.
    # INFY: 4 -> 1, average unchanged -> sold, priced at the snapshot's last price.
    await ledger.apply_batch(
        [_snapshot(account.id, _holding("TCS", "20", "110"), _holding("INFY", "1", "50", "57"), at_min=5)]
    )
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "20", "110"), at_min=10)])

    assert await _trades(sessions, account.id) == [
        ("INFY", "opening", 4, 50, "derived"),
        ("TCS", "opening", 10, 100, "derived"),
        ("INFY", "sell", 3, 57, "derived"),
        ("TCS", "buy", 10, 120, "derived"),
        ("INFY", "closing", 1, 57, "derived"),
    ]


async def test_a_reported_trade_is_stored_once_and_never_doubled_by_a_derived_one(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "10", "100"))])
    bought = ReportedTrade(
        trade_id="T-1",
        symbol="TCS",
        exchange="NSE",
        side=TradeSide.BUY,
        quantity=Decimal(6),
        price=Decimal("119.5"),
        currency="INR",
        executed_at=T0 + timedelta(minutes=3),
    )
    # The account grew by 10; the broker reported 6 of it: only the other 4 are derived.
    second = _snapshot(account.id, _holding("TCS", "20", "110"), at_min=5, trades=[bought])
    await ledger.apply_batch([second])
    third = _snapshot(account.id, _holding("TCS", "20", "110"), at_min=6, trades=[bought])  # reported again
    await ledger.apply_batch([third])

    trades = await _trades(sessions, account.id)
    assert [t for t in trades if t[4] == "reported"] == [("TCS", "buy", 6, Decimal("119.5"), "reported")]
    assert [t[:3] for t in trades if t[4] == "derived"] == [("TCS", "opening", 10), ("TCS", "buy", 4)]


async def test_a_snapshot_that_empties_the_account_is_held_until_the_next_sync_confirms_it(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "10"), _holding("INFY", "5"))])
    empty = _snapshot(account.id, at_min=5)
    await ledger.apply_batch([empty])

    held = await _account(sessions, account.id)
    assert (held.held_snapshot_id, await _status(sessions, empty.event_id)) == (
        empty.event_id,
        SnapshotStatus.HELD,
    )
    assert held.held_reason is not None and "no holdings" in held.held_reason
    assert await _current(sessions, account.id) == {"TCS": 10, "INFY": 5}, "not applied"

    confirming = _snapshot(account.id, at_min=10)
    await ledger.apply_batch([confirming])
    assert await _current(sessions, account.id) == {}
    assert (await _account(sessions, account.id)).held_snapshot_id is None
    assert await _status(sessions, empty.event_id) == SnapshotStatus.APPLIED, "it was real after all"
    assert {(c.symbol, c.quantity) for c in _announced(bus)[-1].changes} == {("TCS", 0), ("INFY", 0)}


async def test_a_held_snapshot_contradicted_by_the_next_sync_is_dismissed(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    before = [_holding(s, "1") for s in ("A", "B", "C", "D", "E")]
    await ledger.apply_batch([_snapshot(account.id, *before)])
    dropped = _snapshot(account.id, before[0], at_min=5)  # 1 of 5 kept: most positions dropped
    await ledger.apply_batch([dropped])
    assert (await _account(sessions, account.id)).held_snapshot_id == dropped.event_id

    await ledger.apply_batch([_snapshot(account.id, *before, _holding("F", "2"), at_min=10)])
    assert await _status(sessions, dropped.event_id) == SnapshotStatus.DISMISSED
    assert set(await _current(sessions, account.id)) == {"A", "B", "C", "D", "E", "F"}
    assert [t[:2] for t in await _trades(sessions, account.id)][-1] == ("F", "opening"), (
        "no trades from the dismissed one"
    )


async def test_the_owner_can_accept_a_held_snapshot(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "10"))])
    empty = _snapshot(account.id, at_min=5)
    await ledger.apply_batch([empty])
    accepted = SnapshotAccepted(account_id=account.id, snapshot_id=empty.event_id, accepted_by=uuid.uuid4())
    await ledger.apply_batch([accepted])
    await ledger.apply_batch([accepted])  # redelivered: nothing more happens

    assert await _current(sessions, account.id) == {}
    assert await _status(sessions, empty.event_id) == SnapshotStatus.APPLIED
    assert [t[:3] for t in await _trades(sessions, account.id)] == [
        ("TCS", "opening", 10),
        ("TCS", "closing", 10),
    ]


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
    stored = await _account(sessions, account.id)
    async with sessions() as session:
        run = await session.get(SyncRun, failure.request_id)
    assert stored.needs_reauth and stored.consecutive_failures == 1
    assert run is not None and (run.status, run.failure_kind, run.trigger) == ("failed", "auth", "external")


async def test_unreadable_credentials_fail_the_run_without_asking_the_user_to_reauthenticate(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    failure = SyncFailed(
        account_id=account.id,
        request_id=uuid.uuid4(),
        broker="sim",
        kind=FailureKind.UNREADABLE_CREDENTIALS,
        reason="credentials cannot be decrypted with the configured keys",
    )
    await Ledger(sessions=sessions, bus=bus).apply_batch([failure])
    stored = await _account(sessions, account.id)
    async with sessions() as session:
        run = await session.get(SyncRun, failure.request_id)
    assert not stored.needs_reauth, "the operator's keys are at fault, not the user's credentials"
    assert stored.consecutive_failures == 1
    assert stored.last_error is not None and stored.last_error.startswith("unreadable_credentials")
    assert run is not None and (run.status, run.failure_kind) == ("failed", "unreadable_credentials")


async def test_events_of_a_vanished_account_are_skipped_and_counted_and_the_rest_of_the_batch_applies(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    vanished = uuid.uuid4()
    ledger = Ledger(sessions=sessions, bus=bus)

    await ledger.apply_batch(
        [
            _snapshot(vanished, _holding("TCS", "1")),
            _snapshot(account.id, _holding("TCS", "1")),
            SyncFailed(
                account_id=vanished, request_id=uuid.uuid4(), broker="sim", kind=FailureKind.AUTH, reason="x"
            ),
            SnapshotAccepted(account_id=vanished, snapshot_id=uuid.uuid4(), accepted_by=uuid.uuid4()),
        ]
    )

    assert ledger.skipped_for_vanished_accounts == 3
    assert await _current(sessions, account.id) == {"TCS": Decimal("1")}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Snapshot)) == 1
        assert await session.scalar(select(func.count()).select_from(SyncRun)) == 1


async def test_an_account_deleted_between_planning_and_writing_fails_the_write_then_is_skipped(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    """The consumer handles a batch whose write failed again (see shared.bus.consumer): the second
    time, the account is gone before planning, and its events are skipped rather than dead-lettered."""
    account = await create_account(sessions)
    snapshot = _snapshot(account.id, _holding("TCS", "1"))
    ledger = Ledger(sessions=sessions, bus=bus)
    write = await ledger.prepare([snapshot])
    async with sessions.begin() as session:
        await session.execute(delete(BrokerAccount).where(BrokerAccount.id == account.id))

    # Nothing of the batch is written: the account's fenced update finds no row, and the consumer
    # handles the batch again from fresh state.
    with pytest.raises(ConcurrentWrite):
        await write()
    ledger.forget()
    await ledger.apply_batch([snapshot])

    assert ledger.skipped_for_vanished_accounts == 1
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Snapshot)) == 0


class FlakyBus(InMemoryBus):
    """Refuses to publish while `down`."""

    down = False

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.down:
            raise BusUnavailable("kafka is down")
        await super().publish(messages)


async def test_a_change_committed_while_kafka_is_down_is_announced_once_when_it_is_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = FlakyBus()
    account = await create_account(sessions)
    snapshot = _snapshot(account.id, _holding("TCS", "10"))
    bus.down = True
    await Ledger(sessions=sessions, bus=bus).apply_batch([snapshot])  # the relay's publish fails
    assert await _current(sessions, account.id) == {"TCS": 10}, "committed before the publish failed"
    assert _announced(bus) == []

    bus.down = False
    restarted = Ledger(sessions=sessions, bus=bus)
    assert await restarted.relay.publish_pending() == 2, "the change, and the account's current holdings"
    assert await restarted.relay.publish_pending() == 0
    await restarted.apply_batch([snapshot])  # the consumer's redelivery after the failure
    [changed] = _announced(bus)
    assert changed.snapshot_id == snapshot.event_id


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
    stored = await _account(sessions, account.id)
    assert run is not None and (run.status, run.attempts, run.failure_kind) == ("retrying", 1, "transient")
    assert run.next_attempt_at is not None and run.finished_at is None
    assert stored.consecutive_failures == 0 and stored.last_error is not None

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
    assert run is not None and (run.status, run.attempts, run.next_attempt_at) == ("failed", 3, None)
    assert (await _account(sessions, account.id)).consecutive_failures == 1


class DiesAfterPublishing(InMemoryBus):
    """Kafka acknowledges, then the relay dies before it can delete the rows."""

    die = True

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await super().publish(messages)
        if self.die and any(m.topic == topics.HOLDINGS_CHANGES for m in messages):
            self.die = False
            raise BusUnavailable("the relay died after the acknowledgement")


async def test_a_relay_that_died_after_kafka_acknowledged_does_not_announce_twice(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = DiesAfterPublishing()
    account = await create_account(sessions)
    await Ledger(sessions=sessions, bus=bus).apply_batch([_snapshot(account.id, _holding("TCS", "10"))])
    assert len(_announced(bus)) == 1
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 2, (
            "not deleted: the change and the account's current holdings"
        )

    restarted = Ledger(sessions=sessions, bus=bus)
    assert await restarted.relay.publish_pending() == 0, "found in the topic's tail: not published again"
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert len(_announced(bus)) == 1


async def test_a_batch_is_written_all_or_nothing(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    """Its last statement failing leaves none of its rows, though the first ones went in by COPY."""
    account = await create_account(sessions)
    snapshot = _snapshot(account.id, _holding("TCS", "10"))
    async with sessions() as session:
        accounts = await LedgerStore(session, consumer="ledger").accounts({account.id}, PositionsCache())
    plan = plan_batch([snapshot], accounts, {}, consumer="ledger")
    assert plan.snapshots and plan.versions and plan.prices and plan.derived and plan.outbox and plan.new_runs
    run_id, _, *rest = plan.new_runs[0]
    plan.new_runs[0] = (run_id, uuid.uuid4(), *rest)  # no such account: the run's insert fails

    async def write() -> None:
        async with sessions.begin() as session:
            store = LedgerStore(session, consumer="ledger")
            await store.write(plan, store.encode(plan))

    # SQLAlchemy's error on SQLite; asyncpg's own on Postgres, where the runs go in by COPY.
    with pytest.raises((IntegrityError, asyncpg.IntegrityConstraintViolationError)):
        await write()

    async with sessions() as session:
        for table in (Snapshot, PositionVersion, InstrumentPrice, Transaction, OutboxMessage):
            assert await session.scalar(select(func.count()).select_from(table)) == 0, table.__tablename__


async def test_text_that_needs_escaping_is_stored_exactly(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    awkward = ["A\\B", "TAB\tBED", "NEW\nLINE", "\\N", "CR\r"]
    await Ledger(sessions=sessions, bus=bus).apply_batch(
        [_snapshot(account.id, *(_holding(symbol, "1") for symbol in awkward))]
    )
    assert sorted(await _current(sessions, account.id)) == sorted(awkward)


class LosesTheConnection(Ledger):
    """The database connection drops under the first writes (asyncpg's own error: COPY goes to the
    driver around SQLAlchemy). Twice: once for the pipelined write, which any failure sends to be
    handled again, and once more for that retry, which only a transient error gets past."""

    failures = 2

    async def write(self, plan: BatchPlan, encoded: Encoded) -> None:
        if self.failures:
            self.failures -= 1
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        await super().write(plan, encoded)


async def test_a_connection_lost_under_a_write_is_waited_out_not_dead_lettered(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    await bus.publish(
        [OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, _snapshot(account.id, _holding("TCS", "7")))]
    )
    ledger = LosesTheConnection(sessions=sessions, bus=bus)
    stop = asyncio.Event()
    running = asyncio.create_task(run_ledger(ledger, bus, stop))

    async def applied() -> bool:
        return await _current(sessions, account.id) == {"TCS": 7}

    await eventually(applied, timeout_s=10, what="the snapshot applied after the connection came back")
    stop.set()
    await running
    assert ledger.failures == 0
    assert bus.records(topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)) == []


def _auth_failure(account_id: uuid.UUID, *, at: datetime) -> SyncFailed:
    return SyncFailed(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        kind=FailureKind.AUTH,
        reason="token expired",
        occurred_at=at,
    )


async def _store_credentials(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> datetime:
    """What the API does when the user sets new credentials (`PUT .../credentials`)."""
    now = utc_now()
    async with sessions() as session:
        await store_credentials(session, account_id=account_id, ciphertext="new-token", now=now)
    return now


async def test_an_auth_failure_older_than_the_last_success_changes_nothing_but_its_run(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_snapshot(account.id, _holding("TCS", "1"), at_min=10)])  # success at t2
    stale = _auth_failure(account.id, at=T0 + timedelta(minutes=5))  # t1 < t2, delivered after
    await ledger.apply_batch([stale])
    stored = await _account(sessions, account.id)
    assert not stored.needs_reauth, "a newer success says the credentials work"
    assert stored.consecutive_failures == 0 and stored.last_error is None
    assert stored.last_attempt_at == T0 + timedelta(minutes=10)
    async with sessions() as session:
        run = await session.get(SyncRun, stale.request_id)
    assert run is not None and (run.status, run.failure_kind) == ("failed", "auth"), "it closes its own run"


async def test_an_auth_failure_older_than_the_last_credentials_change_changes_nothing_but_its_run(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_auth_failure(account.id, at=utc_now() - timedelta(minutes=2))])
    assert (await _account(sessions, account.id)).needs_reauth
    changed_at = await _store_credentials(sessions, account.id)
    assert not (await _account(sessions, account.id)).needs_reauth

    # Another attempt made with the old credentials, reported late. (A ledger that still had the
    # account's state from its last batch would be fenced here and plan again: see below.)
    ledger.forget()
    stale = _auth_failure(account.id, at=changed_at - timedelta(seconds=30))
    await ledger.apply_batch([stale])
    stored = await _account(sessions, account.id)
    assert not stored.needs_reauth, "the failure was about the credentials the user has since replaced"
    assert stored.consecutive_failures == 1, "only the failure before the new credentials counts"
    async with sessions() as session:
        run = await session.get(SyncRun, stale.request_id)
    assert run is not None and run.status == "failed"

    fresh = _auth_failure(account.id, at=utc_now())  # the new credentials fail too
    await ledger.apply_batch([fresh])
    stored = await _account(sessions, account.id)
    assert stored.needs_reauth and stored.consecutive_failures == 2


async def test_the_apis_reauth_reset_is_not_undone_by_a_batch_planned_before_it(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([_auth_failure(account.id, at=utc_now() - timedelta(minutes=2))])
    # A batch planned on the account as it stood (needs_reauth), written after the user set new
    # credentials: a transient failure of an attempt that started before them.
    planned = await ledger.prepare([_failure(account.id, uuid.uuid4(), attempt=1, final=True)])
    await _store_credentials(sessions, account.id)
    with pytest.raises(ConcurrentWrite):
        await planned()
    stored = await _account(sessions, account.id)
    assert not stored.needs_reauth, "the API's reset stands"
    assert stored.consecutive_failures == 1


async def test_two_ledgers_planning_on_one_base_the_second_is_fenced_and_derives_from_the_first(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    """A rebalance: ledger B was given the partition while A, which had it, still writes a batch."""
    account = await create_account(sessions)
    a, b = Ledger(sessions=sessions, bus=bus), Ledger(sessions=sessions, bus=bus)
    await a.apply_batch([_snapshot(account.id, _holding("TCS", "5", last="100"), at_min=0)])
    first = _snapshot(account.id, _holding("TCS", "10", last="110"), at_min=10)
    second = _snapshot(account.id, _holding("TCS", "12", last="120"), at_min=20)
    write_first = await a.prepare([first])
    write_second = await b.prepare([second])  # on the same base: TCS 5
    await write_first()
    await a.relay.settle()  # its announcement is out before B writes (two relays race otherwise)
    with pytest.raises(ConcurrentWrite):
        await write_second()
    async with sessions() as session:
        assert await session.get(Snapshot, second.event_id) is None, "nothing of the fenced batch stays"

    b.forget()  # what the consumer does with a write that failed, before handling the batch again
    await b.apply_batch([second])
    assert await _current(sessions, account.id) == {"TCS": 12}
    assert [t[:3] for t in await _trades(sessions, account.id)] == [
        ("TCS", "opening", 5),
        ("TCS", "buy", 5),
        ("TCS", "buy", 2),  # from the first's result, not 7 from the base both planned on
    ]
    assert [c.snapshot_id for c in _announced(bus)][-2:] == [first.event_id, second.event_id]


class OvertakenByAnotherLedger(Ledger):
    """Another ledger writes the same account between this one's planning and its write, once."""

    other: Ledger | None = None
    overtaking: list[HoldingSnapshot] = []

    async def write(self, plan: BatchPlan, encoded: Encoded) -> Outcomes:
        if self.other is not None and self.overtaking:
            await self.other.apply_batch([self.overtaking.pop()])
        return await super().write(plan, encoded)


async def test_a_fenced_write_in_the_consume_loop_is_handled_again_from_fresh_state_not_dead_lettered(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    ledger = OvertakenByAnotherLedger(sessions=sessions, bus=bus)
    ledger.other = Ledger(sessions=sessions, bus=InMemoryBus())
    ledger.overtaking = [_snapshot(account.id, _holding("TCS", "10", last="110"), at_min=10)]
    await bus.publish(
        [
            OutgoingMessage.of(
                topics.HOLDINGS_SNAPSHOTS, _snapshot(account.id, _holding("TCS", "12"), at_min=20)
            )
        ]
    )
    stop = asyncio.Event()
    running = asyncio.create_task(run_ledger(ledger, bus, stop))

    async def applied() -> bool:
        return await _current(sessions, account.id) == {"TCS": 12}

    await eventually(applied, timeout_s=10, what="the overtaken batch applied on the other's result")
    stop.set()
    await running
    assert [t[:3] for t in await _trades(sessions, account.id)] == [("TCS", "opening", 10), ("TCS", "buy", 2)]
    assert bus.records(topics.dead_letters(topics.HOLDINGS_SNAPSHOTS)) == []


class _DatabaseDownFor:
    """Sessions that fail as a restarting Postgres does (each the way SQLAlchemy wraps it), then work."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.kw = sessions.kw
        self._sessions = sessions
        self.failures: list[Exception] = [
            OperationalError("select", None, ConnectionRefusedError("connection refused")),
            InterfaceError("select", None, Exception("connection is closed")),
            DBAPIError.instance(
                "select",
                None,
                asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
                Exception,  # type: ignore[arg-type]
            ),
        ]
        self.opened = 0

    def _next_failure(self) -> None:
        self.opened += 1
        if self.failures:
            raise self.failures.pop(0)

    def __call__(self) -> AsyncSession:
        self._next_failure()
        return self._sessions()

    def begin(self) -> Any:
        self._next_failure()
        return self._sessions.begin()


async def test_the_outbox_sweep_waits_out_a_database_outage(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = FlakyBus()
    account = await create_account(sessions)
    bus.down = True
    await Ledger(sessions=sessions, bus=bus).apply_batch([_snapshot(account.id, _holding("TCS", "10"))])
    bus.down = False
    flaky = _DatabaseDownFor(sessions)
    relay = OutboxRelay(sessions=flaky, bus=bus)  # type: ignore[arg-type]
    stop = asyncio.Event()
    sweeping = asyncio.create_task(relay.run(stop, interval_s=0.01))

    async def announced() -> bool:
        assert not sweeping.done(), f"the relay ended: {sweeping.exception()!r}"
        return len(_announced(bus)) == 1

    await eventually(announced, timeout_s=15, what="the sweep to relay the message once the database is back")
    stop.set()
    await sweeping
    assert flaky.failures == []
