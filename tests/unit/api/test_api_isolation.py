"""One user never sees, nor learns of, another's objects: their ids answer 404, like unknown ids."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.tables import BrokerAccount, Credential, SyncRun


@pytest.mark.asyncio
async def test_another_users_portfolio_and_account_are_404_everywhere(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    bob: dict[str, str],
    portfolio_id: str,
    account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    requests = [
        ("GET", f"/v1/portfolios/{portfolio_id}", None),
        ("GET", f"/v1/portfolios/{portfolio_id}/accounts", None),
        ("POST", f"/v1/portfolios/{portfolio_id}/accounts", {"broker": "sim", "label": "mine now"}),
        ("GET", f"/v1/portfolios/{portfolio_id}/holdings", None),
        ("GET", f"/v1/accounts/{account_id}", None),
        ("PUT", f"/v1/accounts/{account_id}/credentials", {"credentials": {"api_key": "bobs"}}),
        ("GET", f"/v1/accounts/{account_id}/holdings", None),
        ("GET", f"/v1/accounts/{account_id}/holdings?as_of=2026-01-31T15:30:00Z", None),
        ("GET", f"/v1/portfolios/{portfolio_id}/holdings?as_of=2026-01-31T15:30:00Z", None),
        ("GET", f"/v1/accounts/{account_id}/snapshots", None),
        ("GET", f"/v1/transactions?account_id={account_id}", None),
        ("GET", f"/v1/transactions?portfolio_id={portfolio_id}", None),
        ("GET", f"/v1/accounts/{account_id}/sync-runs", None),
        ("POST", f"/v1/accounts/{account_id}/sync", None),
    ]
    for method, path, body in requests:
        as_bob = await client.request(method, path, json=body, headers=bob)
        unknown = await client.request(
            method,
            path.replace(portfolio_id, str(uuid.uuid4())).replace(account_id, str(uuid.uuid4())),
            json=body,
            headers=bob,
        )

        assert as_bob.status_code == 404, (method, path, as_bob.text)
        # Indistinguishable from an id that does not exist.
        assert as_bob.json() == unknown.json()
        assert (await client.request(method, path, json=body, headers=alice)).status_code < 400, (
            method,
            path,
        )

    assert (await client.get("/v1/portfolios", headers=bob)).json()["items"] == []
    # Bob's attempts changed nothing of alice's.
    assert len(bus.records(topics.sync_requests("sim"))) == 1  # alice's own sync only
    async with sessions() as session:
        accounts = (await session.scalars(select(BrokerAccount))).all()
        credentials = (await session.scalars(select(Credential))).all()
        runs = (await session.scalars(select(SyncRun))).all()
    assert [a.label for a in accounts].count("mine now") == 1  # alice's own POST above
    assert len(credentials) == 1  # alice's own PUT above
    assert len(runs) == 1
