"""Credentials sent with a new account: stored with it, so that its first scheduled sync has them."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.handlers import emit_due_syncs
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.events import SyncRequested, decode_event, utc_now
from tests.unit.api.conftest import Headers

SECRETS = {"market": "us", "note": "n0t-3ven-a-s3cret-but-w3-never-say-it"}


@pytest.mark.asyncio
async def test_the_first_scheduled_sync_of_an_account_created_with_credentials_carries_them(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    sessions: async_sessionmaker[AsyncSession],
    bus: InMemoryBus,
    cipher: CredentialCipher,
) -> None:
    created = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "sim", "label": "US", "credentials": SECRETS},
        headers=alice,
    )

    assert created.status_code == 201
    assert created.json()["has_credentials"] is True
    assert SECRETS["note"] not in created.text
    assert await emit_due_syncs(sessions, bus, now=utc_now(), limit=10) == 1
    (record,) = bus.records(topics.sync_requests("sim"))
    request = decode_event(SyncRequested, record.value)
    assert request.credentials_ciphertext is not None
    assert cipher.decrypt(request.credentials_ciphertext) == SECRETS


@pytest.mark.asyncio
async def test_credentials_missing_a_required_field_are_422_and_create_no_account(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str
) -> None:
    created = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "zerodha", "label": "Kite", "credentials": {"api_key": "k3y-only"}},
        headers=alice,
    )

    assert created.status_code == 422
    assert "zerodha credentials lack access_token" in created.text
    assert "k3y-only" not in created.text
    listed = await client.get(f"/v1/portfolios/{portfolio_id}/accounts", headers=alice)
    assert listed.json()["items"] == []


@pytest.mark.asyncio
async def test_a_statement_account_takes_no_credentials(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str
) -> None:
    created = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "csv", "label": "Demat", "credentials": {"x": "y"}},
        headers=alice,
    )

    assert created.status_code == 422
    assert "has no credentials: leave out credentials" in created.text
