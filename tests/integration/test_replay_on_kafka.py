"""`portfolio-sync replay` on real Postgres and Kafka: the archive read from Postgres, the corrections
published on Kafka, and the ledger correcting Postgres's history with them, once: holdings, the
transaction derived from a wrong quantity (its row kept), and the correction announced on Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api.storage import account_snapshot
from services.fetcher.adapter import BrokerAnswer
from services.fetcher.archive_database import DatabaseArchive
from services.fetcher.brokers.simulated import SimulatedBroker
from services.fetcher.handlers import Fetcher
from services.fetcher.replay import run_replay
from services.fetcher.retry import RetryPolicy
from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import Snapshot, Transaction
from shared.events import Holding, HoldingsChanged, HoldingSnapshot, SyncRequested, SyncTrigger, decode_event
from shared.settings import Settings
from tests.support.accounts import create_account
from tests.support.infra import KafkaService
from tests.support.waiting import eventually


class MisreadingSimulator(SimulatedBroker):
    """Yesterday's parser: it dropped the ISIN, and counted a share too many of the first holding."""

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        first, *others = [replace(h, isin=None) for h in super().parse_holdings(answer)]
        return [replace(first, quantity=first.quantity + 1), *others]


async def _openings(
    sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> dict[uuid.UUID, tuple[str, Decimal]]:
    """The account's derived transactions: all openings of its first snapshot, as nothing moved after."""
    async with sessions() as session:
        rows = await session.execute(
            select(Transaction.id, Transaction.symbol, Transaction.quantity).where(
                Transaction.account_id == account_id, Transaction.kind == "opening"
            )
        )
        return {i: (symbol, quantity) for i, symbol, quantity in rows}


async def _isins(sessions: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> set[str | None]:
    async with sessions() as session:
        isins: set[str | None] = set()
        for snapshot_id in (
            await session.scalars(select(Snapshot.id).where(Snapshot.account_id == account_id))
        ).all():
            found = await account_snapshot(session, account_id=account_id, snapshot_id=snapshot_id)
            assert found is not None
            isins |= {h.isin for h in found[1]}
        return isins


async def test_replay_corrects_the_history_over_kafka_once(
    kafka: KafkaService,
    database_url: str,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics(["sim"]), partitions=4, namespace=namespace)
    kafka_bus = KafkaBus(servers, namespace=namespace)
    await kafka_bus.start()
    account = await create_account(sessions)
    ledger = Ledger(sessions=sessions, bus=kafka_bus)
    synced = InMemoryBus()
    fetcher = Fetcher(
        adapter=MisreadingSimulator(latency_s=0, failure_rate=0),
        bus=synced,
        cipher=CredentialCipher(CredentialCipher.generate_key()),
        slots=asyncio.Semaphore(1),
        retry=RetryPolicy(max_attempts=1, base_s=1, max_s=1),
        archive=DatabaseArchive(engine),
    )
    await fetcher.handle_requests(
        [SyncRequested(account_id=account.id, broker="sim", trigger=SyncTrigger.MANUAL) for _ in range(2)]
    )
    await ledger.apply_batch(
        [decode_event(HoldingSnapshot, r.value) for r in synced.records(topics.HOLDINGS_SNAPSHOTS)]
    )
    assert await _isins(sessions, account.id) == {None}
    wrong = await _openings(sessions, account.id)

    settings = Settings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_namespace=namespace,
    )
    snapshots = await kafka_bus.subscribe(
        [topics.HOLDINGS_SNAPSHOTS], group=f"observer-{uuid.uuid4().hex[:6]}"
    )
    changes = await kafka_bus.subscribe([topics.HOLDINGS_CHANGES], group=f"observer-{uuid.uuid4().hex[:6]}")
    corrections: list[HoldingSnapshot] = []
    announced: list[HoldingsChanged] = []

    async def corrections_arrived(count: int) -> bool:
        records = await snapshots.fetch(max_records=100, timeout_s=0.3)
        corrections.extend(decode_event(HoldingSnapshot, r.value) for r in records)
        return len(corrections) == count

    async def announced_on_kafka(count: int) -> bool:
        records = await changes.fetch(max_records=100, timeout_s=0.3)
        announced.extend(decode_event(HoldingsChanged, r.value) for r in records if r.key == str(account.id))
        return len(announced) == count

    try:
        assert await run_replay(settings, account.id, since=None) == 0
        assert "2 archived answers: 2 sent to the ledger as corrections" in capsys.readouterr().out
        await eventually(lambda: corrections_arrived(2), timeout_s=30, what="the corrections on Kafka")
        await ledger.apply_batch(corrections)
        isins = await _isins(sessions, account.id)
        assert None not in isins and isins  # every holding of both snapshots has its ISIN again
        # The opening derived from the misread quantity: corrected in its row; the others untouched.
        right = await _openings(sessions, account.id)
        assert sorted(right.values()) == sorted((h.symbol, h.quantity) for h in corrections[0].holdings)
        assert right.keys() == wrong.keys()
        [misread] = [i for i in right if right[i] != wrong[i]]
        symbol, quantity = right[misread]
        assert wrong[misread] == (symbol, quantity + 1)
        # Announced on Kafka after the first sync's HoldingsChanged: what that snapshot changed after
        # all (the second changed nothing, before or after).
        await eventually(lambda: announced_on_kafka(2), timeout_s=30, what="the correction announced")
        original, correction = announced
        assert (original.snapshot_id, original.correction) == (correction.snapshot_id, False)
        assert correction.correction
        assert {(c.symbol, c.quantity) for c in correction.changes} == set(right.values())
        assert (symbol, quantity + 1) in {(c.symbol, c.quantity) for c in original.changes}

        assert await run_replay(settings, account.id, since=None) == 0
        await eventually(lambda: corrections_arrived(4), timeout_s=30, what="the second replay's")
        write = await ledger.prepare(corrections[2:])
        assert (await write())["already_applied"] == 2
        assert await _openings(sessions, account.id) == right
    finally:
        await changes.close()
        await snapshots.close()
        await kafka_bus.close()
