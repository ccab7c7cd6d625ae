"""The whole path with every service in its own OS process, over real Kafka, Postgres and HTTP.

scheduler + api -> sync.requests.sim -> fetcher -> holdings.snapshots -> ledger -> Postgres -> api,
and ledger -> holdings.changes -> an independent subscriber (this test).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from shared import topics
from shared.bus.kafka import KafkaBus
from shared.events import HoldingsChanged, decode_event
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses
from tests.support.service_stack import wait_for_api
from tests.support.waiting import eventually


async def test_an_account_created_over_http_is_synced_through_every_service(
    stack: tuple[ServiceProcesses, str, str], kafka: KafkaService
) -> None:
    services, base_url, namespace = stack
    subscriber = KafkaBus(kafka.bootstrap_servers.split(","), namespace=namespace)
    await subscriber.start()
    changes = await subscriber.subscribe([topics.HOLDINGS_CHANGES], group="e2e-observer")
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            await wait_for_api(services, http)
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
