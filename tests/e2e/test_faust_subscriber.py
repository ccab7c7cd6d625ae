"""The faust-streaming subscriber (examples/subscribers/faust_positions.py) as its own process beside
the services, on real Kafka: its table of each account's positions, from holdings.current and
holdings.changes, equals the API's holdings, and forgets a removed account."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx

from tests.support.processes import ServiceProcesses, free_port
from tests.support.service_stack import wait_for_api
from tests.support.waiting import eventually


def _api_positions(holdings: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {f"{h['symbol']}@{h['exchange']}": Decimal(h["quantity"]) for h in holdings}


async def test_the_faust_apps_table_equals_the_apis_holdings_and_forgets_a_removed_account(
    stack: tuple[ServiceProcesses, str, str],
) -> None:
    services, base_url, _ = stack
    web_port = free_port()
    services.start_module(
        "faust",
        "examples.subscribers.faust_positions",
        "worker",
        "--loglevel",
        "info",
        env={"POSITIONS_WEB_PORT": str(web_port), "POSITIONS_PARTITIONS": "4"},
    )
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as http,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=10) as faust,
    ):
        await wait_for_api(services, http)
        token = (await http.post("/v1/users", json={"email": f"{uuid.uuid4().hex}@e2e.test"})).json()[
            "api_token"
        ]
        http.headers["Authorization"] = f"Bearer {token}"
        portfolio = (await http.post("/v1/portfolios", json={"name": "faust"})).json()
        accounts = []
        for label in ("one", "two", "three"):
            created = await http.post(
                f"/v1/portfolios/{portfolio['id']}/accounts", json={"broker": "sim", "label": label}
            )
            account = created.json()["id"]
            await http.put(f"/v1/accounts/{account}/credentials", json={"credentials": {"access_token": "t"}})
            assert (await http.post(f"/v1/accounts/{account}/sync")).status_code == 202
            accounts.append(account)

        async def faust_positions(account: str) -> dict[str, Decimal] | None:
            services.assert_alive()
            try:
                response = await faust.get(f"/accounts/{account}/positions")
            except httpx.TransportError:
                return None  # not serving yet
            if response.status_code == 404:
                return None
            return {k: Decimal(q) for k, q in response.json()["positions"].items()}

        async def tables_agree() -> bool:
            for account in accounts:
                listed = (await http.get(f"/v1/accounts/{account}/holdings")).json()
                if not listed or await faust_positions(account) != _api_positions(listed):
                    return False
            return True

        await eventually(tables_agree, timeout_s=120, what="the faust table to equal the API's holdings")

        removed = accounts.pop()
        assert (await http.delete(f"/v1/accounts/{removed}")).status_code == 204

        async def forgotten() -> bool:
            return (await faust.get(f"/accounts/{removed}/positions")).status_code == 404

        await eventually(forgotten, timeout_s=60, what="the faust app to forget the removed account")
        await eventually(tables_agree, timeout_s=60, what="the other accounts to stay in agreement")
