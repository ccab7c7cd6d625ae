from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.tables import ApiToken


@pytest.mark.asyncio
async def test_a_new_user_gets_a_token_shown_once_and_stored_as_its_hash(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/v1/users", json={"email": "  Ada@Example.com "})

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "api_token"}
    assert body["email"] == "ada@example.com"
    token = body["api_token"]
    assert len(token) >= 40
    async with sessions() as session:
        stored = await session.scalar(select(ApiToken).where(ApiToken.user_id == uuid.UUID(body["id"])))
    assert stored is not None
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored.token_hash

    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["id"] == body["id"]
    assert me.json()["email"] == "ada@example.com"
    assert "api_token" not in me.json()


@pytest.mark.asyncio
async def test_two_users_get_different_tokens(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/users", json={"email": "one@example.com"})
    second = await client.post("/v1/users", json={"email": "two@example.com"})

    assert first.json()["api_token"] != second.json()["api_token"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [{}, {"email": "not-an-email"}, {"email": ""}, {"email": 42}, {"email": "a@example.com", "admin": True}],
)
async def test_bad_sign_up_bodies_are_422(client: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await client.post("/v1/users", json=body)

    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.asyncio
async def test_malformed_json_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/users", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer not-a-token"}, 'Bearer error="invalid_token"'),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"),
    ],
)
async def test_without_a_valid_token_every_private_route_is_401(
    client: httpx.AsyncClient, headers: dict[str, str], challenge: str
) -> None:
    some_id = uuid.uuid4()
    requests = [
        ("GET", "/v1/me", None),
        ("GET", "/v1/portfolios", None),
        ("POST", "/v1/portfolios", {"name": "x"}),
        ("GET", f"/v1/portfolios/{some_id}", None),
        ("GET", f"/v1/portfolios/{some_id}/accounts", None),
        ("POST", f"/v1/portfolios/{some_id}/accounts", {"broker": "sim", "label": "x"}),
        ("GET", f"/v1/portfolios/{some_id}/holdings", None),
        ("GET", f"/v1/accounts/{some_id}", None),
        ("PUT", f"/v1/accounts/{some_id}/credentials", {"credentials": {"k": "v"}}),
        ("GET", f"/v1/accounts/{some_id}/holdings", None),
        ("GET", f"/v1/accounts/{some_id}/sync-runs", None),
        ("POST", f"/v1/accounts/{some_id}/sync", None),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, json=body, headers=headers)

        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == challenge
        assert "token" in response.json()["detail"]


def test_operation_ids_are_the_route_functions_names_and_unique() -> None:
    from services.api.app import create_app
    from shared.settings import Settings

    document = create_app(Settings(credentials_keys="x")).openapi()
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert "list_portfolios" in ids
    assert all(i.isidentifier() and "_v1_" not in i for i in ids)
