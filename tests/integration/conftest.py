"""The integration layer: the same handlers on real Postgres (a fresh database per test) and real Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.db.engine import create_engine
from tests.support.databases import DatabaseCloner
from tests.support.infra import KafkaService


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def empty_engine(cloner: DatabaseCloner) -> AsyncIterator[AsyncEngine]:
    """A Postgres database with no schema yet, for migration tests."""
    url = await cloner.empty()
    engine = create_engine(url)
    yield engine
    await engine.dispose()
    await cloner.drop(url)


@pytest.fixture
async def kafka_bus(kafka: KafkaService) -> AsyncIterator[KafkaBus]:
    """A KafkaBus on topics of a namespace of its own (the simulated broker's among them)."""
    namespace = f"it-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics(["sim"]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    yield bus
    await bus.close()
