"""The operator's views and actions (/v1/admin/...) on SQLite and the in-memory bus."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.user_admin import create_user
from shared import topics
from shared.bus.dead_letters import dead_letter_for
from shared.bus.memory import InMemoryBus
from shared.bus.port import Record
from shared.db.tables import BrokerAccount, SyncRun
from shared.events import SyncRequested, utc_now
from shared.fetcher_heartbeats import FetcherHeartbeat, farewell
from shared.settings import Settings
from tests.unit.api.conftest import Headers

ADMIN_GETS = [
    "/v1/admin/users",
    "/v1/admin/accounts",
    "/v1/admin/sync-runs",
    "/v1/admin/stuck-runs",
    "/v1/admin/brokers/stats",
    "/v1/admin/brokers/history",
    "/v1/admin/fetchers",
    "/v1/admin/lag",
    "/v1/admin/dead-letters",
]


@pytest.fixture
async def operator(settings: Settings) -> Headers:
    token = await create_user(settings, f"op-{uuid.uuid4().hex[:8]}@example.com", operator=True)
    return {"Authorization": f"Bearer {token}"}


async def test_every_operator_route_is_403_for_a_user(client: httpx.AsyncClient, alice: Headers) -> None:
    for path in ADMIN_GETS:
        response = await client.get(path, headers=alice)
        assert response.status_code == 403, path
    run = uuid.uuid4()
    for path, body in [
        (f"/v1/admin/sync-runs/{run}/rerequest", None),
        (f"/v1/admin/sync-runs/{run}/retry", None),
        ("/v1/admin/dead-letters/replay", {"topic": "holdings.snapshots.dlq"}),
    ]:
        assert (await client.post(path, json=body, headers=alice)).status_code == 403, path


async def _set_account(sessions: async_sessionmaker[AsyncSession], account_id: str, **values: object) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(BrokerAccount).where(BrokerAccount.id == uuid.UUID(account_id)).values(**values)
        )


async def _ids(client: httpx.AsyncClient, path: str, headers: Headers) -> set[str]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


async def test_accounts_and_users_across_users_by_state(
    client: httpx.AsyncClient,
    operator: Headers,
    alice: Headers,
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    me = (await client.get("/v1/me", headers=alice)).json()["id"]
    assert account_id in await _ids(client, "/v1/admin/accounts?never_synced=true", operator)
    assert account_id not in await _ids(client, "/v1/admin/accounts?needs_reauth=true", operator)
    assert account_id not in await _ids(client, "/v1/admin/accounts?broker=zerodha", operator)

    await _set_account(
        sessions, account_id, needs_reauth=True, consecutive_failures=3, last_success_at=utc_now()
    )
    assert account_id in await _ids(client, "/v1/admin/accounts?needs_reauth=true&broker=sim", operator)
    assert account_id in await _ids(client, "/v1/admin/accounts?failing_at_least=3", operator)
    assert account_id not in await _ids(client, "/v1/admin/accounts?failing_at_least=4", operator)
    assert account_id not in await _ids(client, "/v1/admin/accounts?never_synced=true", operator)
    assert me in await _ids(client, "/v1/admin/users?failing_at_least=3", operator)
    assert me not in await _ids(client, "/v1/admin/users?failing_at_least=4", operator)
    users = (await client.get("/v1/admin/users", headers=operator)).json()["items"]
    assert [u["accounts"] for u in users if u["id"] == me] == [1]


async def test_lists_page_and_refuse_a_foreign_cursor(
    client: httpx.AsyncClient, operator: Headers, alice: Headers
) -> None:
    first = (await client.get("/v1/admin/users?limit=1", headers=operator)).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = (
        await client.get(f"/v1/admin/users?limit=1&cursor={first['next_cursor']}", headers=operator)
    ).json()
    assert second["items"][0]["id"] != first["items"][0]["id"]
    foreign = await client.get(f"/v1/admin/accounts?cursor={first['next_cursor']}", headers=operator)
    assert foreign.status_code == 400


async def _sync(client: httpx.AsyncClient, alice: Headers, account_id: str) -> str:
    response = await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)
    assert response.status_code == 202, response.text
    return str(response.json()["request_id"])


async def _age_run(sessions: async_sessionmaker[AsyncSession], run_id: str, **values: object) -> None:
    async with sessions.begin() as session:
        await session.execute(update(SyncRun).where(SyncRun.id == uuid.UUID(run_id)).values(**values))


async def test_sync_runs_by_status_and_counts_per_broker(
    client: httpx.AsyncClient,
    operator: Headers,
    alice: Headers,
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ok, failed, old = [await _sync(client, alice, account_id) for _ in range(3)]
    now = utc_now()
    await _age_run(sessions, ok, status="succeeded", finished_at=now - timedelta(minutes=1))
    await _age_run(sessions, failed, status="failed", finished_at=now - timedelta(minutes=30))
    await _age_run(sessions, old, status="failed", finished_at=now - timedelta(hours=5))
    assert await _ids(client, "/v1/admin/sync-runs?status=failed&broker=sim", operator) >= {failed, old}
    assert ok not in await _ids(client, "/v1/admin/sync-runs?status=failed", operator)

    stats = (await client.get("/v1/admin/brokers/stats", headers=operator)).json()
    (sim,) = [b for b in stats["brokers"] if b["broker"] == "sim"]
    assert sim["last_5_minutes"] == {"succeeded": 1, "failed": 0}
    assert sim["last_hour"] == {"succeeded": 1, "failed": 1}
    assert sim["last_day"] == {"succeeded": 1, "failed": 2}


async def test_outcomes_per_broker_hour_by_hour(
    client: httpx.AsyncClient,
    operator: Headers,
    alice: Headers,
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs = [await _sync(client, alice, account_id) for _ in range(4)]
    now = utc_now()
    for run, status, ago in zip(
        runs,
        ["succeeded", "failed", "failed", "succeeded"],
        [timedelta(minutes=1), timedelta(minutes=30), timedelta(hours=5, minutes=30), timedelta(hours=25)],
        strict=True,
    ):
        await _age_run(sessions, run, status=status, finished_at=now - ago)

    history = (await client.get("/v1/admin/brokers/history", headers=operator)).json()

    assert len(history["hours"]) == 24 and history["hours"] == sorted(history["hours"])
    (sim,) = [b for b in history["brokers"] if b["broker"] == "sim"]
    last, five_hours_ago = 23, 18  # hour 23 ends now; the run 25 hours ago is outside every hour
    assert {i: n for i, n in enumerate(sim["succeeded"]) if n} == {last: 1}
    assert {i: n for i, n in enumerate(sim["failed"]) if n} == {last: 1, five_hours_ago: 1}


async def test_a_stuck_run_is_listed_and_requested_again_with_its_own_id(
    client: httpx.AsyncClient,
    operator: Headers,
    alice: Headers,
    account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    run = await _sync(client, alice, account_id)
    assert run not in await _ids(client, "/v1/admin/stuck-runs", operator)
    await _age_run(sessions, run, requested_at=utc_now() - timedelta(hours=1))
    assert run in await _ids(client, "/v1/admin/stuck-runs", operator)

    response = await client.post(f"/v1/admin/sync-runs/{run}/rerequest", headers=operator)
    assert response.status_code == 202 and response.json() == {"run_id": run}
    sent = [SyncRequested.model_validate_json(r.value) for r in bus.records(topics.sync_requests("sim"))]
    assert [r.event_id for r in sent].count(uuid.UUID(run)) == 2
    assert run not in await _ids(client, "/v1/admin/stuck-runs", operator)  # requested just now

    await _age_run(sessions, run, status="succeeded", finished_at=utc_now())
    assert (await client.post(f"/v1/admin/sync-runs/{run}/rerequest", headers=operator)).status_code == 409
    assert (
        await client.post(f"/v1/admin/sync-runs/{uuid.uuid4()}/rerequest", headers=operator)
    ).status_code == 404


async def test_a_failed_run_is_retried_as_a_new_run(
    client: httpx.AsyncClient,
    operator: Headers,
    alice: Headers,
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    run = await _sync(client, alice, account_id)
    assert (await client.post(f"/v1/admin/sync-runs/{run}/retry", headers=operator)).status_code == 409
    await _age_run(sessions, run, status="failed", finished_at=utc_now())
    response = await client.post(f"/v1/admin/sync-runs/{run}/retry", headers=operator)
    assert response.status_code == 202
    retry = response.json()["run_id"]
    assert retry != run
    runs = (await client.get(f"/v1/accounts/{account_id}/sync-runs", headers=alice)).json()["items"]
    assert {r["id"]: r["status"] for r in runs}[retry] == "requested"


def _beat(fetcher_id: str, *, seconds_ago: float) -> FetcherHeartbeat:
    now = utc_now()
    return FetcherHeartbeat(
        fetcher_id=fetcher_id,
        broker="sim",
        host="h",
        pid=1,
        started_at=now - timedelta(hours=1),
        sent_at=now - timedelta(seconds=seconds_ago),
        in_flight=2,
        handled=7,
    )


async def test_fetchers_alive_gone_and_stopped(
    client: httpx.AsyncClient, operator: Headers, bus: InMemoryBus
) -> None:
    await bus.publish([_beat("alive", seconds_ago=1).message(), _beat("killed", seconds_ago=120).message()])
    await bus.publish([_beat("stopped", seconds_ago=1).message(), farewell("stopped")])
    items = (await client.get("/v1/admin/fetchers", headers=operator)).json()["items"]
    assert {i["fetcher_id"]: i["alive"] for i in items} == {"alive": True, "killed": False}
    assert {i["in_flight"] for i in items} == {2} and {i["handled"] for i in items} == {7}


async def test_lag_per_group_and_partition(
    client: httpx.AsyncClient, operator: Headers, bus: InMemoryBus, alice: Headers, account_id: str
) -> None:
    await _sync(client, alice, account_id)
    await _sync(client, alice, account_id)
    subscription = await bus.subscribe([topics.sync_requests("sim")], group="fetcher.sim")
    records = await subscription.fetch(max_records=1, timeout_s=1)
    await subscription.commit(records)
    report = (await client.get("/v1/admin/lag", headers=operator)).json()
    rows = [r for r in report["items"] if r["group"] == "fetcher.sim"]
    assert rows and all(r["lag"] == r["end"] - r["committed"] for r in rows)
    assert report["total"] == sum(r["lag"] for r in report["items"])
    assert sum(r["lag"] for r in rows) <= 1  # what the member was assigned minus the one committed


async def test_dead_letters_are_listed_redacted_and_replayed_once(
    client: httpx.AsyncClient, operator: Headers, bus: InMemoryBus, responses: list[str]
) -> None:
    secret = "gAAAAABsecretsecretsecretsecretsecretsecret=="
    original = b'{"not": "a sync request", "credentials_ciphertext": "' + secret.encode() + b'"}'
    record = Record(topics.sync_requests("sim"), 0, 5, "acct", original)
    await bus.publish([dead_letter_for(record, f"handler failed: token {secret}", group="fetcher.sim")])
    dlq = topics.dead_letters(topics.sync_requests("sim"))

    listing = await client.get(f"/v1/admin/dead-letters?topic={dlq}", headers=operator)
    assert listing.status_code == 200
    (entry,) = listing.json()["items"]
    assert entry["count"] == 1 and entry["newest"][0]["source_topic"] == topics.sync_requests("sim")
    assert entry["newest"][0]["replayed"] is False and "[redacted]" in entry["newest"][0]["reason"]
    assert not any(secret in body or base64.b64encode(original).decode() in body for body in responses)
    assert (await client.get("/v1/admin/dead-letters?topic=nope.dlq", headers=operator)).status_code == 404

    before = len(bus.records(topics.sync_requests("sim")))
    first = await client.post("/v1/admin/dead-letters/replay", json={"topic": dlq}, headers=operator)
    assert first.json() == {"replayed": 1, "already_replayed": 0, "skipped_before_since": 0}
    again = await client.post("/v1/admin/dead-letters/replay", json={"topic": dlq}, headers=operator)
    assert again.json() == {"replayed": 0, "already_replayed": 1, "skipped_before_since": 0}
    replayed = bus.records(topics.sync_requests("sim"))[before:]
    assert [r.value for r in replayed] == [original]
    listed = (await client.get(f"/v1/admin/dead-letters?topic={dlq}", headers=operator)).json()
    assert listed["items"][0]["newest"][0]["replayed"] is True


async def test_replay_since_skips_older_dead_letters(
    client: httpx.AsyncClient, operator: Headers, bus: InMemoryBus
) -> None:
    record = Record(topics.HOLDINGS_SNAPSHOTS, 0, 1, "k", b"{}")
    await bus.publish([dead_letter_for(record, "not a valid HoldingSnapshot", group="ledger")])
    since = (utc_now() + timedelta(minutes=1)).isoformat()
    response = await client.post(
        "/v1/admin/dead-letters/replay",
        json={"topic": "holdings.snapshots.dlq", "since": since},
        headers=operator,
    )
    assert response.json() == {"replayed": 0, "already_replayed": 0, "skipped_before_since": 1}
