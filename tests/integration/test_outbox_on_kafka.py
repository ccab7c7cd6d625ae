"""The outbox relay on real Postgres and real Kafka: each change on `holdings.changes` once, and each
account's changes in commit order — after a publish Kafka acknowledged whose delete did not commit,
and when two relays take over what a dead ledger left, several changes per account among it."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from services.ledger.outbox import OutboxRelay
from shared import topics
from shared.bus.kafka import KafkaBus
from shared.db.tables import OutboxMessage
from shared.events import CurrentHoldings, Holding, HoldingsChanged, HoldingSnapshot, decode_event, utc_now
from tests.support.accounts import create_account
from tests.support.outbox_faults import AfterPublishing, FailingCommits
from tests.support.waiting import eventually

T0 = utc_now() - timedelta(hours=1)


def _snapshot(account_id: uuid.UUID, quantity: int) -> HoldingSnapshot:
    holding = Holding(
        symbol="INFY", exchange="NSE", currency="INR", quantity=Decimal(quantity), average_price=Decimal(1500)
    )
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=T0 + timedelta(minutes=quantity),
        holdings=(holding,),
    )


async def _announced(bus: KafkaBus) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Per account, the snapshots announced on holdings.changes, in the order of the log."""
    announced: defaultdict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    records = [r async for chunk in bus.published_since(topics.HOLDINGS_CHANGES, T0) for r in chunk]
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        change = decode_event(HoldingsChanged, record.value)
        announced[change.account_id].append(change.snapshot_id)
    return dict(announced)


async def _current(bus: KafkaBus) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Per account, the snapshots whose positions holdings.current carries, in the order of the log."""
    current: defaultdict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    records = [r async for chunk in bus.published_since(topics.HOLDINGS_CURRENT, T0) for r in chunk]
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        positions = decode_event(CurrentHoldings, record.value)
        current[positions.account_id].append(positions.snapshot_id)
    return dict(current)


async def _waiting(sessions: async_sessionmaker[AsyncSession], *, changes_only: bool = True) -> int:
    """Changes left in the outbox; or every message (each change has its account's CurrentHoldings)."""
    rows = select(func.count()).select_from(OutboxMessage)
    if changes_only:
        rows = rows.where(OutboxMessage.topic == topics.HOLDINGS_CHANGES)
    async with sessions() as session:
        return await session.scalar(rows) or 0


async def test_a_publish_acknowledged_whose_delete_did_not_commit_is_announced_once(
    kafka_bus: KafkaBus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    account = await create_account(sessions)
    failing = FailingCommits(sessions)
    ledger = Ledger(sessions=failing, bus=AfterPublishing(kafka_bus, failing.fail_next_commit))  # type: ignore[arg-type]
    snapshot = _snapshot(account.id, 10)
    await ledger.apply_batch([snapshot])
    assert failing.failed == 1 and await _waiting(sessions) == 1, "Kafka has it; the delete did not commit"

    assert await ledger.relay.publish_pending() == 0
    assert await _waiting(sessions) == 0
    assert await _announced(kafka_bus) == {account.id: [snapshot.event_id]}


async def test_two_relays_taking_over_a_dead_ledgers_rows_announce_each_once_in_account_order(
    kafka_bus: KafkaBus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The dead ledger's first batch reached Kafka and its delete did not commit; its next two were
    committed and not relayed. A survivor, running all along, writes each account's newest change,
    and two relays sweep at once in small passes, so their row locks split the accounts' rows."""
    accounts = [(await create_account(sessions)).id for _ in range(4)]
    survivor = Ledger(sessions=sessions, bus=kafka_bus)
    failing = FailingCommits(sessions)
    doomed = Ledger(sessions=failing, bus=AfterPublishing(kafka_bus, failing.fail_next_commit))  # type: ignore[arg-type]
    sent = {a: [_snapshot(a, q) for q in (1, 2, 3, 4)] for a in accounts}
    for n in range(3):
        await doomed.apply_batch([sent[a][n] for a in accounts])
    assert failing.failed == 1 and await _waiting(sessions) == 3 * len(accounts)
    await survivor.apply_batch([sent[a][3] for a in accounts])  # its relay holds these back: older ones wait

    stop = asyncio.Event()
    relays = [OutboxRelay(sessions=sessions, bus=kafka_bus, batch=3) for _ in range(2)]
    sweeping = [asyncio.create_task(r.run(stop, interval_s=0.05)) for r in relays]

    async def relayed() -> bool:
        assert not any(s.done() for s in sweeping), [s.exception() for s in sweeping if s.done()]
        return await _waiting(sessions, changes_only=False) == 0

    await eventually(relayed, timeout_s=60, what="the two relays to empty the outbox")
    stop.set()
    await asyncio.gather(*sweeping)
    assert await _announced(kafka_bus) == {a: [s.event_id for s in sent[a]] for a in accounts}
    assert await _current(kafka_bus) == {a: [s.event_id for s in sent[a]] for a in accounts}
