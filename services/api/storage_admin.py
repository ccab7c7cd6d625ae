"""The operator's reads across every user: accounts by state, users, sync runs, counts per broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import paging
from shared.db.tables import BrokerAccount, Portfolio, SyncRun, User


@dataclass(frozen=True)
class AccountState:
    """Filters on accounts (and on users or runs through their accounts); None: any."""

    broker: str | None = None
    needs_reauth: bool | None = None
    failing_at_least: int | None = None
    never_synced: bool | None = None

    def condition(self) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if self.broker is not None:
            parts.append(BrokerAccount.broker == self.broker)
        if self.needs_reauth is not None:
            parts.append(BrokerAccount.needs_reauth.is_(self.needs_reauth))
        if self.failing_at_least is not None:
            parts.append(BrokerAccount.consecutive_failures >= self.failing_at_least)
        if self.never_synced is True:
            parts.append(BrokerAccount.last_success_at.is_(None))
        elif self.never_synced is False:
            parts.append(BrokerAccount.last_success_at.is_not(None))
        return and_(true(), *parts)

    @property
    def any(self) -> bool:
        return self != AccountState()


async def accounts(
    session: AsyncSession, state: AccountState, *, after: paging.Position | None, limit: int
) -> list[tuple[BrokerAccount, uuid.UUID]]:
    query = (
        select(BrokerAccount, Portfolio.user_id)
        .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
        .where(state.condition())
    )
    query = paging.keyset(
        query, BrokerAccount.created_at, BrokerAccount.id, after=after, limit=limit, newest_first=False
    )
    return [(account, user_id) for account, user_id in await session.execute(query)]


async def users(
    session: AsyncSession, state: AccountState, *, after: paging.Position | None, limit: int
) -> list[tuple[User, int]]:
    """Users, each with their number of accounts; with a filter, only users holding a matching account."""
    counts = (
        select(Portfolio.user_id, func.count(BrokerAccount.id).label("n"))
        .join(BrokerAccount, BrokerAccount.portfolio_id == Portfolio.id)
        .group_by(Portfolio.user_id)
        .subquery()
    )
    query = select(User, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.user_id == User.id)
    if state.any:
        matching = (
            select(Portfolio.user_id)
            .join(BrokerAccount, BrokerAccount.portfolio_id == Portfolio.id)
            .where(state.condition())
        )
        query = query.where(User.id.in_(matching))
    query = paging.keyset(query, User.created_at, User.id, after=after, limit=limit, newest_first=False)
    return [(user, int(n)) for user, n in await session.execute(query)]


async def sync_runs(
    session: AsyncSession,
    state: AccountState,
    *,
    status: str | None,
    extra: ColumnElement[bool] | None = None,
    after: paging.Position | None,
    limit: int,
) -> list[tuple[SyncRun, str, uuid.UUID]]:
    query = (
        select(SyncRun, BrokerAccount.broker, Portfolio.user_id)
        .join(BrokerAccount, BrokerAccount.id == SyncRun.account_id)
        .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
        .where(state.condition())
    )
    if status is not None:
        query = query.where(SyncRun.status == status)
    if extra is not None:
        query = query.where(extra)
    query = paging.keyset(
        query, SyncRun.requested_at, SyncRun.id, after=after, limit=limit, newest_first=True
    )
    return [(run, broker, user_id) for run, broker, user_id in await session.execute(query)]


async def run_with_account(session: AsyncSession, run_id: uuid.UUID) -> tuple[SyncRun, BrokerAccount] | None:
    query = select(SyncRun, BrokerAccount).join(BrokerAccount, BrokerAccount.id == SyncRun.account_id)
    row = (await session.execute(query.where(SyncRun.id == run_id))).one_or_none()
    return None if row is None else (row[0], row[1])


WINDOWS = {
    "last_5_minutes": timedelta(minutes=5),
    "last_hour": timedelta(hours=1),
    "last_day": timedelta(days=1),
}


async def broker_outcomes(session: AsyncSession, *, now: datetime) -> dict[str, dict[str, dict[str, int]]]:
    """broker -> window -> {"succeeded": n, "failed": n}, over runs that ended in each window."""
    day_ago = now - WINDOWS["last_day"]
    columns: list[Any] = [BrokerAccount.broker]
    for name, span in WINDOWS.items():
        for outcome in ("succeeded", "failed"):
            hit = and_(SyncRun.status == outcome, SyncRun.finished_at >= now - span)
            columns.append(func.sum(case((hit, 1), else_=0)).label(f"{name}:{outcome}"))
    rows = await session.execute(
        select(*columns)
        .join(BrokerAccount, BrokerAccount.id == SyncRun.account_id)
        .where(SyncRun.finished_at >= day_ago, SyncRun.finished_at <= now)
        .group_by(BrokerAccount.broker)
        .order_by(BrokerAccount.broker)
    )
    result: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        mapping = row._mapping
        result[row[0]] = {
            name: {outcome: int(mapping[f"{name}:{outcome}"] or 0) for outcome in ("succeeded", "failed")}
            for name in WINDOWS
        }
    return result


HISTORY_HOURS = 24


async def broker_outcomes_by_hour(session: AsyncSession, *, now: datetime) -> dict[str, dict[str, list[int]]]:
    """broker -> {"succeeded": [n, ...], "failed": [n, ...]}: runs that ended in each of the
    HISTORY_HOURS hours before `now`, oldest hour first. One scan, one conditional sum per hour and
    outcome (portable: no date truncation, which SQLite and Postgres spell differently)."""
    start = now - timedelta(hours=HISTORY_HOURS)
    columns: list[Any] = [BrokerAccount.broker]
    for hour in range(HISTORY_HOURS):
        begins = start + timedelta(hours=hour)
        for outcome in ("succeeded", "failed"):
            hit = and_(
                SyncRun.status == outcome,
                SyncRun.finished_at >= begins,
                SyncRun.finished_at < begins + timedelta(hours=1),
            )
            columns.append(func.sum(case((hit, 1), else_=0)).label(f"{hour}:{outcome}"))
    rows = await session.execute(
        select(*columns)
        .join(BrokerAccount, BrokerAccount.id == SyncRun.account_id)
        .where(SyncRun.finished_at >= start, SyncRun.finished_at < now)
        .group_by(BrokerAccount.broker)
        .order_by(BrokerAccount.broker)
    )
    return {
        row[0]: {
            outcome: [int(row._mapping[f"{hour}:{outcome}"] or 0) for hour in range(HISTORY_HOURS)]
            for outcome in ("succeeded", "failed")
        }
        for row in rows
    }
