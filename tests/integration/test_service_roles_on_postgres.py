"""Each service's Postgres role, made by `db roles`, allows only its writes (docs/architecture.md#who-
writes-what) — and is enough for the service's own work."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api import storage_webhooks
from services.api.removal import remove_account
from services.api.storage import store_credentials
from services.fetcher.archive import ArchivedAnswer
from services.fetcher.archive_database import DatabaseArchive
from services.ledger.handlers import Ledger
from services.operations import grant_database_roles
from services.scheduler.handlers import emit_due_syncs
from services.webhooks.handlers import DeliveryLoop, WebhookRecorder
from services.webhooks.sending import WebhookSender
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.db.engine import create_engine, session_factory
from shared.db.errors import is_transient_db_error, sqlstate_of
from shared.db.grants import MissingGrants
from shared.db.ownership import SERVICES, Service
from shared.db.tables import BrokerAccount, Snapshot, SyncRun, Transaction, WebhookEndpoint
from shared.events import (
    FailureKind,
    Holding,
    HoldingSnapshot,
    SyncFailed,
    SyncRequested,
    decode_event,
    utc_now,
)
from shared.runtime import checked_engine
from shared.settings import Settings
from tests.support.accounts import create_account
from tests.support.databases import drop_roles, service_role_urls
from tests.support.webhook_receiver import webhook_receiver

PERMISSION_DENIED = "42501"


@pytest.fixture
async def role_settings(database_url: str, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Settings]:
    """Settings naming four new roles (unique names: roles are the whole cluster's), after `db
    roles` ran for them as the schema's owner."""
    own = service_role_urls(database_url)
    urls = {f"{service}_database_url": url for service, url in own.items()}
    settings = Settings(database_url=database_url, **urls)  # type: ignore[arg-type]
    assert await grant_database_roles(settings) == 0
    assert await grant_database_roles(settings) == 0, "running it again changes nothing"
    printed = capsys.readouterr()
    assert f"role {make_url(own['ledger']).username} updated" in printed.out
    assert "pw-" not in printed.out + printed.err, "db roles printed a password"
    yield settings
    await drop_roles(database_url, own.values())


@pytest.fixture
async def roles(role_settings: Settings) -> AsyncIterator[dict[Service, AsyncEngine]]:
    """An engine connected as each service's role."""
    engines = {service: create_engine(role_settings.service_database_url(service)) for service in SERVICES}
    yield engines
    for engine in engines.values():
        await engine.dispose()


async def _run(engine: AsyncEngine, statement: str, parameters: Mapping[str, object] | None = None) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(text(statement), dict(parameters or {}))
        return int(result.rowcount)


async def _denied(
    engine: AsyncEngine, statement: str, parameters: Mapping[str, object] | None = None
) -> None:
    with pytest.raises(DBAPIError) as raised:
        await _run(engine, statement, parameters)
    assert sqlstate_of(raised.value) == PERMISSION_DENIED, raised.value
    assert isinstance(raised.value.orig.__cause__, asyncpg.InsufficientPrivilegeError)  # type: ignore[union-attr]
    # Not an outage: waiting would not cure it, so a consumer does not retry it forever.
    assert not is_transient_db_error(raised.value)


async def _account(roles: Mapping[Service, AsyncEngine]) -> BrokerAccount:
    return await create_account(session_factory(roles["api"]))


async def test_the_ledgers_role_cannot_update_users_but_writes_its_own(
    roles: dict[Service, AsyncEngine],
) -> None:
    account = await _account(roles)
    ledger = roles["ledger"]
    await _denied(ledger, "UPDATE users SET email = email")
    await _denied(ledger, "DELETE FROM credentials")
    await _denied(ledger, "UPDATE broker_accounts SET label = 'mine', credentials_changed_at = now()")
    await _denied(ledger, "SELECT count(*) FROM users")
    await _run(
        ledger,
        "INSERT INTO processed_events (event_id, consumer, processed_at) VALUES (:id, 'ledger', now())",
        {"id": uuid.uuid4()},
    )
    assert (
        await _run(ledger, "UPDATE broker_accounts SET last_error = 'x' WHERE id = :id", {"id": account.id})
        == 1
    )


async def test_the_apis_role_cannot_write_the_ledgers_history_nor_its_columns(
    roles: dict[Service, AsyncEngine],
) -> None:
    account = await _account(roles)
    api = roles["api"]
    await _denied(
        api,
        "INSERT INTO snapshots (id, account_id, request_id, taken_at, received_at, holdings_count, status) "
        "VALUES (:id, :account, :id, now(), now(), 0, 'applied')",
        {"id": uuid.uuid4(), "account": account.id},
    )
    await _denied(api, "UPDATE snapshot_holdings SET quantity = 0")
    await _denied(api, "DELETE FROM transactions")
    await _denied(
        api, "UPDATE broker_accounts SET current_snapshot_id = NULL WHERE id = :id", {"id": account.id}
    )
    await _denied(api, "UPDATE broker_accounts SET ledger_version = 0 WHERE id = :id", {"id": account.id})
    await _denied(api, "UPDATE sync_runs SET attempts = 9")
    assert (
        await _run(api, "UPDATE broker_accounts SET label = 'renamed' WHERE id = :id", {"id": account.id})
        == 1
    )


async def test_the_schedulers_role_writes_only_its_columns_of_schedules_and_new_runs(
    roles: dict[Service, AsyncEngine],
) -> None:
    await _account(roles)
    scheduler = roles["scheduler"]
    await _denied(scheduler, "UPDATE schedules SET enabled = false")
    await _denied(scheduler, "UPDATE broker_accounts SET needs_reauth = false")
    await _denied(scheduler, "DELETE FROM schedules")
    await _denied(scheduler, "UPDATE api_tokens SET revoked_at = now()")
    assert await _run(scheduler, "UPDATE schedules SET run_count = run_count") == 1


async def test_each_service_does_its_work_as_its_own_role(roles: dict[Service, AsyncEngine]) -> None:
    api, scheduler = session_factory(roles["api"]), session_factory(roles["scheduler"])
    ledger_sessions: async_sessionmaker[AsyncSession] = session_factory(roles["ledger"])
    bus = InMemoryBus(partitions=4)
    now = utc_now()
    # The API: a user, portfolio, account and schedule; credentials (with its columns of the account).
    account = await create_account(api, next_run_at=now - timedelta(seconds=5))
    async with api() as session:
        await store_credentials(session, account_id=account.id, ciphertext="opaque", now=now)
    # The scheduler claims the tick and records the run.
    assert await emit_due_syncs(scheduler, bus, now=now, limit=10) == 1
    [record] = bus.records(topics.sync_requests("sim"))
    request = decode_event(SyncRequested, record.value)
    # The ledger applies the snapshot (COPY, the fenced account update, the run's outcome), relays
    # its announcement (deletes the outbox row, marks the snapshot) and sweeps what is left.
    ledger = Ledger(sessions=ledger_sessions, bus=bus)
    holding = Holding(
        symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(10), average_price=Decimal("100.5")
    )
    snapshot = HoldingSnapshot(
        account_id=account.id, request_id=request.event_id, broker="sim", taken_at=now, holdings=(holding,)
    )
    await ledger.apply_batch([snapshot])
    assert await ledger.relay.publish_pending() == 0
    async with api() as session:
        run = await session.get(SyncRun, request.event_id)
        stored = await session.get(BrokerAccount, account.id)
        announced = await session.scalar(
            select(Snapshot.announced_at).where(Snapshot.id == snapshot.event_id)
        )
    assert run is not None and run.status == "succeeded"
    assert stored is not None and stored.current_snapshot_id == snapshot.event_id
    assert announced is not None
    assert len(bus.records(topics.HOLDINGS_CHANGES)) == 1
    # A replay's correction of that snapshot: its holdings deleted and written anew, its count updated,
    # its derived transactions corrected (one updated, one added) and the correction announced.
    corrected = (replace(holding, isin="INE467B01029", quantity=Decimal(12)), replace(holding, symbol="INFY"))
    correction = snapshot.model_copy(
        update={"event_id": uuid.uuid4(), "holdings": corrected, "replaces": snapshot.event_id}
    )
    await ledger.apply_batch([correction])
    async with api() as session:
        count = await session.scalar(select(Snapshot.holdings_count).where(Snapshot.id == snapshot.event_id))
        trades = await session.execute(
            select(Transaction.symbol, Transaction.quantity).where(Transaction.account_id == account.id)
        )
        assert sorted(tuple(t) for t in trades) == [("INFY", 10), ("TCS", 12)]
    assert count == 2
    assert len(bus.records(topics.HOLDINGS_CHANGES)) == 2
    # The API deletes the account: the ledger's rows go by ON DELETE CASCADE, run as their owner.
    async with api() as session:
        await remove_account(session, bus, account.id)
    async with api() as session:
        left = await session.scalar(
            select(func.count()).select_from(Snapshot).where(Snapshot.account_id == account.id)
        )
    assert left == 0


async def test_a_service_whose_role_lacks_a_grant_refuses_to_start(role_settings: Settings) -> None:
    for service in SERVICES:
        async with checked_engine(role_settings, service):
            pass
    # As after a migration that `db roles` did not follow: one grant missing.
    ledger_role = make_url(role_settings.service_database_url("ledger")).username
    owner = create_engine(role_settings.database_url)
    try:
        async with owner.begin() as conn:
            await conn.exec_driver_sql(f'REVOKE UPDATE ON broker_accounts FROM "{ledger_role}"')
    finally:
        await owner.dispose()
    with pytest.raises(
        MissingGrants, match=r"lacks UPDATE on broker_accounts\.current_snapshot_id.*db roles"
    ):
        async with checked_engine(role_settings, "ledger"):
            pass
    async with checked_engine(role_settings.model_copy(update={"ledger_database_url": ""}), "ledger"):
        pass  # the schema's owner may do everything


async def test_the_fetchers_role_keeps_and_prunes_its_archive_and_writes_nothing_else(
    roles: dict[Service, AsyncEngine], sessions: async_sessionmaker[AsyncSession]
) -> None:
    fetcher = roles["fetcher"]
    archive = DatabaseArchive(fetcher)
    account_id, now = (await create_account(sessions)).id, utc_now()
    old = ArchivedAnswer(
        run_id=uuid.uuid4(),
        attempt=1,
        account_id=account_id,
        broker="sim",
        received_at=now - timedelta(days=40),
        status_code=200,
        body=b"[]",
        snapshot_id=None,
    )
    new = replace(old, run_id=uuid.uuid4(), received_at=now, body=b'[{"symbol": "TCS"}]')
    await archive.keep([old, new])
    await archive.keep([new])  # a redelivery: no error, nothing added
    assert [a.body for a in await archive.answers_of(account_id, since=None)] == [
        b"[]",
        b'[{"symbol": "TCS"}]',
    ]
    assert await archive.prune(received_before=now - timedelta(days=30)) == 1
    await _denied(fetcher, "DELETE FROM snapshots")
    await _denied(fetcher, "SELECT count(*) FROM broker_accounts")
    await _denied(roles["ledger"], "DELETE FROM raw_answers")


async def test_the_webhooks_role_records_and_sends_deliveries_and_writes_nothing_of_the_apis(
    roles: dict[Service, AsyncEngine],
) -> None:
    account = await _account(roles)
    async with session_factory(roles["api"])() as session:
        endpoint = await storage_webhooks.create_endpoint(
            session,
            account.portfolio_id,
            url="http://127.0.0.1/",
            event_types=["sync.failed"],
            description="",
        )
    webhooks = session_factory(roles["webhooks"])
    failure = SyncFailed(
        account_id=account.id,
        request_id=uuid.uuid4(),
        broker="sim",
        kind=FailureKind.TRANSIENT,
        reason="down",
    )
    with webhook_receiver() as receiver:
        async with session_factory(roles["api"]).begin() as session:
            found = await session.get(WebhookEndpoint, endpoint.id)
            assert found is not None
            found.url = receiver.url + "/hook"
        assert await WebhookRecorder(sessions=webhooks).handle([failure]) == {"queued": 1, "no_webhook": 0}
        async with WebhookSender(
            allowed_networks=[ipaddress.ip_network("127.0.0.1/32")], timeout_s=5
        ) as sender:
            loop = DeliveryLoop(
                sessions=webhooks, sender=sender, retry_schedule=(1.0,), disable_after_failures=5
            )
            assert await loop.send_due(utc_now()) == 1
        assert [r.path for r in receiver.received] == ["/hook"]
    await _denied(roles["webhooks"], "UPDATE webhook_endpoints SET url = 'https://x.test/'")
    await _denied(roles["webhooks"], "DELETE FROM snapshots")
    await _denied(roles["api"], "UPDATE webhook_deliveries SET status = 'delivered'")
    await _denied(roles["ledger"], "SELECT count(*) FROM webhook_deliveries")
