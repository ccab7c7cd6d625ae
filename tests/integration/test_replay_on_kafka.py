"""`portfolio-sync replay` on real Postgres and Kafka: the archive read from Postgres, the corrections
published on Kafka, and the ledger correcting Postgres's history with them, once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace

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
from shared.db.tables import Snapshot
from shared.events import Holding, HoldingSnapshot, SyncRequested, SyncTrigger, decode_event
from shared.settings import Settings
from tests.support.accounts import create_account
from tests.support.infra import KafkaService
from tests.support.waiting import eventually


class IsinDroppingSimulator(SimulatedBroker):
    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return [replace(h, isin=None) for h in super().parse_holdings(answer)]


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
        adapter=IsinDroppingSimulator(latency_s=0, failure_rate=0),
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

    settings = Settings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_namespace=namespace,
    )
    snapshots = await kafka_bus.subscribe(
        [topics.HOLDINGS_SNAPSHOTS], group=f"observer-{uuid.uuid4().hex[:6]}"
    )
    corrections: list[HoldingSnapshot] = []

    async def corrections_arrived(count: int) -> bool:
        records = await snapshots.fetch(max_records=100, timeout_s=0.3)
        corrections.extend(decode_event(HoldingSnapshot, r.value) for r in records)
        return len(corrections) == count

    try:
        assert await run_replay(settings, account.id, since=None) == 0
        assert "2 archived answers: 2 sent to the ledger as corrections" in capsys.readouterr().out
        await eventually(lambda: corrections_arrived(2), timeout_s=30, what="the corrections on Kafka")
        await ledger.apply_batch(corrections)
        isins = await _isins(sessions, account.id)
        assert None not in isins and isins  # every holding of both snapshots has its ISIN again

        assert await run_replay(settings, account.id, since=None) == 0
        await eventually(lambda: corrections_arrived(4), timeout_s=30, what="the second replay's")
        write = await ledger.prepare(corrections[2:])
        assert (await write())["already_applied"] == 2
    finally:
        await snapshots.close()
        await kafka_bus.close()
