"""On real Kafka, with topic auto-creation off: a broker whose topic is missing stops no other broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.main import run_scheduler
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.db.tables import Schedule
from shared.events import SyncRequested, decode_event, utc_now
from shared.settings import Settings
from tests.support.accounts import create_account
from tests.support.infra import KafkaService
from tests.support.waiting import eventually


@pytest.fixture
async def namespace(kafka: KafkaService) -> str:
    namespace = f"sched-{uuid.uuid4().hex[:8]}."
    # Only the simulated broker's topics exist: zerodha's were never created.
    await create_topics(
        kafka.bootstrap_servers.split(","), topics.all_topics(["sim"]), partitions=2, namespace=namespace
    )
    return namespace


@pytest.fixture
async def kafka_bus(kafka: KafkaService, namespace: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(kafka.bootstrap_servers.split(","), namespace=namespace)
    await bus.start()
    yield bus
    await bus.close()


async def test_a_broker_without_a_topic_does_not_stop_another_brokers_scheduled_syncs(
    kafka: KafkaService, namespace: str, kafka_bus: KafkaBus, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = utc_now()
    # The account whose broker has no topic is the oldest due: first in line on every pass.
    stuck = await create_account(sessions, broker="zerodha", next_run_at=now - timedelta(hours=1))
    synced = [
        await create_account(
            sessions, broker="sim", interval_seconds=1, next_run_at=now - timedelta(seconds=1)
        )
        for _ in range(2)
    ]
    failures_before = (
        REGISTRY.get_sample_value("portfolio_sync_scheduler_publish_failures_total", {"broker": "zerodha"})
        or 0.0
    )
    settings = Settings(
        scheduler_tick_seconds=0.2,
        scheduler_publish_timeout_seconds=2,
        scheduler_broker_backoff_seconds=60,
    )
    requests = await kafka_bus.subscribe([topics.sync_requests("sim")], group="observer")
    seen: list[SyncRequested] = []
    stop = asyncio.Event()
    scheduler = asyncio.create_task(run_scheduler(settings, sessions, kafka_bus, stop))
    try:

        async def two_ticks_of_every_sim_account() -> bool:
            batch = await requests.fetch(max_records=100, timeout_s=0.5)
            seen.extend(decode_event(SyncRequested, r.value) for r in batch)
            return all(sum(1 for r in seen if r.account_id == a.id) >= 2 for a in synced)

        await eventually(two_ticks_of_every_sim_account, timeout_s=60, what="sim accounts' scheduled syncs")
    finally:
        stop.set()
        await scheduler
        await requests.close()

    failures = REGISTRY.get_sample_value(
        "portfolio_sync_scheduler_publish_failures_total", {"broker": "zerodha"}
    )
    assert failures == failures_before + 1  # tried once, then set aside for the backoff
    async with sessions() as session:
        schedule = await session.get(Schedule, stuck.id)
    assert schedule is not None and schedule.next_run_at == now - timedelta(hours=1)  # still due: not lost
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    assert namespace + topics.sync_requests("zerodha") not in existing  # auto-creation is off
