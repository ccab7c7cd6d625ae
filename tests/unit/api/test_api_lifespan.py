"""Without resources the app opens and closes its own; with them, it opens and closes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import ApiResources, create_app
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher, CredentialsKeyError
from shared.db.engine import SchemaOutOfDate
from shared.settings import Settings


class _ClosingRecordedBus(InMemoryBus):
    closed = False

    async def close(self) -> None:
        self.closed = True
        await super().close()


@pytest.mark.asyncio
async def test_the_lifespan_opens_its_own_resources_from_settings(
    settings: Settings, engine: AsyncEngine
) -> None:
    app = create_app(settings)

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client,
    ):
        ready = await client.get("/readyz")
        user = await client.post("/v1/users", json={"email": "own@example.com"})

    assert ready.status_code == 200
    assert user.status_code == 201
    assert not hasattr(app.state, "api_context")


def test_building_the_app_opens_nothing(tmp_path: Path, settings: Settings) -> None:
    database = tmp_path / "never-opened.db"

    create_app(
        settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{database}", "bus": "kafka"})
    )

    assert not database.exists()


@pytest.mark.asyncio
async def test_the_app_refuses_to_start_on_an_out_of_date_schema(tmp_path: Path, settings: Settings) -> None:
    database = tmp_path / "empty.db"
    app = create_app(settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{database}"}))

    with pytest.raises(SchemaOutOfDate, match="db upgrade"):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.asyncio
async def test_the_app_refuses_to_start_without_credentials_keys(
    settings: Settings, engine: AsyncEngine
) -> None:
    app = create_app(settings.model_copy(update={"credentials_keys": SecretStr("")}))

    with pytest.raises(CredentialsKeyError):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.asyncio
async def test_given_resources_are_used_and_left_open(
    settings: Settings, engine: AsyncEngine, cipher: CredentialCipher
) -> None:
    bus = _ClosingRecordedBus()
    app = create_app(settings, resources=ApiResources(engine=engine, bus=bus, cipher=cipher))

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client,
    ):
        assert (await client.get("/readyz")).status_code == 200

    assert bus.closed is False
    async with engine.connect() as connection:
        assert (await connection.execute(text("select 1"))).scalar_one() == 1
