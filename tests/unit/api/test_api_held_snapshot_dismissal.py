"""Dismissing a held snapshot: the owner's SnapshotDismissed, which the ledger applies by dropping it."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest

from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.events import OneOf, SnapshotAccepted, SnapshotDismissed, decode_on_topic
from tests.unit.api.conftest import Headers
from tests.unit.api.ledger_feed import at
from tests.unit.api.test_api_held_snapshots import _hold_one, _user_id

REVIEWS = OneOf((SnapshotAccepted, SnapshotDismissed))


@pytest.mark.asyncio
async def test_dismissing_publishes_snapshot_dismissed_and_the_ledger_drops_the_snapshot(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger, bus: InMemoryBus
) -> None:
    first, held = await _hold_one(ledger, account_id)

    response = await client.post(
        f"/v1/accounts/{account_id}/held-snapshot/dismiss",
        json={"snapshot_id": str(held.event_id)},
        headers=alice,
    )

    assert response.status_code == 202
    alice_id = await _user_id(client, alice)
    assert response.json() == {"snapshot_id": str(held.event_id), "dismissed_by": alice_id}
    (record,) = bus.records(topics.SNAPSHOT_REVIEWS)
    assert record.key == account_id
    dismissed = decode_on_topic(REVIEWS, record.value)  # as the ledger's consumer decodes the topic
    assert isinstance(dismissed, SnapshotDismissed)
    assert (dismissed.snapshot_id, str(dismissed.dismissed_by)) == (held.event_id, alice_id)

    await ledger.apply_batch([dismissed])

    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)
    holdings = await client.get(f"/v1/accounts/{account_id}/holdings", headers=alice)
    detail = await client.get(f"/v1/accounts/{account_id}/snapshots/{held.event_id}", headers=alice)
    trades = await client.get("/v1/transactions", params={"from": at(2).isoformat()}, headers=alice)
    assert account.json()["held_snapshot"] is None
    assert datetime.fromisoformat(account.json()["positions_as_of"]) == at(1)
    assert sorted(h["symbol"] for h in holdings.json()) == sorted(h.symbol for h in first.holdings)
    assert detail.json()["status"] == "dismissed"
    assert trades.json()["items"] == []

    # Nothing is held any more: neither decision can be sent again.
    for decision in ("dismiss", "accept"):
        again = await client.post(
            f"/v1/accounts/{account_id}/held-snapshot/{decision}",
            json={"snapshot_id": str(held.event_id)},
            headers=alice,
        )
        assert again.status_code == 409
    assert len(bus.records(topics.SNAPSHOT_REVIEWS)) == 1


@pytest.mark.asyncio
async def test_a_dismissal_that_arrives_after_the_snapshot_was_accepted_changes_nothing(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger
) -> None:
    _, held = await _hold_one(ledger, account_id)
    alice_id = await _user_id(client, alice)
    accepted = SnapshotAccepted(account_id=held.account_id, snapshot_id=held.event_id, accepted_by=alice_id)
    late = SnapshotDismissed(account_id=held.account_id, snapshot_id=held.event_id, dismissed_by=alice_id)

    await ledger.apply_batch([accepted])
    await ledger.apply_batch([late])

    detail = await client.get(f"/v1/accounts/{account_id}/snapshots/{held.event_id}", headers=alice)
    holdings = await client.get(f"/v1/accounts/{account_id}/holdings", headers=alice)
    assert detail.json()["status"] == "applied"
    assert [(h["symbol"], h["quantity"]) for h in holdings.json()] == [("TCS", "12")]


def test_a_review_published_before_dismissals_existed_still_decodes_as_an_acceptance() -> None:
    accepted = SnapshotAccepted(account_id=uuid.uuid4(), snapshot_id=uuid.uuid4(), accepted_by=uuid.uuid4())
    old_message = accepted.model_dump_json(exclude={"event_type"}).encode()

    assert decode_on_topic(REVIEWS, old_message) == accepted


@pytest.mark.asyncio
async def test_dismissing_a_snapshot_that_is_not_the_held_one_is_409(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger, bus: InMemoryBus
) -> None:
    first, held = await _hold_one(ledger, account_id)

    response = await client.post(
        f"/v1/accounts/{account_id}/held-snapshot/dismiss",
        json={"snapshot_id": str(first.event_id)},
        headers=alice,
    )

    assert response.status_code == 409
    assert f"holds snapshot {held.event_id} for review, not {first.event_id}" in response.json()["detail"]
    assert "then dismiss it by that id" in response.json()["detail"]
    assert bus.records(topics.SNAPSHOT_REVIEWS) == []
