"""The e2e layer's database (a fresh Postgres database per test, as in tests/integration) and the
services as processes on it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.credentials import CredentialCipher
from shared.db.engine import create_engine
from tests.support.databases import drop_roles, service_role_urls
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses, free_port


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def stack(
    kafka: KafkaService, database_url: str, tmp_path: Path
) -> Iterator[tuple[ServiceProcesses, str, str]]:
    namespace = f"e2e-{uuid.uuid4().hex[:8]}."
    port = free_port()
    # Each service as its own role, as `make up` runs them (`db roles` below).
    roles = service_role_urls(database_url)
    services = ServiceProcesses(
        {
            "DATABASE_URL": database_url,
            **{f"{service.upper()}_DATABASE_URL": url for service, url in roles.items()},
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_NAMESPACE": namespace,
            "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
            "API_PORT": str(port),
            "SCHEDULER_TICK_SECONDS": "0.5",
            "SIMULATED_LATENCY_MS": "0",
        },
        tmp_path,
    )
    services.run("topics", "create", "--brokers", "sim")
    services.run("db", "upgrade")
    services.run("db", "roles")
    for name, args in {
        "api": ["api"],
        "scheduler": ["scheduler"],
        "fetcher": ["fetcher", "--broker", "sim"],
        "ledger": ["ledger"],
    }.items():
        services.start(name, *args)
    try:
        yield services, f"http://127.0.0.1:{port}", namespace
    finally:
        codes = services.stop_all()
        print(services.logs())
        asyncio.run(drop_roles(database_url, roles.values()))
        assert codes == dict.fromkeys(codes, 0), f"services did not stop cleanly: {codes}"
