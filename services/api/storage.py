"""Queries of the API, on an `AsyncSession`; portable SQL only (Postgres and SQLite).

Write functions commit: each one is a whole transaction. Objects of other users are invisible:
every lookup of a portfolio or account filters on its owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.api import paging, storage_limits
from services.api.consolidation import Position
from services.api.storage_history import Holdings, holdings_at, holdings_of
from shared.db.sync_runs import requested_run
from shared.db.tables import (
    BrokerAccount,
    BrokerPause,
    Credential,
    Portfolio,
    Schedule,
    Snapshot,
    SnapshotHolding,
    SyncRun,
    Transaction,
)
from shared.events import FailureKind, SyncRequested

IMPORT_TRIGGER = "import"
"""The trigger of a sync run fed by an uploaded statement rather than by a fetcher."""


class AlreadyExists(Exception):
    """A unique name or email is taken; the message says which, for the 409."""


@dataclass(frozen=True)
class AccountView:
    """An account with its schedule, whether credentials are stored (never what they are), and the
    snapshot it holds for review, if any."""

    account: BrokerAccount
    schedule: Schedule | None
    has_credentials: bool
    held_snapshot: Snapshot | None = None
    paused_by_operator: str | None = None
    """Why an operator paused the account's broker, if one did."""


@dataclass(frozen=True)
class TransactionFilter:
    """Which of a user's transactions to list; None means no condition."""

    user_id: uuid.UUID
    account_id: uuid.UUID | None = None
    portfolio_id: uuid.UUID | None = None
    symbol: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    origin: str | None = None


async def create_portfolio(
    session: AsyncSession, *, user_id: uuid.UUID, name: str, now: datetime, max_portfolios: int
) -> Portfolio:
    """Raises QuotaReached if the user holds `max_portfolios` already (counted in this transaction)."""
    await storage_limits.ensure_room_for_portfolio(session, user_id=user_id, most=max_portfolios)
    portfolio = Portfolio(id=uuid.uuid4(), user_id=user_id, name=name, created_at=now)
    session.add(portfolio)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise AlreadyExists(f"you already have a portfolio named {name!r}") from None
    return portfolio


async def user_portfolios(
    session: AsyncSession, user_id: uuid.UUID, *, after: paging.Position | None, limit: int
) -> Sequence[Portfolio]:
    """A page of the user's portfolios, oldest first."""
    query = select(Portfolio).where(Portfolio.user_id == user_id)
    query = paging.keyset(
        query, Portfolio.created_at, Portfolio.id, after=after, limit=limit, newest_first=False
    )
    return (await session.scalars(query)).all()


async def owned_portfolio(
    session: AsyncSession, *, user_id: uuid.UUID, portfolio_id: uuid.UUID
) -> Portfolio | None:
    query = select(Portfolio).where(Portfolio.id == portfolio_id, Portfolio.user_id == user_id)
    return await session.scalar(query)


async def owned_account(
    session: AsyncSession, *, user_id: uuid.UUID, account_id: uuid.UUID
) -> BrokerAccount | None:
    query = (
        select(BrokerAccount)
        .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
        .where(BrokerAccount.id == account_id, Portfolio.user_id == user_id)
    )
    return await session.scalar(query)


async def create_account(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    portfolio_id: uuid.UUID,
    broker: str,
    label: str,
    sync_interval_seconds: int | None,
    now: datetime,
    max_accounts: int,
    credentials_ciphertext: str | None = None,
) -> AccountView:
    """The account, its credentials if given, and its schedule, due at once, in one transaction (so
    the first sync never runs without the credentials); no schedule without an interval.
    Raises QuotaReached if the owner holds `max_accounts` already (counted in this transaction)."""
    await storage_limits.ensure_room_for_account(session, user_id=owner_id, most=max_accounts)
    account = BrokerAccount(
        id=uuid.uuid4(),
        portfolio_id=portfolio_id,
        broker=broker,
        label=label,
        created_at=now,
        consecutive_failures=0,
        needs_reauth=False,
        credentials_changed_at=now if credentials_ciphertext is not None else None,
    )
    session.add(account)
    await session.flush()
    if credentials_ciphertext is not None:
        session.add(Credential(account_id=account.id, ciphertext=credentials_ciphertext, updated_at=now))
    schedule = None
    if sync_interval_seconds is not None:
        schedule = Schedule(
            account_id=account.id, interval_seconds=sync_interval_seconds, next_run_at=now, enabled=True
        )
        session.add(schedule)
    await session.commit()
    return AccountView(account=account, schedule=schedule, has_credentials=credentials_ciphertext is not None)


async def account_views(
    session: AsyncSession,
    *,
    portfolio_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    after: paging.Position | None = None,
    limit: int | None = None,
) -> list[AccountView]:
    """Accounts of one portfolio (a page of them, oldest first, when `limit` is given), or one
    account; the caller has checked ownership."""
    held = aliased(Snapshot)
    query = (
        select(BrokerAccount, Schedule, Credential.account_id, held, BrokerPause.reason)
        .outerjoin(Schedule, Schedule.account_id == BrokerAccount.id)
        .outerjoin(BrokerPause, BrokerPause.broker == BrokerAccount.broker)
        .outerjoin(Credential, Credential.account_id == BrokerAccount.id)
        .outerjoin(held, held.id == BrokerAccount.held_snapshot_id)
    )
    if portfolio_id is not None:
        query = query.where(BrokerAccount.portfolio_id == portfolio_id)
    if account_id is not None:
        query = query.where(BrokerAccount.id == account_id)
    if limit is None:
        query = query.order_by(BrokerAccount.created_at, BrokerAccount.id)
    else:
        query = paging.keyset(
            query, BrokerAccount.created_at, BrokerAccount.id, after=after, limit=limit, newest_first=False
        )
    rows = (await session.execute(query)).all()
    return [
        AccountView(
            account=a, schedule=s, has_credentials=c is not None, held_snapshot=h, paused_by_operator=p
        )
        for a, s, c, h, p in rows
    ]


async def store_credentials(
    session: AsyncSession, *, account_id: uuid.UUID, ciphertext: str, now: datetime
) -> None:
    """Insert or replace the account's credentials; new credentials end an auth failure. The
    account's `credentials_changed_at` fences the ledger: a batch it planned before this fails its
    write and is planned again, and failures older than `now` no longer change the account."""
    dialect = session.get_bind().dialect.name
    values = {"account_id": account_id, "ciphertext": ciphertext, "updated_at": now}
    replace = {"ciphertext": ciphertext, "updated_at": now}
    # Both dialects spell insert-on-conflict the same way; it is atomic, unlike select-then-insert.
    if dialect == "postgresql":
        pg_upsert = postgresql.insert(Credential).values(values)
        await session.execute(
            pg_upsert.on_conflict_do_update(index_elements=[Credential.account_id], set_=replace)
        )
    elif dialect == "sqlite":
        lite_upsert = sqlite.insert(Credential).values(values)
        await session.execute(
            lite_upsert.on_conflict_do_update(index_elements=[Credential.account_id], set_=replace)
        )
    else:
        raise NotImplementedError(f"no credentials upsert for the {dialect} dialect")
    await session.execute(
        update(BrokerAccount)
        .where(BrokerAccount.id == account_id)
        .values(needs_reauth=False, credentials_changed_at=now)
    )
    await session.commit()


async def stored_ciphertext(session: AsyncSession, account_id: uuid.UUID) -> str | None:
    return await session.scalar(select(Credential.ciphertext).where(Credential.account_id == account_id))


async def account_positions(
    session: AsyncSession, account_id: uuid.UUID, *, owner_id: uuid.UUID, as_of: datetime | None = None
) -> list[Position]:
    """The account's positions now (its current snapshot), or as they stood at `as_of`; none unless
    `owner_id` owns it. Ownership is checked in the same query: one round trip for a request."""
    return _as_positions(await holdings_at(session, as_of, owner_id=owner_id, account_id=account_id))


async def portfolio_positions(
    session: AsyncSession, portfolio_id: uuid.UUID, *, owner_id: uuid.UUID, as_of: datetime | None = None
) -> list[Position]:
    """As account_positions, for every account of the portfolio."""
    return _as_positions(await holdings_at(session, as_of, owner_id=owner_id, portfolio_id=portfolio_id))


def _as_positions(holdings: Holdings) -> list[Position]:
    # The rows' columns are Position's fields in order: no lookup by name per row.
    return [Position(*h) for h in holdings]


async def account_snapshots(
    session: AsyncSession, account_id: uuid.UUID, *, after: paging.Position | None, limit: int
) -> Sequence[Snapshot]:
    """A page of the account's snapshots of every status, newest first."""
    query = select(Snapshot).where(Snapshot.account_id == account_id)
    query = paging.keyset(query, Snapshot.taken_at, Snapshot.id, after=after, limit=limit, newest_first=True)
    return (await session.scalars(query)).all()


async def account_snapshot(
    session: AsyncSession, *, account_id: uuid.UUID, snapshot_id: uuid.UUID
) -> tuple[Snapshot, Sequence[SnapshotHolding]] | None:
    """One snapshot of the account, with its holdings; None if the account has no such snapshot."""
    snapshot = await session.scalar(
        select(Snapshot).where(Snapshot.id == snapshot_id, Snapshot.account_id == account_id)
    )
    if snapshot is None:
        return None
    holdings = [
        SnapshotHolding(
            snapshot_id=snapshot_id,
            symbol=h.symbol,
            exchange=h.exchange,
            isin=h.isin,
            currency=h.currency,
            asset_type=h.asset_type,
            quantity=h.quantity,
            average_price=h.average_price,
            last_price=h.last_price,
        )
        for h in await holdings_of(session, _the_snapshot(snapshot_id), BrokerAccount.id == account_id)
    ]
    return snapshot, holdings


def _the_snapshot(snapshot_id: uuid.UUID) -> ColumnElement[bool]:
    return and_(Snapshot.id == snapshot_id, Snapshot.account_id == BrokerAccount.id)


async def transactions(
    session: AsyncSession, wanted: TransactionFilter, *, after: paging.Position | None, limit: int
) -> Sequence[Transaction]:
    """Up to `limit` of the user's transactions matching `wanted`, newest first, from just after
    `after` (keyset pagination: stable while new rows arrive, and no offset to scan past)."""
    query = (
        select(Transaction)
        .join(BrokerAccount, BrokerAccount.id == Transaction.account_id)
        .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
        .where(Portfolio.user_id == wanted.user_id)
    )
    if wanted.account_id is not None:
        query = query.where(Transaction.account_id == wanted.account_id)
    if wanted.portfolio_id is not None:
        query = query.where(BrokerAccount.portfolio_id == wanted.portfolio_id)
    if wanted.symbol is not None:
        query = query.where(Transaction.symbol == wanted.symbol)
    if wanted.since is not None:
        query = query.where(Transaction.occurred_at >= wanted.since)
    if wanted.until is not None:
        query = query.where(Transaction.occurred_at < wanted.until)
    if wanted.origin is not None:
        query = query.where(Transaction.origin == wanted.origin)
    query = paging.keyset(
        query, Transaction.occurred_at, Transaction.id, after=after, limit=limit, newest_first=True
    )
    return (await session.scalars(query)).all()


async def sync_runs(
    session: AsyncSession, account_id: uuid.UUID, *, after: paging.Position | None, limit: int
) -> Sequence[SyncRun]:
    """A page of the account's sync runs, newest first."""
    query = select(SyncRun).where(SyncRun.account_id == account_id)
    query = paging.keyset(
        query, SyncRun.requested_at, SyncRun.id, after=after, limit=limit, newest_first=True
    )
    return (await session.scalars(query)).all()


async def sync_run(session: AsyncSession, account_id: uuid.UUID, run_id: uuid.UUID) -> SyncRun | None:
    """One of the account's sync runs (None if it has no run of that id)."""
    run = await session.get(SyncRun, run_id)
    return run if run is not None and run.account_id == account_id else None


async def record_sync_request(session: AsyncSession, request: SyncRequested) -> None:
    """The run row, committed before the request is published, so its outcome has a home."""
    session.add(requested_run(request))
    await session.commit()


async def record_import(
    session: AsyncSession,
    *,
    run_id: uuid.UUID,
    account_id: uuid.UUID,
    requested_by: uuid.UUID | None = None,
    now: datetime,
) -> None:
    """The run of a statement import, committed before its snapshot is published (as for a sync)."""
    session.add(
        SyncRun(
            id=run_id,
            account_id=account_id,
            trigger=IMPORT_TRIGGER,
            status="requested",
            requested_at=now,
            requested_by=requested_by,
        )
    )
    await session.commit()


async def record_unpublished_request(
    session: AsyncSession,
    request_id: uuid.UUID,
    *,
    now: datetime,
    reason: str = "the sync request could not be published to the message bus",
) -> None:
    """The request never reached the bus: close its run as a transient failure instead of leaving it
    open. Only while it is still `requested`: a publish given up on may have got through all the same,
    and an outcome the ledger recorded meanwhile is the truth (the optimistic check that fences the
    API's columns of `sync_runs` from the ledger's)."""
    await session.execute(
        update(SyncRun)
        .where(SyncRun.id == request_id, SyncRun.status == "requested")
        .values(
            status="failed",
            finished_at=now,
            failure_kind=FailureKind.TRANSIENT.value,
            failure_reason=reason,
        )
    )
    await session.commit()


async def snapshot_statuses(session: AsyncSession, snapshot_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """What became of each snapshot (applied, late, held, dismissed), by id."""
    if not snapshot_ids:
        return {}
    rows = await session.execute(select(Snapshot.id, Snapshot.status).where(Snapshot.id.in_(snapshot_ids)))
    return {snapshot_id: status for snapshot_id, status in rows}


async def instruments_of(session: AsyncSession, snapshot_id: uuid.UUID | None) -> set[tuple[str, str]] | None:
    """The (symbol, exchange) pairs a snapshot lists; None for no snapshot."""
    if snapshot_id is None:
        return None
    rows = await holdings_of(session, _the_snapshot(snapshot_id), Snapshot.id == snapshot_id)
    return {(h.symbol, h.exchange) for h in rows}
