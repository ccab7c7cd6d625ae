"""Limits: the token before the body, per-user quotas, rate limits, the client address behind a proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from services.api import ApiResources, create_app
from services.api.app import api_routes
from services.api.guard import GuardedRoute, client_address
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.settings import Settings
from tests.support.api_window_clock import fresh_windows  # noqa: F401  (fixtures)
from tests.unit.api.conftest import Headers, new_account, new_portfolio, sign_up


def _client(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, cipher: CredentialCipher, **changes: object
) -> httpx.AsyncClient:
    app = create_app(
        settings.model_copy(update=changes), resources=ApiResources(engine=engine, bus=bus, cipher=cipher)
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


@pytest.fixture
async def tight(
    settings: Settings,
    engine: AsyncEngine,
    bus: InMemoryBus,
    cipher: CredentialCipher,
    fresh_windows: datetime,  # noqa: F811  (the fixture imported above)
) -> AsyncIterator[httpx.AsyncClient]:
    """An API with small quotas and rate limits."""
    async with _client(
        settings,
        engine,
        bus,
        cipher,
        max_portfolios_per_user=2,
        max_accounts_per_user=3,
        token_rate_limit_per_minute=50,
        signup_rate_limit_per_hour=3,
    ) as http:
        yield http


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer not-a-token"}, 401)],
)
async def test_the_token_is_checked_before_the_body_is_read(
    client: httpx.AsyncClient, headers: Headers, status: int
) -> None:
    for path in ["/v1/portfolios", "/v1/tokens", "/v1/admin/invites"]:
        response = await client.post(
            path, content=b'{"name": ', headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == status, (path, response.text)


@pytest.mark.asyncio
async def test_a_read_token_is_refused_before_its_body_is_read(
    client: httpx.AsyncClient, alice: Headers
) -> None:
    reader = (await client.post("/v1/tokens", json={"name": "r", "scope": "read"}, headers=alice)).json()

    response = await client.post(
        "/v1/portfolios",
        content=b"not json",
        headers={"Authorization": f"Bearer {reader['token']}", "Content-Type": "application/json"},
    )

    assert response.status_code == 403


def test_every_route_is_guarded_and_documents_what_the_guard_answers() -> None:
    app = create_app(Settings(credentials_keys="x"))
    document = app.openapi()
    routes = api_routes(app)

    operations = {op["operationId"]: op for path in document["paths"].values() for op in path.values()}

    assert routes and all(isinstance(r, GuardedRoute) for r in routes)
    for route in routes:
        assert isinstance(route, GuardedRoute)
        documented = set(operations[route.name]["responses"])
        if route.authenticates:
            assert {"401", "429"} <= documented, route.name
            assert "403" in documented or route.methods <= {"GET", "HEAD"}, route.name
    public = {r.name for r in routes if isinstance(r, GuardedRoute) and not r.authenticates}
    assert public == {"healthz", "readyz", "create_user", "asyncapi_document"}


def test_a_plain_route_cannot_be_added() -> None:
    from fastapi import APIRouter

    from services.api.routes import users

    stray = APIRouter()
    stray.add_api_route("/stray", users.read_me)
    users.router.include_router(stray)
    try:
        with pytest.raises(TypeError, match="GuardedRoute"):
            create_app(Settings(credentials_keys="x"))
    finally:
        users.router.routes.pop()


@pytest.mark.asyncio
async def test_the_portfolio_quota_is_a_409_at_the_cap(tight: httpx.AsyncClient) -> None:
    user = await sign_up(tight)
    await new_portfolio(tight, user, "one")
    await new_portfolio(tight, user, "two")

    third = await tight.post("/v1/portfolios", json={"name": "three"}, headers=user)

    assert third.status_code == 409
    assert "MAX_PORTFOLIOS_PER_USER=2" in third.json()["detail"]
    assert len((await tight.get("/v1/portfolios", headers=user)).json()["items"]) == 2
    await new_portfolio(tight, await sign_up(tight), "one")  # a quota per user, not a global one


@pytest.mark.asyncio
async def test_the_account_quota_counts_every_portfolio_of_the_user(tight: httpx.AsyncClient) -> None:
    user = await sign_up(tight)
    first, second = await new_portfolio(tight, user, "one"), await new_portfolio(tight, user, "two")
    await new_account(tight, user, first)
    await new_account(tight, user, first)
    await new_account(tight, user, second)

    fourth = await tight.post(
        f"/v1/portfolios/{second}/accounts", json={"broker": "sim", "label": "x"}, headers=user
    )

    assert fourth.status_code == 409
    assert "MAX_ACCOUNTS_PER_USER=3" in fourth.json()["detail"]


@pytest.mark.asyncio
async def test_a_token_over_its_rate_is_429_with_retry_after_and_other_tokens_are_not(
    tight: httpx.AsyncClient,
) -> None:
    user, other = await sign_up(tight), await sign_up(tight)
    answers = [(await tight.get("/v1/me", headers=user)).status_code for _ in range(51)]

    assert answers[:50] == [200] * 50
    assert answers[50] == 429
    limited = await tight.get("/v1/me", headers=user)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "API token" in limited.json()["detail"]
    assert (await tight.get("/v1/me", headers=other)).status_code == 200


@pytest.mark.asyncio
async def test_sign_ups_over_the_rate_of_an_address_are_429_before_the_body_is_read(
    tight: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        await sign_up(tight)

    refused = await tight.post("/v1/users", content=b"{", headers={"Content-Type": "application/json"})

    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600


@pytest.mark.asyncio
async def test_a_zero_limit_is_no_limit(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, cipher: CredentialCipher
) -> None:
    async with _client(
        settings, engine, bus, cipher, signup_rate_limit_per_hour=0, token_rate_limit_per_minute=0
    ) as http:
        user = None
        for _ in range(25):
            user = await sign_up(http)
        assert user is not None
        assert all([(await http.get("/v1/me", headers=user)).status_code == 200 for _ in range(5)])


def _request(peer: str, forwarded: list[str]) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ("", "203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # no proxy trusted: the header is ignored
        ("10.0.0.0/8", "203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # an untrusted peer's header
        ("10.0.0.0/8", "10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.0/8", "10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.0.0.7"], "198.51.100.1"),  # spoofed head
        ("10.0.0.0/8,::1", "::1", ["198.51.100.1", "10.0.0.3"], "198.51.100.1"),
        ("10.0.0.0/8", "10.0.0.2", [], "10.0.0.2"),
    ],
)
def test_the_client_address_believes_only_trusted_proxies(
    trusted: str, peer: str, forwarded: list[str], client: str
) -> None:
    settings = Settings(credentials_keys="x", api_trusted_proxies=trusted)

    assert client_address(_request(peer, forwarded), settings) == client


def test_a_malformed_trusted_proxy_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="API_TRUSTED_PROXIES"):
        Settings(credentials_keys="x", api_trusted_proxies="10.0.0.0/8,proxy.local")
