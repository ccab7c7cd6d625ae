"""Held snapshots: shown on the account, looked at, and accepted by their owner through the ledger."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import ApiResources, create_app
from services.api.schemas import SnapshotStatusOut
from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import SnapshotStatus
from shared.events import HoldingSnapshot, SnapshotAccepted, decode_event
from shared.settings import Settings
from tests.unit.api.conftest import Headers, UnreachableBus, new_account
from tests.unit.api.ledger_feed import at, holding, snapshot


async def _hold_one(ledger: Ledger, account_id: str) -> tuple[HoldingSnapshot, HoldingSnapshot]:
    """An account of four instruments, then a snapshot keeping one of them: the ledger holds it."""
    first = snapshot(
        account_id,
        at(1),
        holding("TCS", "10", "3500", "3600"),
        holding("INFY", "5", "1400"),
        holding("WIPRO", "8", "450"),
        holding("HDFC", "3", "1600"),
    )
    suspicious = snapshot(account_id, at(2), holding("TCS", "12", "3510", "3620.5"))
    await ledger.apply_batch([first])
    await ledger.apply_batch([suspicious])
    return first, suspicious


async def _user_id(client: httpx.AsyncClient, headers: Headers) -> str:
    return str((await client.get("/v1/me", headers=headers)).json()["id"])


def test_the_api_names_every_snapshot_status_the_ledger_writes() -> None:
    assert {s.value for s in SnapshotStatusOut} == {
        SnapshotStatus.APPLIED,
        SnapshotStatus.LATE,
        SnapshotStatus.HELD,
        SnapshotStatus.DISMISSED,
    }


@pytest.mark.asyncio
async def test_the_account_shows_its_held_snapshot_and_the_snapshot_its_holdings(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str, ledger: Ledger
) -> None:
    first, held = await _hold_one(ledger, account_id)

    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)
    listed = await client.get(f"/v1/portfolios/{portfolio_id}/accounts", headers=alice)
    detail = await client.get(f"/v1/accounts/{account_id}/snapshots/{held.event_id}", headers=alice)

    assert account.status_code == 200
    shown = account.json()["held_snapshot"]
    assert shown == {
        "id": str(held.event_id),
        "taken_at": shown["taken_at"],
        "reason": "the broker reported 1 of the 4 instruments held before",
        "holdings_count": 1,
    }
    assert datetime.fromisoformat(shown["taken_at"]) == at(2)
    assert datetime.fromisoformat(account.json()["positions_as_of"]) == at(1)  # still the first
    assert [a["held_snapshot"] for a in listed.json()["items"]] == [shown]
    assert detail.status_code == 200
    body = detail.json()
    assert (body["id"], body["status"], body["holdings_count"]) == (str(held.event_id), "held", 1)
    assert datetime.fromisoformat(body["taken_at"]) == at(2)
    assert body["holdings"] == [
        {
            "symbol": "TCS",
            "exchange": "NSE",
            "isin": None,
            "currency": "INR",
            "asset_type": "equity",
            "quantity": "12",
            "average_price": "3510",
            "last_price": "3620.5",
            "market_value": "43446",
        }
    ]
    applied = await client.get(f"/v1/accounts/{account_id}/snapshots/{first.event_id}", headers=alice)
    assert applied.json()["status"] == "applied"
    assert [h["symbol"] for h in applied.json()["holdings"]] == ["HDFC", "INFY", "TCS", "WIPRO"]


@pytest.mark.asyncio
async def test_an_account_without_a_held_snapshot_shows_none(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger
) -> None:
    await ledger.apply_batch([snapshot(account_id, at(1), holding("TCS", "1"))])

    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)

    assert account.json()["held_snapshot"] is None
    assert datetime.fromisoformat(account.json()["positions_as_of"]) == at(1)


@pytest.mark.asyncio
async def test_accepting_publishes_snapshot_accepted_and_the_ledger_applies_it(
    client: httpx.AsyncClient,
    alice: Headers,
    account_id: str,
    ledger: Ledger,
    bus: InMemoryBus,
) -> None:
    _, held = await _hold_one(ledger, account_id)

    response = await client.post(
        f"/v1/accounts/{account_id}/held-snapshot/accept",
        json={"snapshot_id": str(held.event_id)},
        headers=alice,
    )

    assert response.status_code == 202
    alice_id = await _user_id(client, alice)
    assert response.json() == {"snapshot_id": str(held.event_id), "accepted_by": alice_id}
    (record,) = bus.records(topics.SNAPSHOT_REVIEWS)
    assert record.key == account_id
    accepted = decode_event(SnapshotAccepted, record.value)
    assert (str(accepted.account_id), accepted.snapshot_id, str(accepted.accepted_by)) == (
        account_id,
        held.event_id,
        alice_id,
    )

    await ledger.apply_batch([accepted])

    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)
    holdings = await client.get(f"/v1/accounts/{account_id}/holdings", headers=alice)
    detail = await client.get(f"/v1/accounts/{account_id}/snapshots/{held.event_id}", headers=alice)
    trades = await client.get("/v1/transactions", params={"from": at(2).isoformat()}, headers=alice)
    assert account.json()["held_snapshot"] is None
    assert datetime.fromisoformat(account.json()["positions_as_of"]) == at(2)
    assert [(h["symbol"], h["quantity"]) for h in holdings.json()] == [("TCS", "12")]
    assert detail.json()["status"] == "applied"
    assert sorted((t["symbol"], t["kind"], t["quantity"]) for t in trades.json()["items"]) == [
        ("HDFC", "closing", "3"),
        ("INFY", "closing", "5"),
        ("TCS", "buy", "2"),
        ("WIPRO", "closing", "8"),
    ]
    assert {t["snapshot_id"] for t in trades.json()["items"]} == {str(held.event_id)}

    again = await client.post(
        f"/v1/accounts/{account_id}/held-snapshot/accept",
        json={"snapshot_id": str(held.event_id)},
        headers=alice,
    )
    assert again.status_code == 409
    assert again.json()["detail"].startswith("this account holds no snapshot for review")
    assert len(bus.records(topics.SNAPSHOT_REVIEWS)) == 1


@pytest.mark.asyncio
async def test_accepting_a_snapshot_that_is_not_the_held_one_is_409_naming_the_held_one(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger, bus: InMemoryBus
) -> None:
    first, held = await _hold_one(ledger, account_id)

    for wrong in (first.event_id, uuid.uuid4()):
        response = await client.post(
            f"/v1/accounts/{account_id}/held-snapshot/accept", json={"snapshot_id": str(wrong)}, headers=alice
        )

        assert response.status_code == 409
        detail = response.json()["detail"]
        assert f"holds snapshot {held.event_id} for review, not {wrong}" in detail
        assert f"/v1/accounts/{account_id}/snapshots/{held.event_id}" in detail
    assert bus.records(topics.SNAPSHOT_REVIEWS) == []
    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)
    assert account.json()["held_snapshot"]["id"] == str(held.event_id)


@pytest.mark.asyncio
async def test_accepting_when_nothing_is_held_is_409(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger, bus: InMemoryBus
) -> None:
    applied = snapshot(account_id, at(1), holding("TCS", "1"))
    await ledger.apply_batch([applied])

    response = await client.post(
        f"/v1/accounts/{account_id}/held-snapshot/accept",
        json={"snapshot_id": str(applied.event_id)},
        headers=alice,
    )

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "this account holds no snapshot for review: a later sync may have confirmed or dismissed it "
        f"(see GET /v1/accounts/{account_id}/snapshots)"
    )
    assert bus.records(topics.SNAPSHOT_REVIEWS) == []


@pytest.mark.asyncio
async def test_a_held_snapshot_a_later_sync_dismissed_can_no_longer_be_accepted(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger
) -> None:
    first, held = await _hold_one(ledger, account_id)
    await ledger.apply_batch([snapshot(account_id, at(3), *first.holdings)])

    response = await client.post(
        f"/v1/accounts/{account_id}/held-snapshot/accept",
        json={"snapshot_id": str(held.event_id)},
        headers=alice,
    )
    detail = await client.get(f"/v1/accounts/{account_id}/snapshots/{held.event_id}", headers=alice)

    assert response.status_code == 409
    assert detail.json()["status"] == "dismissed"


@pytest.mark.asyncio
async def test_another_users_account_and_snapshots_are_404(
    client: httpx.AsyncClient,
    alice: Headers,
    bob: Headers,
    portfolio_id: str,
    account_id: str,
    ledger: Ledger,
    bus: InMemoryBus,
) -> None:
    _, held = await _hold_one(ledger, account_id)
    requests = [
        ("POST", f"/v1/accounts/{account_id}/held-snapshot/accept", {"snapshot_id": str(held.event_id)}),
        ("GET", f"/v1/accounts/{account_id}/snapshots", None),
        ("GET", f"/v1/accounts/{account_id}/snapshots/{held.event_id}", None),
    ]
    for method, path, body in requests:
        as_bob = await client.request(method, path, json=body, headers=bob)
        unknown = await client.request(
            method, path.replace(account_id, str(uuid.uuid4())), json=body, headers=bob
        )

        assert as_bob.status_code == 404, path
        assert as_bob.json() == unknown.json() == {"detail": "account not found"}
    assert bus.records(topics.SNAPSHOT_REVIEWS) == []
    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)
    assert account.json()["held_snapshot"]["id"] == str(held.event_id)

    # One of alice's own snapshots, under another of her accounts' paths, is no snapshot of that one.
    other = await new_account(client, alice, portfolio_id)
    elsewhere = await client.get(f"/v1/accounts/{other}/snapshots/{held.event_id}", headers=alice)
    missing = await client.get(f"/v1/accounts/{account_id}/snapshots/{uuid.uuid4()}", headers=alice)
    assert elsewhere.status_code == missing.status_code == 404
    assert elsewhere.json() == missing.json() == {"detail": "snapshot not found"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [{}, {"snapshot_id": "not-a-uuid"}, {"snapshot_id": str(uuid.uuid4()), "note": "sure"}, []],
)
async def test_a_bad_accept_body_is_422(
    client: httpx.AsyncClient, alice: Headers, account_id: str, bus: InMemoryBus, body: object
) -> None:
    response = await client.post(f"/v1/accounts/{account_id}/held-snapshot/accept", json=body, headers=alice)

    assert response.status_code == 422
    assert response.json()["detail"]
    assert bus.records(topics.SNAPSHOT_REVIEWS) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", ["0", "501", "few"])
async def test_a_bad_snapshots_limit_is_422(
    client: httpx.AsyncClient, alice: Headers, account_id: str, limit: str
) -> None:
    response = await client.get(
        f"/v1/accounts/{account_id}/snapshots", params={"limit": limit}, headers=alice
    )

    assert response.status_code == 422


@pytest.mark.asyncio
async def test_an_acceptance_the_bus_refuses_is_503_and_the_snapshot_stays_held(
    settings: Settings,
    engine: AsyncEngine,
    cipher: CredentialCipher,
    client: httpx.AsyncClient,
    alice: Headers,
    account_id: str,
    ledger: Ledger,
) -> None:
    _, held = await _hold_one(ledger, account_id)
    app = create_app(settings, resources=ApiResources(engine=engine, bus=UnreachableBus(), cipher=cipher))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as down:
        response = await down.post(
            f"/v1/accounts/{account_id}/held-snapshot/accept",
            json={"snapshot_id": str(held.event_id)},
            headers=alice,
        )

    assert response.status_code == 503
    assert "try again" in response.json()["detail"]
    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)
    assert account.json()["held_snapshot"]["id"] == str(held.event_id)
