"""Isolation that cannot be forgotten: every operation of the OpenAPI document that takes an id (a path
parameter, or a query parameter named `id` or `*_id`) is called by bob with alice's ids, and must answer
404, exactly as for an id that does not exist. A route added tomorrow is enumerated with the rest; one
with an id parameter this test cannot fill fails it until `_ids` learns how to make one.

Each id parameter is tried on its own too (alice's in that one, bob's own in the others), so a route that
checks only the first id of a path (the account, not the snapshot under it) is caught.

Operator routes (under /v1/admin) are out of this rule; a user who is not an operator gets 403 or 404
from every one of them, whatever the ids.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.tables import ApiToken
from shared.events import utc_now
from tests.unit.api.conftest import Headers, new_account, new_portfolio
from tests.unit.api.ledger_feed import at, holding, snapshot

ADMIN_PREFIX = "/v1/admin"
_ID_LIKE = re.compile(r"^(id|.+_id)$")


async def _ids(
    client: httpx.AsyncClient,
    headers: Headers,
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
) -> dict[str, str]:
    """One object of each kind a route may name by id, owned by the user of `headers`, by parameter name."""
    portfolio = await new_portfolio(client, headers, "Mine")
    account = await new_account(client, headers, portfolio)
    await client.put(f"/v1/accounts/{account}/credentials", json={"credentials": {"k": "v"}}, headers=headers)
    taken = snapshot(account, at(1), holding("TCS", "1"))
    await ledger.apply_batch([taken])
    run = await client.get(f"/v1/accounts/{account}/sync-runs/{taken.request_id}", headers=headers)
    assert run.status_code == 200  # the ledger records a snapshot nobody requested as a run
    me = (await client.get("/v1/me", headers=headers)).json()
    token = ApiToken(
        id=uuid.uuid4(),
        user_id=uuid.UUID(me["id"]),
        name=f"spare-{uuid.uuid4().hex[:8]}",
        token_hash=uuid.uuid4().hex * 2,
        created_at=utc_now(),
    )
    async with sessions.begin() as session:
        session.add(token)
    webhook = await client.post(
        f"/v1/portfolios/{portfolio}/webhooks", json={"url": "https://example.com/hook"}, headers=headers
    )
    return {
        "endpoint_id": webhook.json()["id"],
        "portfolio_id": portfolio,
        "account_id": account,
        "snapshot_id": str(taken.event_id),
        "run_id": str(taken.request_id),
        "token_id": str(token.id),
        "user_id": me["id"],
    }


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    methods = {"get", "post", "put", "patch", "delete"}
    return [
        (path, method, operation.get("parameters", []))
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in methods
    ]


def _request(path: str, parameters: list[dict[str, Any]], fill: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The URL and query with every id parameter filled from `fill`; AssertionError for one it cannot."""
    query = {}
    for parameter in parameters:
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            assert name in fill, f"{path}: cannot fill path parameter {name!r}: teach this test (_ids)"
            path = path.replace("{" + name + "}", fill[name])
        elif where == "query" and _ID_LIKE.match(name):
            assert name in fill, f"{path}: cannot fill id-like query parameter {name!r}: teach this test"
            query[name] = fill[name]
    return path, query


def _takes_an_id(parameters: list[dict[str, Any]]) -> list[str]:
    return [
        p["name"]
        for p in parameters
        if p["in"] == "path" or (p["in"] == "query" and _ID_LIKE.match(p["name"]))
    ]


@pytest.mark.asyncio
async def test_every_operation_that_takes_an_id_answers_404_to_another_user(
    client: httpx.AsyncClient,
    alice: Headers,
    bob: Headers,
    ledger: Ledger,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    spec = (await client.get("/openapi.json")).json()
    alices = await _ids(client, alice, ledger, sessions)
    bobs = await _ids(client, bob, ledger, sessions)
    published_before = {topic: len(bus.records(topic)) for topic in topics.all_topics(["sim"])}
    checked = []

    for path, method, parameters in _operations(spec):
        names = _takes_an_id(parameters)
        if path.startswith(ADMIN_PREFIX):
            url, query = _request(path, parameters, {**{n: str(uuid.uuid4()) for n in names}, **alices})
            response = await client.request(method, url, params=query, headers=bob)
            assert response.status_code in (403, 404), (method, path, response.status_code)
            continue
        if not names:
            continue
        unknown = {n: str(uuid.uuid4()) for n in names}
        # All of alice's ids at once, then each of alice's ids among bob's own.
        variants = [alices] + ([{**bobs, name: alices[name]} for name in names] if len(names) > 1 else [])
        for fill in variants:
            url, query = _request(path, parameters, fill)
            as_bob = await client.request(method, url, params=query, headers=bob)
            not_there = {**fill, **{n: unknown[n] for n in names if fill.get(n) == alices.get(n)}}
            url_unknown, query_unknown = _request(path, parameters, not_there)
            as_unknown = await client.request(method, url_unknown, params=query_unknown, headers=bob)

            assert as_bob.status_code == 404, (method, url, query, as_bob.status_code, as_bob.text)
            assert as_bob.json() == as_unknown.json(), (method, path)  # nothing tells them apart
        checked.append(f"{method.upper()} {path}")

    # The sweep covered the routes known today (and found any added since).
    assert {
        "GET /v1/portfolios/{portfolio_id}",
        "PATCH /v1/portfolios/{portfolio_id}",
        "DELETE /v1/portfolios/{portfolio_id}",
        "PATCH /v1/accounts/{account_id}",
        "DELETE /v1/accounts/{account_id}",
        "DELETE /v1/accounts/{account_id}/credentials",
        "GET /v1/accounts/{account_id}/snapshots/{snapshot_id}",
        "GET /v1/accounts/{account_id}/sync-runs/{run_id}",
        "POST /v1/accounts/{account_id}/sync",
        "GET /v1/transactions",
        "GET /v1/webhooks/{endpoint_id}/deliveries",
        "POST /v1/webhooks/{endpoint_id}/replays",
        "POST /v1/webhooks/{endpoint_id}/secret/rotate",
    } <= set(checked)
    # Nothing of alice's changed or was announced: every attempt stopped at the 404.
    assert {topic: len(bus.records(topic)) for topic in topics.all_topics(["sim"])} == published_before
    account = (await client.get(f"/v1/accounts/{alices['account_id']}", headers=alice)).json()
    assert (account["label"], account["has_credentials"]) == ("more", True)
    assert (await client.get(f"/v1/portfolios/{alices['portfolio_id']}", headers=alice)).json()[
        "name"
    ] == "Mine"
    snapshots = await client.get(f"/v1/accounts/{alices['account_id']}/snapshots", headers=alice)
    assert [s["id"] for s in snapshots.json()["items"]] == [alices["snapshot_id"]]
