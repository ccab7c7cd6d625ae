"""Every service as its own OS process on real Kafka and Postgres, each connecting as its own
database role, as `make up` runs them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.credentials import CredentialCipher
from tests.support.databases import drop_roles, service_role_urls
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses, free_port
from tests.support.waiting import eventually


@dataclass(frozen=True)
class RunningStack:
    services: ServiceProcesses
    base_url: str  # the API's
    namespace: str  # the stack's Kafka topics' prefix


@contextmanager
def service_stack(
    kafka: KafkaService,
    database_url: str,
    log_dir: Path,
    *,
    fetchers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningStack]:
    """api, scheduler, `fetchers` fetchers of the simulated broker (`fetcher`, `fetcher-2`, ...) and
    ledger; on exit each is stopped with SIGTERM and must exit 0."""
    namespace = f"e2e-{uuid.uuid4().hex[:8]}."
    port = free_port()
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
            **(env or {}),
        },
        log_dir,
    )
    services.run("topics", "create", "--brokers", "sim")
    services.run("db", "upgrade")
    services.run("db", "roles")
    services.start("api", "api")
    services.start("scheduler", "scheduler")
    for n in range(1, fetchers + 1):
        services.start("fetcher" if n == 1 else f"fetcher-{n}", "fetcher", "--broker", "sim")
    services.start("ledger", "ledger")
    try:
        yield RunningStack(services, f"http://127.0.0.1:{port}", namespace)
    finally:
        codes = services.stop_all()
        print(services.logs())
        asyncio.run(drop_roles(database_url, roles.values()))
        assert codes == dict.fromkeys(codes, 0), f"services did not stop cleanly: {codes}"


async def wait_for_api(services: ServiceProcesses, http: httpx.AsyncClient) -> None:
    """Until the API process (at `http`'s base URL) answers ready; fail at once if a service died."""

    async def ready() -> bool:
        services.assert_alive()
        try:
            return (await http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, timeout_s=60, what="the API process to be ready")
