"""The integration layer: the same handlers on real Postgres (a fresh database per test) and real Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from tests.support.databases import DatabaseCloner
from tests.support.infra import PostgresService


@pytest.fixture(scope="session")
def cloner(postgres: PostgresService) -> DatabaseCloner:
    return DatabaseCloner(postgres.url)


@pytest.fixture
async def database_url(cloner: DatabaseCloner) -> AsyncIterator[str]:
    url = await cloner.fresh()
    yield url
    await cloner.drop(url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()
