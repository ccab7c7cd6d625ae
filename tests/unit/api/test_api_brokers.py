"""GET /v1/brokers, and accounts and credentials checked against the broker types it lists."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import ApiResources, create_app
from services.fetcher.registry import known_brokers, plugin
from shared import brokers
from shared.brokers import BrokerLimits, BrokerType
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.settings import Settings

PLUGIN_TYPE = BrokerType(
    code="mybroker",
    name="MyBroker",
    credential_fields=("token",),
    limits=BrokerLimits(rate_per_s=3, burst=2, concurrency=4),
    doc_url="https://mybroker.example/api",
)


async def _account(client: httpx.AsyncClient, headers: dict[str, str], portfolio_id: str, broker: str) -> str:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts", json={"broker": broker, "label": "x"}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_brokers_lists_every_adapter_and_csv_with_credentials_and_limits(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    response = await client.get("/v1/brokers", headers=alice)

    assert response.status_code == 200
    listed = {b["code"]: b for b in response.json()}
    # Every broker the fetcher has an adapter for, plus statement imports, and nothing else.
    assert set(listed) == {*known_brokers(), "csv"} == {"sim", "zerodha", "upstox", "dhan", "alpaca", "csv"}
    assert listed["zerodha"]["credential_fields"] == ["api_key", "access_token"]
    assert listed["upstox"]["credential_fields"] == ["access_token"]
    assert listed["dhan"]["credential_fields"] == ["access_token"]
    assert listed["alpaca"]["credential_fields"] == ["key_id", "secret_key"]
    assert listed["alpaca"]["optional_credential_fields"] == ["environment"]
    assert listed["sim"]["credential_fields"] == []
    assert listed["zerodha"]["limits"] == {
        "rate_per_s": 10.0,
        "burst": 1,
        "concurrency": 10,
        "window_s": 1.0,
        "scope": "application",  # Kite counts per API key, over all its users
    }
    assert listed["alpaca"]["limits"]["scope"] == "account"
    assert listed["csv"]["limits"] is None
    assert (listed["csv"]["sync"], listed["sim"]["sync"]) == ("statement", "schedule")
    assert listed["zerodha"]["doc_url"].startswith("https://kite.trade/")


def test_the_fetchers_adapters_run_under_the_listed_limits() -> None:
    # One source of truth: the adapter's registered limits are the shared description's.
    for code, broker_type in brokers.broker_types().items():
        if broker_type.fetched:
            assert plugin(code).limits == broker_type.limits
            assert plugin(code).base_url == broker_type.base_url


async def test_brokers_needs_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/brokers")).status_code == 401


async def test_an_unknown_broker_is_a_422_naming_the_known_codes(
    client: httpx.AsyncClient, alice: dict[str, str], portfolio_id: str
) -> None:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "nosuchbroker", "label": "x"},
        headers=alice,
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "broker"]
    for code in ("sim", "zerodha", "upstox", "dhan", "alpaca", "csv"):
        assert code in error["msg"]
    listed = await client.get(f"/v1/portfolios/{portfolio_id}/accounts", headers=alice)
    assert listed.json()["items"] == []  # nothing was created


async def test_credentials_missing_a_required_field_are_a_422_that_echoes_no_value(
    client: httpx.AsyncClient, alice: dict[str, str], portfolio_id: str, responses: list[str]
) -> None:
    account_id = await _account(client, alice, portfolio_id, "zerodha")
    secret = "zz-unguessable-api-key-9431"

    response = await client.put(
        f"/v1/accounts/{account_id}/credentials",
        json={"credentials": {"api_key": secret, "access_token": "   "}},
        headers=alice,
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "credentials"]
    assert "access_token" in error["msg"]
    assert all(secret not in body for body in responses)
    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    assert account["has_credentials"] is False  # nothing was stored

    complete = {"api_key": secret, "access_token": "tok-1"}
    ok = await client.put(
        f"/v1/accounts/{account_id}/credentials", json={"credentials": complete}, headers=alice
    )
    assert ok.status_code == 204


async def test_alpaca_credentials_need_both_keys_but_not_the_environment(
    client: httpx.AsyncClient, alice: dict[str, str], portfolio_id: str
) -> None:
    account_id = await _account(client, alice, portfolio_id, "alpaca")
    url = f"/v1/accounts/{account_id}/credentials"

    half = await client.put(
        url, json={"credentials": {"key_id": "AK1", "environment": "paper"}}, headers=alice
    )
    both = await client.put(url, json={"credentials": {"key_id": "AK1", "secret_key": "s"}}, headers=alice)

    assert half.status_code == 422
    assert "secret_key" in half.json()["detail"][0]["msg"]
    assert both.status_code == 204


async def test_the_openapi_examples_name_real_broker_codes(client: httpx.AsyncClient) -> None:
    schema: dict[str, Any] = (await client.get("/openapi.json")).json()
    examples = schema["components"]["schemas"]["AccountCreate"]["properties"]["broker"]["examples"]
    assert "sim" in examples
    assert set(examples) <= set(brokers.broker_types())
    assert "list_brokers" in {op["operationId"] for path in schema["paths"].values() for op in path.values()}


async def test_a_plugins_broker_type_is_listed_and_accepted(
    settings: Settings,
    engine: AsyncEngine,
    bus: InMemoryBus,
    cipher: CredentialCipher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declared = EntryPoint("mybroker", f"{__name__}:PLUGIN_TYPE", brokers.ENTRY_POINT_GROUP)
    monkeypatch.setattr(brokers, "entry_points", lambda group: [declared] if group == declared.group else [])
    app = create_app(settings, resources=ApiResources(engine=engine, bus=bus, cipher=cipher))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as client:
        token = (await client.post("/v1/users", json={"email": "plugin@example.com"})).json()["api_token"]
        headers = {"Authorization": f"Bearer {token}"}
        listed = {b["code"]: b for b in (await client.get("/v1/brokers", headers=headers)).json()}
        portfolio = (await client.post("/v1/portfolios", json={"name": "P"}, headers=headers)).json()["id"]
        account_id = await _account(client, headers, portfolio, "mybroker")
        refused = await client.put(
            f"/v1/accounts/{account_id}/credentials", json={"credentials": {"other": "x"}}, headers=headers
        )

    assert listed["mybroker"]["credential_fields"] == ["token"]
    assert listed["mybroker"]["limits"] == {
        "rate_per_s": 3.0,
        "burst": 2,
        "concurrency": 4,
        "window_s": 1.0,
        "scope": "application",  # the cautious default
    }
    assert refused.status_code == 422 and "token" in refused.json()["detail"][0]["msg"]
