"""The integration layer: the same handlers on real Postgres (a fresh database per test) and real Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from tests.support.databases import DatabaseCloner


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
