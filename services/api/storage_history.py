"""Holdings of snapshots, wherever they are kept: a snapshot's own rows (late, held and corrected
ones, and those stored before versions), or else its account's position versions valid at its time,
priced from each instrument's price series. One statement either way.

The statement picks the snapshots once (a CTE both branches read; as of a past time, on Postgres,
each account's by one LATERAL probe of its (account_id, taken_at) index), takes each picked snapshot's
newest version of each instrument with a window over the account's versions up to its time (one
index range read per snapshot, not one probe per version for a newer one), and prices each position
with one backward probe of the instrument's price index."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Row,
    Select,
    SQLColumnExpression,
    Uuid,
    and_,
    bindparam,
    case,
    func,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from shared.db.position_versions import price_at
from shared.db.tables import (
    BrokerAccount,
    Portfolio,
    PositionVersion,
    Snapshot,
    SnapshotHolding,
    SnapshotStatus,
)
from shared.db.types import UtcDateTime

TimeText = Callable[[SQLColumnExpression[Any]], ColumnElement[str]]
"""How a statement writes a time as text (holdings_json_sql.time_text)."""
Holdings = Sequence[Row[*tuple[Any, ...]]]
"""Rows whose columns are `consolidation.Position`'s fields in order: account_id, symbol, exchange,
isin, currency, asset_type, quantity, average_price, last_price and the snapshot's time (taken_at)."""


async def holdings_of(
    session: AsyncSession, chosen: ColumnElement[bool], accounts: ColumnElement[bool]
) -> Holdings:
    """The holdings of the snapshot `chosen` picks for each account of `accounts` (a condition on
    `Snapshot` and `BrokerAccount`), ordered by symbol, exchange, currency and account."""
    return (await session.execute(_holdings(_picked_by(chosen, accounts)))).all()


async def holdings_at(
    session: AsyncSession,
    at: datetime | None,
    *,
    owner_id: uuid.UUID,
    account_id: uuid.UUID | None = None,
    portfolio_id: uuid.UUID | None = None,
) -> Holdings:
    """The holdings of one account, or of every account of one portfolio: now (each account's
    current snapshot) when `at` is None, else as they stood at `at` (each account's newest valid
    snapshot taken at or before it); none unless `owner_id` owns them. The statement is built once
    per kind (building and keying it costs more CPU than running it)."""
    whole_portfolio = portfolio_id is not None
    values: dict[str, object] = {
        "owner_id": owner_id,
        "scope_id": portfolio_id if whole_portfolio else account_id,
        "at": at,
    }
    connection = await session.connection()
    lateral = connection.dialect.name == "postgresql"
    statement = holdings_at_statement(whole_portfolio, at is not None, lateral=lateral)
    return (await connection.execute(statement, values)).all()


@functools.cache
def holdings_at_statement(whole_portfolio: bool, past: bool, *, lateral: bool) -> Select[*tuple[Any, ...]]:
    """What `holdings_at` runs, with bind parameters owner_id, scope_id and (`past`) at; `lateral`
    on Postgres (SQLite has no LATERAL: its past snapshot is picked by a correlated subquery)."""
    owner = bindparam("owner_id", type_=Uuid())
    return _holdings(_picked(whole_portfolio, past, owner, lateral=lateral))


def holdings_of_owner(
    whole_portfolio: bool, past: bool, owner: ColumnElement[Any], time_text: TimeText
) -> Select[*tuple[Any, ...]]:
    """`holdings_at_statement` on Postgres for the owner `owner` says (a bind parameter, or the fast
    reads' token check: storage_callers.token_check_and_holdings), with bind parameters scope_id and
    (`past`) at, and one more column, `taken_at_text`: the snapshot's time as `time_text` writes
    it, computed once per account (in `picked`) rather than once per position."""
    return _holdings(_picked(whole_portfolio, past, owner, lateral=True, time_text=time_text))


def _picked(
    whole_portfolio: bool,
    past: bool,
    owner: ColumnElement[Any],
    *,
    lateral: bool,
    time_text: TimeText | None = None,
) -> CTE:
    """The snapshot of each account of the scope that `owner` owns: its current one, or (`past`) its
    newest valid one taken at or before `at`; with its time as `time_text` writes it if given
    (column taken_at_text)."""
    scope = BrokerAccount.portfolio_id if whole_portfolio else BrokerAccount.id
    owned = BrokerAccount.portfolio_id.in_(select(Portfolio.id).where(Portfolio.user_id == owner))
    accounts = and_(scope == bindparam("scope_id", type_=Uuid()), owned)
    if not past:
        return _picked_by(Snapshot.id == BrokerAccount.current_snapshot_id, accounts, time_text)
    at = bindparam("at", type_=UtcDateTime())
    # The newest valid snapshot taken at or before `at` (late ones count; held and dismissed ones
    # never were the account's positions). Exactly one: a late snapshot may share its taken_at with
    # an applied one, and the applied one is what the account showed.
    candidate = aliased(Snapshot)
    newest = (
        select(candidate.id, candidate.taken_at, candidate.holdings_kept)
        .where(
            candidate.account_id == BrokerAccount.id,
            candidate.status.in_(SnapshotStatus.VALID),
            candidate.taken_at <= at,
        )
        .order_by(
            candidate.taken_at.desc(),
            case((candidate.status == SnapshotStatus.APPLIED, 0), else_=1),
            candidate.id.desc(),
        )
        .limit(1)
    )
    if not lateral:
        return _picked_by(Snapshot.id == newest.with_only_columns(candidate.id).scalar_subquery(), accounts)
    # Read where the probe of the account's (account_id, taken_at) index finds it, not looked up
    # again by id; and one probe per account, where a join on the subquery's id may hash every
    # snapshot of the table instead (Postgres's choice on a small one).
    found = newest.lateral("newest")
    return (
        select(BrokerAccount.id.label("account_id"), found.c.id, found.c.taken_at, found.c.holdings_kept)
        .add_columns(*_written(found.c.taken_at, time_text))
        .select_from(BrokerAccount)
        .join(found, true())
        .where(accounts)
        .cte("picked")
    )


def _picked_by(
    chosen: ColumnElement[bool], accounts: ColumnElement[bool], time_text: TimeText | None = None
) -> CTE:
    return (
        select(BrokerAccount.id.label("account_id"), Snapshot.id, Snapshot.taken_at, Snapshot.holdings_kept)
        .add_columns(*_written(Snapshot.taken_at, time_text))
        .select_from(BrokerAccount)
        .join(Snapshot, chosen)
        .where(accounts)
        .cte("picked")
    )


def _written(taken_at: SQLColumnExpression[Any], time_text: TimeText | None) -> list[ColumnElement[Any]]:
    return [] if time_text is None else [time_text(taken_at).label("taken_at_text")]


def _holdings(picked: CTE) -> Select[*tuple[Any, ...]]:
    """The holdings of each `picked` snapshot (columns account_id, id, taken_at, holdings_kept, and
    taken_at_text if it has it, passed on last), ordered by symbol, exchange, currency and account."""
    written = [picked.c.taken_at_text] if "taken_at_text" in picked.c else []
    h = SnapshotHolding
    kept = (
        select(picked.c.account_id, h.symbol, h.exchange, h.isin, h.currency, h.asset_type)
        .add_columns(h.quantity, h.average_price, h.last_price, picked.c.taken_at, *written)
        .join(h, h.snapshot_id == picked.c.id)
        .where(picked.c.holdings_kept)
    )
    v = PositionVersion
    newest_first = func.row_number().over(
        partition_by=(picked.c.id, v.symbol, v.exchange), order_by=v.valid_from.desc()
    )
    ranked = (
        select(picked.c.account_id, v.symbol, v.exchange, v.isin, v.currency, v.asset_type)
        .add_columns(v.quantity, v.average_price, picked.c.taken_at, *written, newest_first.label("rank"))
        .join(v, and_(v.account_id == picked.c.account_id, v.valid_from <= picked.c.taken_at))
        .where(~picked.c.holdings_kept)
        .subquery("ranked")
    )
    r = ranked.c
    price = price_at(r.taken_at, symbol=r.symbol, exchange=r.exchange)
    versioned = (
        select(r.account_id, r.symbol, r.exchange, r.isin, r.currency, r.asset_type)
        .add_columns(r.quantity, r.average_price, price, r.taken_at, *([r.taken_at_text] if written else []))
        .where(r.rank == 1, r.quantity.is_not(None))
    )
    both = union_all(kept, versioned).subquery()
    return select(both).order_by(both.c.symbol, both.c.exchange, both.c.currency, both.c.account_id)


@functools.cache
def owned_scope(whole_portfolio: bool) -> Select[uuid.UUID]:
    """The id of the account (or portfolio) `scope_id` if `owner_id` owns it: what tells "holds
    nothing" from "not yours" (a 404) when `holdings_at` found no rows. For the fast reads
    (fast_reads.py); the routes' SQLAlchemy path asks storage.owned_account / owned_portfolio."""
    owner = bindparam("owner_id", type_=Uuid())
    scope = bindparam("scope_id", type_=Uuid())
    if whole_portfolio:
        return select(Portfolio.id).where(Portfolio.id == scope, Portfolio.user_id == owner)
    return (
        select(BrokerAccount.id)
        .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
        .where(BrokerAccount.id == scope, Portfolio.user_id == owner)
    )
