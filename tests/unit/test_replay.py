"""Replay: an adapter bug that dropped a field, fixed, replayed from the archive, and the history
corrected through the ledger's normal path, once however often it is replayed, without the broker.

The broker is the fake Kite API over real HTTP; the ledger and the archive share the SQLite database,
as in the embedded mode.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal

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
from shared.db.tables import BrokerAccount, Snapshot, Transaction
from shared.events import Holding, HoldingSnapshot, SyncRequested, SyncTrigger, decode_event, utc_now
from tests.fakes.zerodha import ACCESS_TOKEN, API_KEY, ZerodhaFake
from tests.support.accounts import create_account

KEY = CredentialCipher.generate_key()


class IsinDroppingKite(ZerodhaKite):
    """Yesterday's adapter: it forgot the ISIN."""

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return [replace(h, isin=None) for h in super().parse_holdings(answer)]


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

    fixed = ZerodhaKite(base_url=base_url, limiter=_limiter())
    answers = await archive.answers_of(account.id, since=None)
    report = await replay_answers(answers, {ZERODHA.code: fixed}, bus)
    assert (report.answers, report.corrections, report.failing) == (2, 2, [])
    seen = await _deliver(bus, ledger, seen)

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
