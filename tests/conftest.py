"""Session-wide real services. Kafka and Postgres start once per test session, on first use.

Where they come from (tests/support/infra.py): the services named by KAFKA_BOOTSTRAP_SERVERS /
DATABASE_URL, else testcontainers where a Docker engine answers, else local processes. If none can
start, every test that needs them fails with the reason: nothing is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.bus.memory import InMemoryBus
from shared.db.engine import session_factory
from tests.support.databases import DatabaseCloner
from tests.support.infra import KafkaService, PostgresService, provide_kafka, provide_postgres
from tests.support.kafka_cluster import KafkaCluster, provide_kafka_cluster


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaService]:
    service = provide_kafka()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """Three Kafka nodes as local processes, which a test may kill; started only for tests that ask."""
    cluster = provide_kafka_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresService]:
    service = provide_postgres()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def cloner(postgres: PostgresService) -> DatabaseCloner:
    return DatabaseCloner(postgres.url)


@pytest.fixture
async def database_url(cloner: DatabaseCloner) -> AsyncIterator[str]:
    """A fresh Postgres database at the current schema, dropped after the test."""
    url = await cloner.fresh()
    yield url
    await cloner.drop(url)


# `engine` is defined per layer: SQLite in tests/unit, a fresh Postgres database in tests/integration.
@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus(partitions=4)
