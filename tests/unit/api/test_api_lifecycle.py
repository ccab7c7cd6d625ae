"""Edit and delete what you own: PATCH a portfolio or an account; DELETE credentials, an account, a
portfolio, yourself. Deleting leaves no row behind and tells subscribers first (AccountRemoved)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.db.tables import (
    ApiToken,
    Base,
    BrokerAccount,
    BrokerPause,
    Credential,
    DeadLetterReplay,
    HistoryMove,
    InstrumentPrice,
    Invite,
    OutboxMessage,
    Portfolio,
    PositionVersion,
    ProcessedEvent,
    RateLimitWindow,
    RawAnswer,
    Schedule,
    Snapshot,
    SnapshotHolding,
    SyncAttempt,
    SyncRun,
    Transaction,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointState,
    WebhookReplay,
    WebhookReplayDone,
)
from shared.events import AccountRemoved, FailureKind, SyncFailed, decode_event
from tests.unit.api.conftest import Headers, new_account, new_portfolio
from tests.unit.api.ledger_feed import at, holding, snapshot


class AckLostBus(InMemoryBus):
    """Delivers, but reports failure while `lose_acks`: a publish whose acknowledgement was lost, as
    when the API crashes after publishing."""

    lose_acks = False

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await super().publish(messages)
        if self.lose_acks:
            raise BusUnavailable("acknowledgement lost")


@pytest.fixture
def bus() -> AckLostBus:
    return AckLostBus(partitions=4)


def _removed(bus: InMemoryBus) -> list[AccountRemoved]:
    return [
        decode_event(AccountRemoved, r.value)
        for r in bus.records(topics.HOLDINGS_CHANGES)
        if b'"account_removed"' in r.value
    ]


# --- PATCH -----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_portfolio_is_renamed_and_paused_field_by_field(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str
) -> None:
    await new_portfolio(client, alice, "Taken")
    path = f"/v1/portfolios/{portfolio_id}"

    assert (await client.get(path, headers=alice)).json()["active"] is True
    paused = await client.patch(path, json={"active": False}, headers=alice)
    renamed = await client.patch(path, json={"name": "  Pension "}, headers=alice)
    taken = await client.patch(path, json={"name": "Taken", "active": True}, headers=alice)
    unknown_field = await client.patch(path, json={"colour": "red"}, headers=alice)
    nothing = await client.patch(path, json={}, headers=alice)

    assert paused.status_code == 200 and paused.json()["active"] is False
    assert renamed.json()["name"] == "Pension" and renamed.json()["active"] is False  # active kept
    assert taken.status_code == 409 and "Taken" in taken.json()["detail"]
    assert unknown_field.status_code == 422
    assert nothing.status_code == 200
    stored = (await client.get(path, headers=alice)).json()
    assert (stored["name"], stored["active"]) == ("Pension", False)  # the 409 changed nothing


@pytest.mark.asyncio
async def test_an_account_is_relabelled_and_the_rest_is_kept(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    before = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()

    response = await client.patch(f"/v1/accounts/{account_id}", json={"label": "Savings"}, headers=alice)
    empty = await client.patch(f"/v1/accounts/{account_id}", json={"label": ""}, headers=alice)

    assert response.status_code == 200
    assert response.json() == {**before, "label": "Savings"}
    assert empty.status_code == 422


# --- DELETE ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_deleting_credentials_forgets_them_and_may_be_repeated(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    path = f"/v1/accounts/{account_id}/credentials"
    await client.put(path, json={"credentials": {"api_key": "k"}}, headers=alice)

    first = await client.delete(path, headers=alice)
    again = await client.delete(path, headers=alice)

    assert (first.status_code, again.status_code) == (204, 204)
    assert (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()["has_credentials"] is False


@pytest.mark.asyncio
async def test_deleting_an_account_announces_it_then_removes_everything_of_it(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    bus: AckLostBus,
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    kept = await new_account(client, alice, portfolio_id, label="kept")
    owned = await _fill(client, alice, ledger, sessions, [account_id, kept])

    response = await client.delete(f"/v1/accounts/{account_id}", headers=alice)

    assert response.status_code == 204
    (removed,) = _removed(bus)
    assert (str(removed.account_id), str(removed.portfolio_id)) == (account_id, portfolio_id)
    keys = [r.key for r in bus.records(topics.HOLDINGS_CHANGES) if b"account_removed" in r.value]
    assert keys == [account_id]  # one partition with the account's HoldingsChanged: ordered after them
    assert (await client.get(f"/v1/accounts/{account_id}", headers=alice)).status_code == 404
    assert (await client.delete(f"/v1/accounts/{account_id}", headers=alice)).status_code == 404
    assert await rows_left(sessions, owned.of([account_id])) == {}
    assert (await rows_left(sessions, owned.of([kept])))[BrokerAccount.__tablename__] == 1


@pytest.mark.asyncio
async def test_deleting_an_account_tombstones_it_on_holdings_current_after_its_last_positions(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    bus: AckLostBus,
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    kept = await new_account(client, alice, portfolio_id, label="kept")
    await _fill(client, alice, ledger, sessions, [account_id, kept])
    assert set(bus.compacted(topics.HOLDINGS_CURRENT)) == {account_id, kept}

    assert (await client.delete(f"/v1/accounts/{account_id}", headers=alice)).status_code == 204

    values = [r.value for r in bus.records(topics.HOLDINGS_CURRENT) if r.key == account_id]
    assert values[-1] == b"" and all(values[:-1]), "the tombstone comes after every CurrentHoldings"
    assert set(bus.compacted(topics.HOLDINGS_CURRENT)) == {kept}


@pytest.mark.asyncio
async def test_a_deletion_that_cannot_be_announced_deletes_nothing_and_its_retry_repeats_the_event_id(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    bus: AckLostBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus.lose_acks = True
    failed = await client.delete(f"/v1/portfolios/{portfolio_id}", headers=alice)
    bus.lose_acks = False
    retried = await client.delete(f"/v1/portfolios/{portfolio_id}", headers=alice)

    assert failed.status_code == 503 and "nothing was deleted" in failed.json()["detail"]
    assert retried.status_code == 204
    first, second = _removed(bus)
    assert first.event_id == second.event_id  # subscribers dedupe the repeat
    assert str(first.account_id) == account_id


@pytest.mark.asyncio
async def test_deleting_a_portfolio_or_yourself_announces_every_account_and_leaves_no_row(
    client: httpx.AsyncClient,
    alice: Headers,
    bob: Headers,
    bus: AckLostBus,
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await new_portfolio(client, alice, "First")
    second = await new_portfolio(client, alice, "Second")
    a1, a2 = await new_account(client, alice, first), await new_account(client, alice, first)
    a3 = await new_account(client, alice, second)
    bobs = await new_account(client, bob, await new_portfolio(client, bob, "Bob's"))
    alices = await _fill(client, alice, ledger, sessions, [a1, a2, a3])
    bob_owns = await _fill(client, bob, ledger, sessions, [bobs])

    deleted_portfolio = await client.delete(f"/v1/portfolios/{first}", headers=alice)
    assert deleted_portfolio.status_code == 204
    assert {str(e.account_id) for e in _removed(bus)} == {a1, a2}
    assert await rows_left(sessions, alices.of([a1, a2])) == {}
    assert (await client.get(f"/v1/portfolios/{first}", headers=alice)).status_code == 404

    deleted_me = await client.delete("/v1/me", headers=alice)

    assert deleted_me.status_code == 204
    assert {str(e.account_id) for e in _removed(bus)} == {a1, a2, a3}
    assert await rows_left(sessions, alices) == {}
    assert (await client.get("/v1/me", headers=alice)).status_code == 401
    assert (await client.get(f"/v1/accounts/{bobs}", headers=bob)).status_code == 200
    left = await rows_left(sessions, bob_owns)
    assert left.keys() >= {"users", "api_tokens", "portfolios", "broker_accounts", "snapshots", "sync_runs"}


# --- what a user owns, table by table ------------------------------------------------------------


class Owned:
    """Ids of what one user owns, to count the rows of each table that are theirs."""

    def __init__(
        self,
        user_id: uuid.UUID,
        snapshots: dict[uuid.UUID, set[uuid.UUID]],
        webhooks: dict[uuid.UUID, uuid.UUID] | None = None,
    ) -> None:
        self.user_id = user_id
        self.accounts = set(snapshots)
        self.snapshots = {s for of_account in snapshots.values() for s in of_account}
        self.endpoints = set(webhooks or {})  # webhook endpoint -> a replay of it
        self.replays = set((webhooks or {}).values())
        self._by_account = snapshots

    def of(self, accounts: list[str]) -> Owned:
        """Only what belongs to these accounts (the user's and portfolios' own rows are not counted)."""
        ids = {uuid.UUID(a) for a in accounts}
        return Owned(uuid.uuid4(), {a: s for a, s in self._by_account.items() if a in ids})


async def rows_left(sessions: async_sessionmaker[AsyncSession], owned: Owned) -> dict[str, int]:
    """Rows of every table that belong to `owned`; a table this does not know fails the test, so a new
    table must say how its rows are owned (and be deleted with them)."""
    keys = [str(a) for a in owned.accounts]
    by_table = {
        User: User.id == owned.user_id,
        ApiToken: ApiToken.user_id == owned.user_id,
        Portfolio: Portfolio.user_id == owned.user_id,
        BrokerAccount: BrokerAccount.id.in_(owned.accounts),
        Credential: Credential.account_id.in_(owned.accounts),
        Schedule: Schedule.account_id.in_(owned.accounts),
        SyncRun: SyncRun.account_id.in_(owned.accounts),
        # The attempts that brought the snapshots (each keyed by its event: the snapshot's id).
        SyncAttempt: SyncAttempt.event_id.in_(owned.snapshots),
        Snapshot: Snapshot.account_id.in_(owned.accounts),
        SnapshotHolding: SnapshotHolding.snapshot_id.in_(owned.snapshots),
        PositionVersion: PositionVersion.account_id.in_(owned.accounts),
        HistoryMove: HistoryMove.account_id.in_(owned.accounts),  # old history not moved yet
        Transaction: Transaction.account_id.in_(owned.accounts),
        RawAnswer: RawAnswer.account_id.in_(owned.accounts),
        OutboxMessage: OutboxMessage.message_key.in_(keys),
        Invite: Invite.created_by == owned.user_id,
        # An operator's broker pause outlives them (the outage goes on); only their id goes.
        BrokerPause: BrokerPause.paused_by == owned.user_id,
        WebhookEndpoint: WebhookEndpoint.id.in_(owned.endpoints),
        WebhookReplay: WebhookReplay.endpoint_id.in_(owned.endpoints),
        WebhookDelivery: WebhookDelivery.endpoint_id.in_(owned.endpoints),
        WebhookEndpointState: WebhookEndpointState.endpoint_id.in_(owned.endpoints),
        WebhookReplayDone: WebhookReplayDone.replay_id.in_(owned.replays),
    }
    # Hold nothing of a user: rate-limit windows are keyed by a client address or a token's hash and
    # expire with their window; processed_events are bare event ids (see services/api/removal.py);
    # dead_letter_replays are positions in dead-letter topics; instrument_prices are the market's,
    # shared by every account holding the instrument.
    ownerless = {
        RateLimitWindow.__tablename__,
        ProcessedEvent.__tablename__,
        DeadLetterReplay.__tablename__,
        InstrumentPrice.__tablename__,
    }
    known = {model.__tablename__ for model in by_table} | ownerless
    assert set(Base.metadata.tables) <= known, (
        f"say how rows are owned in {set(Base.metadata.tables) - known}"
    )
    counts = {}
    async with sessions() as session:
        for model, condition in by_table.items():
            count = await session.scalar(select(func.count()).select_from(model).where(condition))
            if count:
                counts[model.__tablename__] = int(count or 0)
    return counts


async def _fill(
    client: httpx.AsyncClient,
    headers: Headers,
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
    accounts: list[str],
) -> Owned:
    """Give each account credentials, a sync run, two snapshots (so transactions) and a late one, a
    failure, an archived broker answer and an unrelayed HoldingsChanged in the outbox; return what the
    user owns."""
    snapshots: dict[uuid.UUID, set[uuid.UUID]] = {}
    for account in accounts:
        await client.put(
            f"/v1/accounts/{account}/credentials", json={"credentials": {"k": "v"}}, headers=headers
        )
        await client.post(f"/v1/accounts/{account}/sync", headers=headers)
        first = snapshot(account, at(1), holding("TCS", "1"))
        second = snapshot(account, at(2), holding("TCS", "3"))
        late = snapshot(account, at(0), holding("TCS", "2"))  # keeps its own holdings rows
        failure = SyncFailed(
            account_id=uuid.UUID(account),
            request_id=uuid.uuid4(),
            broker="sim",
            kind=FailureKind.TRANSIENT,
            reason="timeout",
        )
        await ledger.apply_batch([first, second, late, failure])
        snapshots[uuid.UUID(account)] = {first.event_id, second.event_id, late.event_id}
    async with sessions.begin() as session:
        for account in accounts:
            session.add(
                RawAnswer(
                    run_id=uuid.uuid4(),
                    attempt=1,
                    account_id=uuid.UUID(account),
                    broker="sim",
                    received_at=at(2),
                    status_code=200,
                    body=b"",
                    body_bytes=0,
                )
            )
            session.add(
                OutboxMessage(
                    event_id=uuid.uuid4(),
                    topic=topics.HOLDINGS_CHANGES,
                    message_key=account,
                    payload="{}",
                )
            )
    webhooks = {}
    async with sessions() as session:
        portfolios = set(
            await session.scalars(
                select(BrokerAccount.portfolio_id).where(BrokerAccount.id.in_(uuid.UUID(a) for a in accounts))
            )
        )
    for portfolio in portfolios:
        endpoint = await client.post(
            f"/v1/portfolios/{portfolio}/webhooks", json={"url": "https://example.com/hook"}, headers=headers
        )
        endpoint_id = uuid.UUID(endpoint.json()["id"])
        replay = await client.post(
            f"/v1/webhooks/{endpoint_id}/replays", json={"since": "2026-01-01T00:00:00Z"}, headers=headers
        )
        webhooks[endpoint_id] = uuid.UUID(replay.json()["id"])
        async with sessions.begin() as session:
            session.add(
                WebhookDelivery(
                    endpoint_id=endpoint_id,
                    dedupe_key=f"{endpoint_id}:msg",
                    message_id="msg",
                    event_type="holdings.changed",
                    body="{}",
                    status="pending",
                    attempts=0,
                )
            )
            session.add(WebhookEndpointState(endpoint_id=endpoint_id, consecutive_failures=1))
            session.add(WebhookReplayDone(replay_id=webhooks[endpoint_id], deliveries=0))
    me = (await client.get("/v1/me", headers=headers)).json()
    owned = Owned(uuid.UUID(me["id"]), snapshots, webhooks)
    counts = await rows_left(sessions, owned)
    # Something of every kind exists to be deleted.
    assert counts.keys() >= {
        "users",
        "api_tokens",
        "portfolios",
        "broker_accounts",
        "credentials",
        "schedules",
        "sync_runs",
        "sync_attempts",
        "snapshots",
        "snapshot_holdings",
        "position_versions",
        "transactions",
        "raw_answers",
        "outbox",
        "webhook_endpoints",
        "webhook_replays",
        "webhook_deliveries",
        "webhook_endpoint_states",
        "webhook_replays_done",
    }, counts
    return owned
