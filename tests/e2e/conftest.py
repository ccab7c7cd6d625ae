"""The e2e layer's database (a fresh Postgres database per test, as in tests/integration) and the
services as processes on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses
from tests.support.service_stack import service_stack


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def stack(
    kafka: KafkaService, database_url: str, tmp_path: Path
) -> Iterator[tuple[ServiceProcesses, str, str]]:
    """api, scheduler, a fetcher of the simulated broker and ledger, each its own process and role."""
    with service_stack(kafka, database_url, tmp_path) as running:
        yield running.services, running.base_url, running.namespace
