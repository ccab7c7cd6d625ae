"""Replay: an adapter bug that dropped a field, fixed, replayed from the archive, and the history
corrected through the ledger's normal path, once however often it is replayed, without the broker;
with a bug in quantities too, the derived transactions and the announcements corrected as well.

The broker is the fake Kite API over real HTTP; the ledger and the archive share the SQLite database,
as in the embedded mode.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api.storage import account_snapshot
from services.fetcher.adapter import BrokerAnswer
from services.fetcher.archive_database import DatabaseArchive
from services.fetcher.brokers.zerodha import ZerodhaKite
from services.fetcher.handlers import Fetcher
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.replay import replay_answers
from services.fetcher.retry import RetryPolicy
from services.fetcher.testing import serve_fake
from services.ledger.handlers import Ledger
from shared import topics
from shared.brokers import ZERODHA
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import BrokerAccount, OutboxMessage, Snapshot, Transaction
from shared.events import (
    CurrentHoldings,
    Holding,
    HoldingsChanged,
    HoldingSnapshot,
    SyncRequested,
    SyncTrigger,
    decode_event,
    utc_now,
)
from tests.fakes.zerodha import ACCESS_TOKEN, API_KEY, ZerodhaFake, exact_json
from tests.support.accounts import create_account

KEY = CredentialCipher.generate_key()


class IsinDroppingKite(ZerodhaKite):
    """Yesterday's adapter: it forgot the ISIN."""

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return [replace(h, isin=None) for h in super().parse_holdings(answer)]


class UndeliveredDroppingKite(IsinDroppingKite):
    """Yesterday's adapter with a second bug: it forgot the shares bought but not yet delivered
    (`t1_quantity`), so an instrument held only as such was left out."""

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        body = json.loads(answer.body, parse_float=Decimal)
        for entry in body["data"]:
            entry["t1_quantity"] = 0
        return super().parse_holdings(replace(answer, body=exact_json(body)))


@pytest.fixture
async def kite() -> AsyncIterator[tuple[ZerodhaFake, str]]:
    fake = ZerodhaFake()
    async with serve_fake(fake) as base_url:
        yield fake, base_url


def _limiter() -> BrokerLimiter:
    return BrokerLimiter(BrokerLimits(rate_per_s=1000, burst=1000))


async def _sync(
    adapter: ZerodhaKite, bus: InMemoryBus, archive: DatabaseArchive, account_id: uuid.UUID
) -> None:
    fetcher = Fetcher(
        adapter=adapter,
        bus=bus,
        cipher=CredentialCipher(KEY),
        slots=asyncio.Semaphore(1),
        retry=RetryPolicy(max_attempts=1, base_s=1, max_s=1),
        archive=archive,
        secret_fields=ZERODHA.credential_fields,
    )
    credentials = CredentialCipher(KEY).encrypt({"api_key": API_KEY, "access_token": ACCESS_TOKEN})
    request = SyncRequested(
        account_id=account_id,
        broker=ZERODHA.code,
        trigger=SyncTrigger.MANUAL,
        credentials_ciphertext=credentials,
    )
    await fetcher.handle_requests([request])


async def _deliver(bus: InMemoryBus, ledger: Ledger, seen: int) -> int:
    """Hand the ledger the snapshots published since the `seen` first; return how many there are now."""
    records = bus.records(topics.HOLDINGS_SNAPSHOTS)
    await ledger.apply_batch([decode_event(HoldingSnapshot, r.value) for r in records[seen:]])
    return len(records)


async def _isins(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> dict[uuid.UUID, set[str | None]]:
    async with sessions() as session:
        snapshot_ids = await session.scalars(select(Snapshot.id).where(Snapshot.account_id == account_id))
        isins: dict[uuid.UUID, set[str | None]] = {}
        for snapshot_id in snapshot_ids.all():
            found = await account_snapshot(session, account_id=account_id, snapshot_id=snapshot_id)
            assert found is not None
            isins[snapshot_id] = {h.isin for h in found[1]}
        return isins


async def _count(
    sessions: async_sessionmaker[AsyncSession], model: type[Snapshot] | type[Transaction]
) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_a_fixed_adapter_replayed_corrects_every_snapshot_once_without_asking_the_broker(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], kite: tuple[ZerodhaFake, str]
) -> None:
    fake, base_url = kite
    bus, archive = InMemoryBus(), DatabaseArchive(engine)
    ledger = Ledger(sessions=sessions, bus=bus)
    account = await create_account(sessions, broker=ZERODHA.code)
    buggy = IsinDroppingKite(base_url=base_url, limiter=_limiter())
    seen = 0
    for _ in range(2):  # two syncs with the bug: two snapshots, the second the current one
        await _sync(buggy, bus, archive, account.id)
        seen = await _deliver(bus, ledger, seen)
    await buggy.aclose()
    before = await _isins(sessions, account.id)
    assert len(before) == 2 and all(isins == {None} for isins in before.values())
    snapshots, transactions = await _count(sessions, Snapshot), await _count(sessions, Transaction)
    asked = fake.requests_seen
    announced = len(bus.records(topics.HOLDINGS_CHANGES))

    fixed = ZerodhaKite(base_url=base_url, limiter=_limiter())
    answers = await archive.answers_of(account.id, since=None)
    report = await replay_answers(answers, {ZERODHA.code: fixed}, bus)
    assert (report.answers, report.corrections, report.failing) == (2, 2, [])
    seen = await _deliver(bus, ledger, seen)
    assert len(bus.records(topics.HOLDINGS_CHANGES)) == announced  # no quantity moved: nothing to say

    after = await _isins(sessions, account.id)
    assert after.keys() == before.keys()
    for isins in after.values():
        assert None not in isins and "INE002A01018" in isins  # RELIANCE's, as the sample gives it
    async with sessions() as session:
        current = await session.scalar(
            select(BrokerAccount.current_snapshot_id).where(BrokerAccount.id == account.id)
        )
    assert current in after  # the current snapshot's holdings, i.e. the current positions, corrected
    # The ledger's normal path, nothing more: no new snapshot, no trade derived again.
    assert (await _count(sessions, Snapshot), await _count(sessions, Transaction)) == (
        snapshots,
        transactions,
    )

    again = await replay_answers(await archive.answers_of(account.id, since=None), {ZERODHA.code: fixed}, bus)
    assert again.corrections == 2
    corrections = [
        decode_event(HoldingSnapshot, r.value) for r in bus.records(topics.HOLDINGS_SNAPSHOTS)[seen:]
    ]
    write = await ledger.prepare(corrections)
    assert (await write())["already_applied"] == 2  # the same corrections: skipped
    assert await _isins(sessions, account.id) == after
    assert fake.requests_seen == asked  # the broker was never asked again
    await fixed.aclose()


async def test_a_correction_of_a_snapshot_of_another_account_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = InMemoryBus()
    ledger = Ledger(sessions=sessions, bus=bus)
    mine, theirs = await create_account(sessions), await create_account(sessions)
    holding = Holding(
        symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(1), average_price=Decimal(1)
    )
    stored = HoldingSnapshot(
        account_id=theirs.id, request_id=uuid.uuid4(), broker="sim", taken_at=utc_now(), holdings=(holding,)
    )
    await ledger.apply_batch([stored])
    forged = stored.model_copy(
        update={"event_id": uuid.uuid4(), "account_id": mine.id, "holdings": (), "replaces": stored.event_id}
    )
    write = await ledger.prepare([forged])
    assert (await write())["replacing_unknown"] == 1
    assert set(await _isins(sessions, theirs.id)) == {stored.event_id}


async def test_a_correction_prepared_while_its_snapshot_is_being_written_applies(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ledger = Ledger(sessions=sessions, bus=InMemoryBus())
    account = await create_account(sessions)
    holding = Holding(
        symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(1), average_price=Decimal(1)
    )
    stored = HoldingSnapshot(
        account_id=account.id, request_id=uuid.uuid4(), broker="sim", taken_at=utc_now(), holdings=(holding,)
    )
    correction = stored.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "holdings": (replace(holding, isin="INE467B01029"),),
            "replaces": stored.event_id,
        }
    )
    write_stored = await ledger.prepare([stored])  # the consumer's pipeline: N+1 planned before N is written
    write_correction = await ledger.prepare([correction])
    await write_stored()
    assert (await write_correction())["replaced"] == 1
    assert await _isins(sessions, account.id) == {stored.event_id: {"INE467B01029"}}


def _settle(body: dict[str, Any]) -> None:
    """The next day at the broker: the T+1 shares are delivered; the account holds what it held."""
    for entry in body["data"]:
        entry["quantity"], entry["t1_quantity"] = entry["quantity"] + entry["t1_quantity"], 0


Trade = tuple[Any, ...]  # (snapshot's place in the account's history, symbol, exchange, kind, ...)


async def _trades(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> dict[uuid.UUID, Trade]:
    """The account's derived transactions by id: each with its snapshot's place, not its id, so that
    two accounts' histories compare."""
    async with sessions() as session:
        order = (
            await session.scalars(
                select(Snapshot.id).where(Snapshot.account_id == account_id).order_by(Snapshot.taken_at)
            )
        ).all()
        t = Transaction
        rows = await session.execute(
            select(
                t.id, t.snapshot_id, t.symbol, t.exchange, t.kind, t.quantity, t.price, t.price_source
            ).where(t.account_id == account_id)
        )
        return {i: (order.index(snapshot_id), *trade) for i, snapshot_id, *trade in rows}


async def _holdings(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> list[set[Trade]]:
    """Each snapshot's holdings, oldest first, as the API reads them."""
    async with sessions() as session:
        order = await session.scalars(
            select(Snapshot.id).where(Snapshot.account_id == account_id).order_by(Snapshot.taken_at)
        )
        history = []
        for snapshot_id in order.all():
            found = await account_snapshot(session, account_id=account_id, snapshot_id=snapshot_id)
            assert found is not None
            history.append({(h.symbol, h.exchange, h.isin, h.quantity, h.average_price) for h in found[1]})
        return history


def _announced(bus: InMemoryBus, account_id: uuid.UUID) -> list[HoldingsChanged]:
    records = bus.records(topics.HOLDINGS_CHANGES)
    return [decode_event(HoldingsChanged, r.value) for r in records if r.key == str(account_id)]


def _current(bus: InMemoryBus, account_id: uuid.UUID) -> CurrentHoldings:
    records = bus.records(topics.HOLDINGS_CURRENT)
    return [decode_event(CurrentHoldings, r.value) for r in records if r.key == str(account_id)][-1]


async def test_a_fix_of_quantities_replayed_corrects_the_transactions_and_announces_the_corrections_once(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], kite: tuple[ZerodhaFake, str]
) -> None:
    fake, base_url = kite
    bus, archive = InMemoryBus(partitions=1), DatabaseArchive(engine)  # `_deliver` counts records
    ledger = Ledger(sessions=sessions, bus=bus)
    wrong = await create_account(sessions, broker=ZERODHA.code)
    right = await create_account(sessions, broker=ZERODHA.code)  # what the history should have been
    buggy = UndeliveredDroppingKite(base_url=base_url, limiter=_limiter())
    fixed = ZerodhaKite(base_url=base_url, limiter=_limiter())
    seen = 0
    for day in range(2):
        if day == 1:
            _settle(fake.holdings_body)
        await _sync(buggy, bus, archive, wrong.id)
        await _sync(fixed, bus, archive, right.id)
        seen = await _deliver(bus, ledger, seen)
    await buggy.aclose()
    # The bug: the first day misses RELIANCE and WIPRO (T+1 only) and 1 BHEL and 7 SBIN; the second
    # day "bought" them. The account held the same both days: nothing happened on the second.
    before = await _trades(sessions, wrong.id)
    assert sorted(t[1:5] for t in before.values() if t[0] == 1) == [
        ("BHEL", "BSE", "buy", 1),
        ("RELIANCE", "NSE", "opening", 2),
        ("SBIN", "BSE", "buy", 7),
        ("WIPRO", "BSE", "opening", 4),
    ]
    expected = sorted((await _trades(sessions, right.id)).values())
    assert all(t[0] == 0 for t in expected) and len(expected) == 19
    assert [len(a.changes) for a in _announced(bus, wrong.id)] == [17, 4]
    asked = fake.requests_seen

    answers = await archive.answers_of(wrong.id, since=None)
    assert (await replay_answers(answers, {ZERODHA.code: fixed}, bus)).corrections == 2
    seen = await _deliver(bus, ledger, seen)

    # History, as a correct adapter would have written it from the first day.
    assert await _holdings(sessions, wrong.id) == await _holdings(sessions, right.id)
    after = await _trades(sessions, wrong.id)
    assert sorted(after.values()) == expected
    # Replaced, not doubled: the first day's trades kept their rows (BHEL and SBIN with the
    # corrected quantity), the second day's are gone.
    assert {i for i, t in before.items() if t[0] == 0} <= after.keys()
    assert not {i for i, t in before.items() if t[0] == 1} & after.keys()
    # Announced through the outbox, flagged: what each snapshot changed after all.
    first, second = _announced(bus, wrong.id)[2:]
    [announced_right, *_] = _announced(bus, right.id)
    assert first.correction and second.correction
    assert first.changes == announced_right.changes and len(first.changes) == 19
    assert second.changes == ()
    assert _current(bus, wrong.id).positions == _current(bus, right.id).positions
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0  # relayed
        announcements = (
            await session.scalars(
                select(Snapshot.announcement_id)
                .where(Snapshot.account_id == wrong.id)
                .order_by(Snapshot.taken_at)
            )
        ).all()
    assert announcements == [first.event_id, second.event_id]

    # Replayed again: the same corrections, skipped; nothing changes, nothing is announced.
    records = (len(bus.records(topics.HOLDINGS_CHANGES)), len(bus.records(topics.HOLDINGS_CURRENT)))
    again = await replay_answers(await archive.answers_of(wrong.id, since=None), {ZERODHA.code: fixed}, bus)
    assert again.corrections == 2
    corrections = [
        decode_event(HoldingSnapshot, r.value) for r in bus.records(topics.HOLDINGS_SNAPSHOTS)[seen:]
    ]
    write = await ledger.prepare(corrections)
    assert (await write())["already_applied"] == 2
    await ledger.relay.settle()
    assert await _trades(sessions, wrong.id) == after
    assert (len(bus.records(topics.HOLDINGS_CHANGES)), len(bus.records(topics.HOLDINGS_CURRENT))) == records
    assert fake.requests_seen == asked  # the broker was never asked again
    await fixed.aclose()
