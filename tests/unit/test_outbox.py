"""The outbox relay's guarantee on `holdings.changes` (see docs/events.md, "Delivery guarantee"):
each change at least once, a change published before a failure never again once Kafka has it, and
one account's changes in the order the ledger committed them — after a failed delete, a dead relay,
a long tail, or a crash that left several of an account's changes behind."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import CONSUMER, Ledger
from services.ledger.outbox import OutboxRelay
from services.ledger.store import LedgerStore
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.db.tables import OutboxMessage
from shared.events import Holding, HoldingsChanged, HoldingSnapshot, decode_event, utc_now
from tests.support.accounts import create_account
from tests.support.outbox_faults import AfterPublishing, FailingCommits

T0 = utc_now() - timedelta(hours=1)


def _snapshot(account_id: uuid.UUID, quantity: int, *, at_min: int = 0) -> HoldingSnapshot:
    holding = Holding(
        symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(quantity), average_price=Decimal(100)
    )
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=T0 + timedelta(minutes=at_min),
        holdings=(holding,),
    )


def _announced(bus: InMemoryBus) -> list[uuid.UUID]:
    """The snapshots announced on holdings.changes, in the order of the log (one account: one partition)."""
    return [decode_event(HoldingsChanged, r.value).snapshot_id for r in bus.records(topics.HOLDINGS_CHANGES)]


async def _waiting(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Changes left in the outbox (each with its account's CurrentHoldings beside it, counted apart)."""
    changes = select(func.count()).where(OutboxMessage.topic == topics.HOLDINGS_CHANGES)
    async with sessions() as session:
        return await session.scalar(changes) or 0


class Down(InMemoryBus):
    """Kafka refusing every publish while `down`."""

    down = False

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.down:
            raise BusUnavailable("kafka is down")
        await super().publish(messages)


async def test_a_publish_acknowledged_whose_delete_did_not_commit_is_not_announced_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = InMemoryBus()
    failing = FailingCommits(sessions)
    ledger = Ledger(sessions=failing, bus=AfterPublishing(bus, failing.fail_next_commit))  # type: ignore[arg-type]
    snapshot = _snapshot((await create_account(sessions)).id, 10)
    await ledger.apply_batch([snapshot])  # relayed from memory; its delete's commit fails
    assert failing.failed == 1 and _announced(bus) == [snapshot.event_id] and await _waiting(sessions) == 1

    # At once, not only once some threshold has passed: the row is in doubt the moment it is back.
    assert await ledger.relay.publish_pending() == 0, "found on the topic: not announced again"
    assert _announced(bus) == [snapshot.event_id]
    assert await _waiting(sessions) == 0


async def test_a_relay_taking_over_a_dead_relays_rows_does_not_announce_them_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = InMemoryBus()
    survivor = Ledger(sessions=sessions, bus=bus)  # running all along, beside the one that dies
    failing = FailingCommits(sessions)
    doomed = Ledger(sessions=failing, bus=AfterPublishing(bus, failing.fail_next_commit))  # type: ignore[arg-type]
    snapshot = _snapshot((await create_account(sessions)).id, 10)
    await doomed.apply_batch([snapshot])  # Kafka acknowledged; the ledger died before the delete committed
    assert _announced(bus) == [snapshot.event_id] and await _waiting(sessions) == 1

    assert await survivor.relay.publish_pending() == 0
    assert _announced(bus) == [snapshot.event_id]
    assert await _waiting(sessions) == 0


async def test_a_change_published_long_before_the_relay_looks_is_still_found(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Far more than a batch went to its partition after it: the check reads back to the row's time."""
    bus = InMemoryBus()
    failing = FailingCommits(sessions)
    account = await create_account(sessions)
    doomed = Ledger(sessions=failing, bus=AfterPublishing(bus, failing.fail_next_commit), batch_size=2)  # type: ignore[arg-type]
    snapshot = _snapshot(account.id, 10)
    await doomed.apply_batch([snapshot])
    others = [
        OutgoingMessage(
            topics.HOLDINGS_CHANGES, str(account.id), json.dumps({"event_id": str(uuid.uuid4())}).encode()
        )
        for _ in range(20)
    ]
    await bus.publish(others)  # after it, in its partition: ten relay batches' worth

    heir = OutboxRelay(sessions=sessions, bus=bus, batch=2)
    assert await heir.publish_pending() == 0
    records = bus.records(topics.HOLDINGS_CHANGES)
    assert len(records) == 21
    assert decode_event(HoldingsChanged, records[0].value).snapshot_id == snapshot.event_id


async def test_after_a_crash_an_accounts_changes_are_announced_in_the_order_they_were_committed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = Down()
    account = await create_account(sessions)
    bus.down = True
    crashed = Ledger(sessions=sessions, bus=bus)
    left = [_snapshot(account.id, q, at_min=q) for q in (1, 2, 3)]
    for snapshot in left:
        await crashed.apply_batch([snapshot])  # committed; not relayed
    assert await _waiting(sessions) == 3

    bus.down = False
    restarted = Ledger(sessions=sessions, bus=bus)
    newest = _snapshot(account.id, 4, at_min=4)
    await restarted.apply_batch([newest])  # relayed from memory right away: not before the older three
    await restarted.relay.publish_pending()
    assert _announced(bus) == [s.event_id for s in [*left, newest]]
    assert await _waiting(sessions) == 0


async def test_rows_a_sweep_published_before_its_commit_failed_are_not_relayed_again_from_memory(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A slow batch: another ledger's sweep took its rows before its own relay did, and failed."""
    bus = InMemoryBus()
    account = await create_account(sessions)
    slow = Ledger(sessions=sessions, bus=bus)
    write = await slow.prepare([_snapshot(account.id, 10)])
    plan, encoded = write.args  # type: ignore[attr-defined]
    async with sessions.begin() as session:
        await LedgerStore(session, consumer=CONSUMER).write(plan, encoded)  # committed, not yet relayed

    failing = FailingCommits(sessions)
    sweeper = OutboxRelay(sessions=failing, bus=AfterPublishing(bus, failing.fail_next_commit))  # type: ignore[arg-type]
    with pytest.raises(OperationalError):
        await sweeper.publish_pending()  # published; its delete did not commit
    assert failing.failed == 1 and len(_announced(bus)) == 1

    await slow.relay.publish_committed(plan.outbox)  # the batch's own relay, late
    assert len(_announced(bus)) == 1
    await slow.relay.publish_pending()
    assert len(_announced(bus)) == 1
    assert await _waiting(sessions) == 0
