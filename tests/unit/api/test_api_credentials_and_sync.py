from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api import ApiResources, create_app
from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import BrokerAccount, Credential, SyncRun
from shared.events import FailureKind, SyncFailed, SyncRequested, SyncTrigger, decode_event
from shared.settings import Settings
from tests.unit.api.conftest import UnreachableBus
from tests.unit.api.ledger_feed import at, holding, snapshot

SECRETS = {"api_key": "k3y-Zq81-unguessable", "api_secret": "s3cr3t-Xw42-unguessable"}


async def _set_needs_reauth(sessions: async_sessionmaker[AsyncSession], account_id: str) -> None:
    async with sessions() as session:
        account = await session.get(BrokerAccount, uuid.UUID(account_id))
        assert account is not None
        account.needs_reauth = True
        account.last_error = "invalid api key"
        await session.commit()


@pytest.mark.asyncio
async def test_credentials_travel_only_as_ciphertext_from_put_to_the_sync_request(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
    bus: InMemoryBus,
    cipher: CredentialCipher,
    responses: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    put = await client.put(
        f"/v1/accounts/{account_id}/credentials", json={"credentials": SECRETS}, headers=alice
    )

    assert put.status_code == 204
    assert put.content == b""
    async with sessions() as session:
        stored = await session.get(Credential, uuid.UUID(account_id))
    assert stored is not None
    for secret in SECRETS.values():
        assert secret not in stored.ciphertext
    assert cipher.decrypt(stored.ciphertext) == SECRETS
    account = await client.get(f"/v1/accounts/{account_id}", headers=alice)
    assert account.json()["has_credentials"] is True

    sync = await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)

    assert sync.status_code == 202
    request_id = sync.json()["request_id"]
    (record,) = bus.records(topics.sync_requests("sim"))
    assert record.topic == "sync.requests.sim"
    assert record.key == account_id
    event = decode_event(SyncRequested, record.value)
    assert str(event.event_id) == request_id
    assert str(event.account_id) == account_id
    assert event.broker == "sim"
    assert event.trigger is SyncTrigger.MANUAL
    assert event.credentials_ciphertext is not None
    assert cipher.decrypt(event.credentials_ciphertext) == SECRETS
    for secret in SECRETS.values():
        assert secret.encode() not in record.value
    async with sessions() as session:
        run = await session.get(SyncRun, uuid.UUID(request_id))
    assert run is not None
    assert (run.status, run.trigger, run.account_id) == ("requested", "manual", uuid.UUID(account_id))
    assert run.requested_at == event.occurred_at
    runs = await client.get(f"/v1/accounts/{account_id}/sync-runs", headers=alice)
    assert [r["id"] for r in runs.json()["items"]] == [request_id]
    assert runs.json()["items"][0]["status"] == "requested"

    # Nothing the API said or logged along the way holds a credential value.
    await client.get("/openapi.json")
    assert len(responses) >= 5
    for secret in SECRETS.values():
        assert not any(secret in body for body in responses)
        assert secret not in caplog.text
        assert not any(secret in repr(r.__dict__) for r in caplog.records)


@pytest.mark.asyncio
async def test_new_credentials_replace_the_old_ones(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
    cipher: CredentialCipher,
) -> None:
    first = await client.put(
        f"/v1/accounts/{account_id}/credentials", json={"credentials": SECRETS}, headers=alice
    )
    second = await client.put(
        f"/v1/accounts/{account_id}/credentials", json={"credentials": {"token": "rotated"}}, headers=alice
    )

    assert (first.status_code, second.status_code) == (204, 204)
    async with sessions() as session:
        rows = (
            await session.scalars(select(Credential).where(Credential.account_id == uuid.UUID(account_id)))
        ).all()
    assert len(rows) == 1
    assert cipher.decrypt(rows[0].ciphertext) == {"token": "rotated"}


@pytest.mark.asyncio
async def test_a_sync_without_credentials_carries_none(
    client: httpx.AsyncClient, alice: dict[str, str], account_id: str, bus: InMemoryBus
) -> None:
    sync = await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)

    assert sync.status_code == 202
    (record,) = bus.records(topics.sync_requests("sim"))
    assert decode_event(SyncRequested, record.value).credentials_ciphertext is None


@pytest.mark.asyncio
async def test_an_account_that_needs_reauth_refuses_to_sync_until_new_credentials_are_set(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
    bus: InMemoryBus,
) -> None:
    await _set_needs_reauth(sessions, account_id)

    refused = await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)

    assert refused.status_code == 409
    assert "set new ones" in refused.json()["detail"]
    assert f"/v1/accounts/{account_id}/credentials" in refused.json()["detail"]
    assert bus.records(topics.sync_requests("sim")) == []
    async with sessions() as session:
        assert (await session.scalars(select(SyncRun))).all() == []
    assert (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()["needs_reauth"] is True

    put = await client.put(
        f"/v1/accounts/{account_id}/credentials", json={"credentials": SECRETS}, headers=alice
    )

    assert put.status_code == 204
    assert (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()["needs_reauth"] is False
    assert (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).status_code == 202
    assert len(bus.records(topics.sync_requests("sim"))) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"credentials": {}},
        {"credentials": {"api_key": 12345}},
        {"credentials": {"": "value"}},
        {"credentials": {"api_key": "x" * 4097}},
        {"credentials": ["api_key", "k3y-Zq81-unguessable"]},
        {"credentials": {"api_key": "k3y-Zq81-unguessable"}, "note": "k3y-Zq81-unguessable"},
    ],
)
async def test_bad_credentials_bodies_are_422_and_not_echoed(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
    body: dict[str, object],
) -> None:
    response = await client.put(f"/v1/accounts/{account_id}/credentials", json=body, headers=alice)

    assert response.status_code == 422
    assert response.json()["detail"]
    assert "k3y-Zq81-unguessable" not in response.text
    assert "12345" not in response.text
    async with sessions() as session:
        assert await session.get(Credential, uuid.UUID(account_id)) is None


@pytest.mark.asyncio
async def test_sync_runs_are_newest_first_and_limited(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    async with sessions() as session:
        session.add_all(
            SyncRun(
                id=uuid.uuid4(),
                account_id=uuid.UUID(account_id),
                trigger="schedule",
                status="succeeded" if i % 2 else "failed",
                requested_at=start + timedelta(minutes=i),
                finished_at=start + timedelta(minutes=i, seconds=3),
                failure_kind=None if i % 2 else "transient",
                failure_reason=None if i % 2 else "broker timed out",
                snapshot_id=uuid.uuid4() if i % 2 else None,
            )
            for i in range(5)
        )
        await session.commit()

    response = await client.get(f"/v1/accounts/{account_id}/sync-runs", params={"limit": 3}, headers=alice)

    assert response.status_code == 200
    runs = response.json()["items"]
    assert [datetime.fromisoformat(r["requested_at"]) for r in runs] == [
        start + timedelta(minutes=i) for i in (4, 3, 2)
    ]
    assert runs[0]["status"] == "failed"
    assert runs[0]["failure_kind"] == "transient"
    assert runs[0]["failure_reason"] == "broker timed out"
    assert runs[0]["snapshot_id"] is None
    assert runs[1]["status"] == "succeeded"
    assert runs[1]["snapshot_id"] is not None
    assert [(r["attempts"], r["next_attempt_at"]) for r in runs] == [(1, None)] * 3
    all_runs = await client.get(f"/v1/accounts/{account_id}/sync-runs", headers=alice)
    assert len(all_runs.json()["items"]) == 5


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", ["0", "501", "-1", "many"])
async def test_a_bad_sync_runs_limit_is_422(
    client: httpx.AsyncClient, alice: dict[str, str], account_id: str, limit: str
) -> None:
    response = await client.get(
        f"/v1/accounts/{account_id}/sync-runs", params={"limit": limit}, headers=alice
    )

    assert response.status_code == 422


@pytest.mark.asyncio
async def test_a_sync_the_bus_refuses_is_503_and_its_run_is_closed_as_failed(
    settings: Settings,
    engine: AsyncEngine,
    cipher: CredentialCipher,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    app = create_app(settings, resources=ApiResources(engine=engine, bus=UnreachableBus(), cipher=cipher))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as client:
        token = (await client.post("/v1/users", json={"email": "x@example.com"})).json()["api_token"]
        headers = {"Authorization": f"Bearer {token}"}
        portfolio = (await client.post("/v1/portfolios", json={"name": "P"}, headers=headers)).json()["id"]
        account = await client.post(
            f"/v1/portfolios/{portfolio}/accounts",
            json={"broker": "sim", "label": "A"},
            headers=headers,
        )

        response = await client.post(f"/v1/accounts/{account.json()['id']}/sync", headers=headers)

    assert response.status_code == 503
    assert "try again" in response.json()["detail"]
    async with sessions() as session:
        (run,) = (await session.scalars(select(SyncRun))).all()
    assert run.status == "failed"
    assert run.failure_kind == "transient"
    assert run.finished_at is not None


async def _runs(client: httpx.AsyncClient, headers: dict[str, str], account_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/accounts/{account_id}/sync-runs", headers=headers)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["items"]
    return runs


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@pytest.mark.asyncio
async def test_sync_runs_and_the_account_status_follow_retries_as_the_ledger_records_them(
    client: httpx.AsyncClient, alice: dict[str, str], account_id: str, ledger: Ledger
) -> None:
    first = uuid.UUID(
        (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).json()["request_id"]
    )
    (requested,) = await _runs(client, alice, account_id)
    assert (requested["status"], requested["attempts"], requested["next_attempt_at"]) == (
        "requested",
        1,
        None,
    )

    await ledger.apply_batch(
        [
            SyncFailed(
                account_id=uuid.UUID(account_id),
                request_id=first,
                broker="sim",
                kind=FailureKind.TRANSIENT,
                reason="broker timed out",
                attempt=1,
                final=False,
                retry_at=at(1.25),
                occurred_at=at(1),
            )
        ]
    )

    (retrying,) = await _runs(client, alice, account_id)
    assert (retrying["status"], retrying["attempts"], _when(retrying["next_attempt_at"])) == (
        "retrying",
        1,
        at(1.25),
    )
    assert (retrying["finished_at"], retrying["failure_kind"], retrying["failure_reason"]) == (
        None,
        "transient",
        "broker timed out",
    )
    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    assert _when(account["last_attempt_at"]) == at(1)
    assert (account["consecutive_failures"], account["last_error"]) == (0, "transient: broker timed out")

    fetched = snapshot(account_id, at(1.5), holding("TCS", "1"), request_id=first, attempt=2)
    await ledger.apply_batch([fetched])

    (succeeded,) = await _runs(client, alice, account_id)
    assert (succeeded["status"], succeeded["attempts"], succeeded["next_attempt_at"]) == (
        "succeeded",
        2,
        None,
    )
    assert (succeeded["snapshot_id"], succeeded["failure_kind"]) == (str(fetched.event_id), None)
    assert succeeded["finished_at"] is not None
    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    assert [_when(account[k]) for k in ("last_attempt_at", "last_success_at", "positions_as_of")] == [
        at(1.5)
    ] * 3
    assert (account["consecutive_failures"], account["last_error"], account["needs_reauth"]) == (
        0,
        None,
        False,
    )

    second = uuid.UUID(
        (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).json()["request_id"]
    )
    await ledger.apply_batch(
        [
            SyncFailed(
                account_id=uuid.UUID(account_id),
                request_id=second,
                broker="sim",
                kind=FailureKind.AUTH,
                reason="invalid api key",
                attempt=3,
                occurred_at=at(2),
            )
        ]
    )

    failed, earlier = await _runs(client, alice, account_id)
    assert (failed["id"], earlier["id"]) == (str(second), str(first))
    assert (failed["status"], failed["attempts"], failed["next_attempt_at"]) == ("failed", 3, None)
    assert (_when(failed["finished_at"]), failed["failure_kind"]) == (at(2), "auth")
    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    assert (account["consecutive_failures"], account["needs_reauth"]) == (1, True)
    assert account["last_error"] == "auth: invalid api key"
    assert (_when(account["last_attempt_at"]), _when(account["last_success_at"])) == (at(2), at(1.5))


@pytest.mark.asyncio
async def test_one_sync_run_is_read_by_its_request_id_until_the_ledger_says_what_became_of_it(
    client: httpx.AsyncClient, alice: dict[str, str], account_id: str, ledger: Ledger
) -> None:
    request_id = (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).json()["request_id"]
    path = f"/v1/accounts/{account_id}/sync-runs/{request_id}"

    requested = await client.get(path, headers=alice)
    assert requested.status_code == 200
    assert (requested.json()["status"], requested.json()["snapshot_status"]) == ("requested", None)

    fetched = snapshot(account_id, at(1), holding("TCS", "1"), request_id=uuid.UUID(request_id))
    await ledger.apply_batch([fetched])

    succeeded = (await client.get(path, headers=alice)).json()
    assert (succeeded["id"], succeeded["status"]) == (request_id, "succeeded")
    assert (succeeded["snapshot_id"], succeeded["snapshot_status"]) == (str(fetched.event_id), "applied")


@pytest.mark.asyncio
async def test_a_sync_run_of_another_account_or_no_run_is_404_and_a_bad_id_422(
    client: httpx.AsyncClient, alice: dict[str, str], account_id: str
) -> None:
    request_id = (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).json()["request_id"]
    portfolio = (await client.post("/v1/portfolios", json={"name": "Other"}, headers=alice)).json()["id"]
    other = await client.post(
        f"/v1/portfolios/{portfolio}/accounts", json={"broker": "sim", "label": "B"}, headers=alice
    )

    elsewhere = await client.get(f"/v1/accounts/{other.json()['id']}/sync-runs/{request_id}", headers=alice)
    missing = await client.get(f"/v1/accounts/{account_id}/sync-runs/{uuid.uuid4()}", headers=alice)
    malformed = await client.get(f"/v1/accounts/{account_id}/sync-runs/not-a-uuid", headers=alice)

    assert (elsewhere.status_code, missing.status_code, malformed.status_code) == (404, 404, 422)
    assert missing.json()["detail"] == "this account has no sync run of that id"


@pytest.mark.asyncio
async def test_every_route_that_publishes_answers_503_with_retry_after_while_the_bus_is_down(
    settings: Settings, engine: AsyncEngine, cipher: CredentialCipher
) -> None:
    app = create_app(settings, resources=ApiResources(engine=engine, bus=UnreachableBus(), cipher=cipher))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as client:
        token = (await client.post("/v1/users", json={"email": "down@example.com"})).json()["api_token"]
        headers = {"Authorization": f"Bearer {token}"}
        portfolio = (await client.post("/v1/portfolios", json={"name": "P"}, headers=headers)).json()["id"]
        sim, csv = [
            (
                await client.post(
                    f"/v1/portfolios/{portfolio}/accounts",
                    json={"broker": code, "label": code},
                    headers=headers,
                )
            ).json()["id"]
            for code in ("sim", "csv")
        ]
        statement = b"symbol,quantity,average_price,currency\nAAPL,1,10,USD\n"
        answers = [
            await client.post(f"/v1/accounts/{sim}/sync", headers=headers),
            await client.post(
                f"/v1/accounts/{csv}/statements",
                content=statement,
                headers={**headers, "content-type": "text/csv"},
            ),
            await client.delete(f"/v1/accounts/{sim}", headers=headers),
            await client.delete(f"/v1/portfolios/{portfolio}", headers=headers),
            await client.delete("/v1/me", headers=headers),
        ]

    assert [a.status_code for a in answers] == [503] * len(answers), [a.text for a in answers]
    assert all(int(a.headers["retry-after"]) > 0 for a in answers)
