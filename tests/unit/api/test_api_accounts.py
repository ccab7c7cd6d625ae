from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.tables import BrokerAccount, Schedule
from shared.settings import Settings


@pytest.mark.asyncio
async def test_a_new_account_comes_with_a_schedule_due_now(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    portfolio_id: str,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts", json={"broker": "zerodha", "label": "Kite"}, headers=alice
    )

    assert response.status_code == 201
    body = response.json()
    assert body["broker"] == "zerodha"
    assert body["label"] == "Kite"
    assert body["portfolio_id"] == portfolio_id
    assert body["sync_interval_seconds"] == settings.default_sync_interval_seconds
    assert body["sync_enabled"] is True
    assert body["has_credentials"] is False
    assert body["needs_reauth"] is False
    assert body["consecutive_failures"] == 0
    assert body["last_success_at"] is None
    async with sessions() as session:
        schedule = await session.get(Schedule, uuid.UUID(body["id"]))
    assert schedule is not None
    assert schedule.enabled is True
    assert schedule.interval_seconds == settings.default_sync_interval_seconds
    assert before <= schedule.next_run_at <= datetime.now(UTC)


@pytest.mark.asyncio
async def test_an_explicit_sync_interval_is_kept(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    portfolio_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "alpaca", "label": "US", "sync_interval_seconds": 60},
        headers=alice,
    )

    assert response.status_code == 201
    assert response.json()["sync_interval_seconds"] == 60
    async with sessions() as session:
        schedule = await session.get(Schedule, uuid.UUID(response.json()["id"]))
    assert schedule is not None
    assert schedule.interval_seconds == 60


@pytest.mark.asyncio
@pytest.mark.parametrize("broker", ["Zerodha", "z", "1broker", "kite-connect", "a" * 33, "", "zerodha "])
async def test_a_broker_that_is_not_a_lowercase_code_is_422_with_a_clear_message(
    client: httpx.AsyncClient, alice: dict[str, str], portfolio_id: str, broker: str
) -> None:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts", json={"broker": broker, "label": "x"}, headers=alice
    )

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "broker"]
    assert "broker must be a lowercase code" in error["msg"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "extra",
    [
        {"sync_interval_seconds": 59},
        {"sync_interval_seconds": 0},
        {"sync_interval_seconds": -60},
        {"sync_interval_seconds": 10**12},
        {"sync_interval_seconds": "often"},
        {"label": ""},
        {"schedule": "hourly"},
    ],
)
async def test_bad_account_bodies_are_422(
    client: httpx.AsyncClient, alice: dict[str, str], portfolio_id: str, extra: dict[str, object]
) -> None:
    body: dict[str, object] = {"broker": "sim", "label": "x", **extra}

    response = await client.post(f"/v1/portfolios/{portfolio_id}/accounts", json=body, headers=alice)

    assert response.status_code == 422


@pytest.mark.asyncio
async def test_accounts_of_a_portfolio_are_listed_with_their_status(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    portfolio_id: str,
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    synced_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with sessions() as session:
        account = await session.get(BrokerAccount, uuid.UUID(account_id))
        assert account is not None
        account.last_attempt_at = synced_at + timedelta(minutes=5)
        account.last_success_at = synced_at
        account.positions_as_of = synced_at
        account.consecutive_failures = 2
        account.last_error = "broker timed out"
        await session.commit()
    second = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts", json={"broker": "upstox", "label": "Second"}, headers=alice
    )

    listed = await client.get(f"/v1/portfolios/{portfolio_id}/accounts", headers=alice)
    read = await client.get(f"/v1/accounts/{account_id}", headers=alice)

    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["items"]] == [account_id, second.json()["id"]]
    assert read.status_code == 200
    assert read.json() == listed.json()["items"][0]
    status = read.json()
    assert datetime.fromisoformat(status["last_success_at"]) == synced_at
    assert datetime.fromisoformat(status["positions_as_of"]) == synced_at
    assert datetime.fromisoformat(status["last_attempt_at"]) == synced_at + timedelta(minutes=5)
    assert status["consecutive_failures"] == 2
    assert status["last_error"] == "broker timed out"


@pytest.mark.asyncio
async def test_an_unknown_account_is_404(client: httpx.AsyncClient, alice: dict[str, str]) -> None:
    response = await client.get(f"/v1/accounts/{uuid.uuid4()}", headers=alice)

    assert response.status_code == 404
    assert response.json() == {"detail": "account not found"}


@pytest.mark.asyncio
async def test_an_account_in_an_unknown_portfolio_is_404(
    client: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    response = await client.post(
        f"/v1/portfolios/{uuid.uuid4()}/accounts", json={"broker": "sim", "label": "x"}, headers=alice
    )

    assert response.status_code == 404
