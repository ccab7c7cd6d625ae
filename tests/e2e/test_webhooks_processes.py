"""Webhooks with every service its own OS process and Postgres role, over real Kafka and HTTP: an
account synced through api -> fetcher -> ledger, another refused by the broker for its credentials,
and the delivery service (`portfolio-sync webhooks`) POSTing `holdings.changed` and
`account.needs_reauth` to a receiver on 127.0.0.1 (allowed by WEBHOOKS_ALLOWED_NETWORKS), each
verified with the `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from shared.credentials import CredentialCipher
from tests.support.databases import drop_roles, service_role_urls
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses, free_port
from tests.support.waiting import eventually
from tests.support.webhook_receiver import Receiver, webhook_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def stack(kafka: KafkaService, database_url: str, tmp_path: Path) -> Iterator[tuple[ServiceProcesses, str]]:
    namespace = f"hooks-{uuid.uuid4().hex[:8]}."
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
            "SIMULATED_LATENCY_MS": "0",
            "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.1/32",
            "WEBHOOKS_POLL_SECONDS": "0.2",
        },
        tmp_path,
    )
    services.run("topics", "create", "--brokers", "sim")
    services.run("db", "roles")
    for name, args in {
        "api": ["api"],
        "fetcher": ["fetcher", "--broker", "sim"],
        "ledger": ["ledger"],
        "webhooks": ["webhooks"],
    }.items():
        services.start(name, *args)
    try:
        yield services, f"http://127.0.0.1:{port}"
    finally:
        codes = services.stop_all()
        print(services.logs())
        asyncio.run(drop_roles(database_url, roles.values()))
        assert codes == dict.fromkeys(codes, 0), f"services did not stop cleanly: {codes}"


async def test_the_delivery_service_posts_signed_webhooks_for_a_sync_and_a_refused_credential(
    stack: tuple[ServiceProcesses, str], receiver: Receiver
) -> None:
    services, base_url = stack
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:

        async def api_ready() -> bool:
            services.assert_alive()
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(api_ready, timeout_s=60, what="the API process to be ready")
        signup = await http.post("/v1/users", json={"email": f"{uuid.uuid4().hex}@e2e.test"})
        http.headers["Authorization"] = f"Bearer {signup.json()['api_token']}"
        portfolio = (await http.post("/v1/portfolios", json={"name": "hooks"})).json()
        endpoint = await http.post(
            f"/v1/portfolios/{portfolio['id']}/webhooks", json={"url": receiver.url + "/hook"}
        )
        assert endpoint.status_code == 201, endpoint.text
        secret = endpoint.json()["secret"]
        accounts = {}
        for label, market in (("good", "in"), ("refused", "nowhere")):
            account = (
                await http.post(
                    f"/v1/portfolios/{portfolio['id']}/accounts", json={"broker": "sim", "label": label}
                )
            ).json()
            accounts[label] = account["id"]
            credentials = await http.put(
                f"/v1/accounts/{account['id']}/credentials", json={"credentials": {"market": market}}
            )
            assert credentials.status_code == 204, credentials.text
            assert (await http.post(f"/v1/accounts/{account['id']}/sync")).status_code == 202

        async def both_received() -> dict[str, dict[str, object]] | None:
            services.assert_alive()
            payloads = {}
            for request in list(receiver.received):
                payload = Webhook(secret).verify(request.body, request.headers)
                payloads[str(payload["type"])] = payload["data"]
            return payloads if {"holdings.changed", "account.needs_reauth"} <= set(payloads) else None

        payloads = await eventually(both_received, timeout_s=90, what="both webhooks at the receiver")
        assert payloads["holdings.changed"]["account_id"] == accounts["good"]
        assert payloads["account.needs_reauth"]["account_id"] == accounts["refused"]
        assert payloads["account.needs_reauth"]["portfolio_id"] == portfolio["id"]

        log = (await http.get(f"/v1/webhooks/{endpoint.json()['id']}/deliveries")).json()["items"]
        assert {d["status"] for d in log} == {"delivered"}
        assert all(json.loads(r.body)["type"] != "sync.failed" for r in receiver.received)
    assert secret not in services.logs(tail_lines=10_000), "a webhook secret reached a service log"
