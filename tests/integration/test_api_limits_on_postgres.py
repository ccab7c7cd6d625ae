"""Limits that must hold across API processes: two apps, each with its own engine (as two processes
have), on one Postgres database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime

import httpx
import pytest
from pydantic import SecretStr

from services.api import ApiResources, create_app
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine
from shared.settings import Settings
from tests.support.api_window_clock import fresh_windows  # noqa: F401  (fixtures)


@pytest.fixture
async def two_apis(
    database_url: str,
    fresh_windows: datetime,  # noqa: F811  (the fixture imported above)
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    key = CredentialCipher.generate_key()
    settings = Settings(
        database_url=database_url,
        bus="memory",
        credentials_keys=SecretStr(key),
        token_rate_limit_per_minute=20,
        signup_rate_limit_per_hour=4,
        max_portfolios_per_user=3,
    )
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            engine = create_engine(database_url)
            stack.push_async_callback(engine.dispose)
            app = create_app(
                settings,
                resources=ApiResources(engine=engine, bus=InMemoryBus(), cipher=CredentialCipher(key)),
            )
            transport = httpx.ASGITransport(app=app)
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://api.test")
                )
            )
        yield clients[0], clients[1]


@pytest.mark.asyncio
async def test_two_api_processes_share_one_token_limit_and_one_sign_up_limit(
    two_apis: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = two_apis
    statuses = []
    for i, api in enumerate([first, second, first, second, first]):
        statuses.append((await api.post("/v1/users", json={"email": f"u{i}@example.com"})).status_code)
    assert statuses == [201, 201, 201, 201, 429]  # 4 an hour from this address, counted by both

    token = (await first.post("/v1/tokens", json={"name": "x"}, headers={})).status_code
    assert token == 401
    signed = await second.post("/v1/users", json={"email": "late@example.com"})
    assert signed.status_code == 429 and int(signed.headers["Retry-After"]) >= 1


@pytest.mark.asyncio
async def test_concurrent_requests_through_two_apis_are_each_counted_once(
    two_apis: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = two_apis
    created = await first.post("/v1/users", json={"email": "busy@example.com"})
    headers = {"Authorization": f"Bearer {created.json()['api_token']}"}

    answers = await asyncio.gather(*(api.get("/v1/me", headers=headers) for api in [first, second] * 15))

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 20 + [429] * 10  # exactly the limit passes, whichever process counted


@pytest.mark.asyncio
async def test_concurrent_creations_cannot_exceed_the_portfolio_quota(
    two_apis: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = two_apis
    created = await first.post("/v1/users", json={"email": "greedy@example.com"})
    headers = {"Authorization": f"Bearer {created.json()['api_token']}"}

    answers = await asyncio.gather(
        *(
            api.post("/v1/portfolios", json={"name": f"p{i}"}, headers=headers)
            for i, api in enumerate([first, second] * 4)
        )
    )

    assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 5
    assert len((await second.get("/v1/portfolios", headers=headers)).json()["items"]) == 3


@pytest.mark.asyncio
async def test_a_write_refused_by_a_read_tokens_scope_is_not_counted(
    two_apis: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """On Postgres the token is looked up and counted in one statement: only what its scope allows."""
    first, second = two_apis
    created = await first.post("/v1/users", json={"email": "reader@example.com"})
    owner = {"Authorization": f"Bearer {created.json()['api_token']}"}
    issued = await first.post("/v1/tokens", json={"name": "ro", "scope": "read"}, headers=owner)
    reader = {"Authorization": f"Bearer {issued.json()['token']}"}

    refused = [
        await api.post("/v1/portfolios", json={"name": "p"}, headers=reader) for api in [first, second] * 3
    ]
    reads = [await api.get("/v1/me", headers=reader) for api in [first, second] * 11]

    assert {r.status_code for r in refused} == {403}
    assert [r.status_code for r in reads] == [200] * 20 + [429] * 2
