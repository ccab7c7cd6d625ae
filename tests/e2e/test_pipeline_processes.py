"""The whole path with every service in its own OS process, over real Kafka, Postgres and HTTP.

scheduler + api -> sync.requests.sim -> fetcher -> holdings.snapshots -> ledger -> Postgres -> api,
and ledger -> holdings.changes -> an independent subscriber (this test).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import topics
from shared.bus.kafka import KafkaBus
from shared.credentials import CredentialCipher
from shared.events import HoldingsChanged, decode_event
from tests.support.databases import drop_roles, service_role_urls
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses, free_port
from tests.support.waiting import eventually


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


async def test_an_account_created_over_http_is_synced_through_every_service(
    stack: tuple[ServiceProcesses, str, str], kafka: KafkaService
) -> None:
    services, base_url, namespace = stack
    subscriber = KafkaBus(kafka.bootstrap_servers.split(","), namespace=namespace)
    await subscriber.start()
    changes = await subscriber.subscribe([topics.HOLDINGS_CHANGES], group="e2e-observer")
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:

            async def api_ready() -> bool:
                services.assert_alive()
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(api_ready, timeout_s=60, what="the API process to be ready")
            token = (await http.post("/v1/users", json={"email": f"{uuid.uuid4().hex}@e2e.test"})).json()[
                "api_token"
            ]
            http.headers["Authorization"] = f"Bearer {token}"
            portfolio = (await http.post("/v1/portfolios", json={"name": "e2e"})).json()
            created = await http.post(
                f"/v1/portfolios/{portfolio['id']}/accounts", json={"broker": "sim", "label": "e2e"}
            )
            account = created.json()
            secret = f"secret-{uuid.uuid4().hex}"
            assert (
                await http.put(
                    f"/v1/accounts/{account['id']}/credentials",
                    json={"credentials": {"access_token": secret}},
                )
            ).status_code == 204
            sync = await http.post(f"/v1/accounts/{account['id']}/sync")
            assert sync.status_code == 202

            async def holdings() -> list[dict[str, Any]]:
                services.assert_alive()
                return list((await http.get(f"/v1/accounts/{account['id']}/holdings")).json())

            listed = await eventually(holdings, timeout_s=60, what="the API to list the synced holdings")
            runs = (await http.get(f"/v1/accounts/{account['id']}/sync-runs")).json()["items"]
            manual = [r for r in runs if r["id"] == sync.json()["request_id"]]

            async def manual_run_finished() -> bool:
                runs = (await http.get(f"/v1/accounts/{account['id']}/sync-runs")).json()["items"]
                return any(r["id"] == sync.json()["request_id"] and r["status"] == "succeeded" for r in runs)

            await eventually(manual_run_finished, timeout_s=60, what="the manual sync run to succeed")

        seen: list[HoldingsChanged] = []

        async def change_observed() -> bool:
            for record in await changes.fetch(max_records=100, timeout_s=0.5):
                seen.append(decode_event(HoldingsChanged, record.value))
            return any(c.account_id == uuid.UUID(account["id"]) for c in seen)

        await eventually(change_observed, timeout_s=60, what="HoldingsChanged on holdings.changes")
    finally:
        await changes.close()
        await subscriber.close()

    change = next(c for c in seen if c.account_id == uuid.UUID(account["id"]))
    assert {(c.symbol, str(c.quantity)) for c in change.changes} == {
        (h["symbol"], h["quantity"]) for h in listed
    }
    assert str(change.portfolio_id) == portfolio["id"]
    assert manual, "the manual sync run is listed"
    assert secret not in services.logs(tail_lines=10_000), "a credential reached a service log"
