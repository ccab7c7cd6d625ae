"""The API over the unit layer's SQLite and in-memory bus (tests/unit/conftest.py), driven through httpx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api import ApiResources, create_app
from services.api.context import ApiContext
from services.ledger.handlers import Ledger
from shared.bus.memory import InMemoryBus
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.credentials import CredentialCipher
from shared.settings import Settings

Headers = dict[str, str]
BROKER = "sim"


@pytest.fixture
def settings(engine: AsyncEngine) -> Settings:
    """Settings naming the unit layer's database (`engine`, from tests/unit/conftest.py)."""
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        bus="memory",
        credentials_keys=SecretStr(CredentialCipher.generate_key()),
        default_sync_interval_seconds=900,
    )


@pytest.fixture
def cipher(settings: Settings) -> CredentialCipher:
    return CredentialCipher(settings.credentials_keys.get_secret_value())


@pytest.fixture
def responses() -> list[str]:
    """Every response body the client received, to prove that secrets never come back."""
    return []


@pytest.fixture
async def client(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, cipher: CredentialCipher, responses: list[str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = _app_for(settings, ApiResources(engine=engine, bus=bus, cipher=cipher))

    async def record(response: httpx.Response) -> None:
        await response.aread()
        responses.append(response.text)

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            event_hooks={"response": [record]},
        ) as http,
    ):
        yield http


_APPS: dict[str, FastAPI] = {}


def _app_for(settings: Settings, resources: ApiResources) -> FastAPI:
    """An app for these settings, given this test's resources.

    Building an app is most of an API test's set-up (FastAPI resolves every route), and an app
    keeps nothing of a test but its context (settings, database, bus, cipher): so apps are built once
    per distinct configuration and each test gets its own context in the shared one. The database
    URL and the credential keys differ per test and are read only through that context.
    """
    key = settings.model_dump_json(exclude={"database_url", "credentials_keys"})
    app = _APPS.get(key)
    if app is None:
        app = _APPS[key] = create_app(settings, resources=resources)
    app.state.api_context = ApiContext.create(settings, resources)
    return app


async def sign_up(client: httpx.AsyncClient) -> Headers:
    """A new user; returns the headers that authenticate as them."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    response = await client.post("/v1/users", json={"email": email})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['api_token']}"}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Headers:
    return await sign_up(client)


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> Headers:
    return await sign_up(client)


@pytest.fixture
async def portfolio_id(client: httpx.AsyncClient, alice: Headers) -> str:
    """A portfolio of alice's."""
    return await new_portfolio(client, alice, "Main")


@pytest.fixture
async def account_id(client: httpx.AsyncClient, alice: Headers, portfolio_id: str) -> str:
    """An account of alice's, at the simulated broker, in `portfolio_id`."""
    return await new_account(client, alice, portfolio_id, label="Trading")


@pytest.fixture
def ledger(sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus) -> Ledger:
    """The real ledger on the API's database and bus: tests feed it events, then read the API."""
    return Ledger(sessions=sessions, bus=bus)


async def new_account(
    client: httpx.AsyncClient, headers: Headers, portfolio_id: str, *, label: str = "more"
) -> str:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts", json={"broker": BROKER, "label": label}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def new_portfolio(client: httpx.AsyncClient, headers: Headers, name: str) -> str:
    response = await client.post("/v1/portfolios", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


class UnreachableBus(InMemoryBus):
    """A bus that refuses every publish, as Kafka does when it is down."""

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        raise BusUnavailable("bus is down")
