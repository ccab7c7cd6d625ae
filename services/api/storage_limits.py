"""Rate-limit windows and per-user quotas, counted in the database so every API process shares them."""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import BrokerAccount, Portfolio, RateLimitWindow, User

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class QuotaReached(Exception):
    """The user holds the most objects of a kind allowed; the message says which, for the 409."""


@dataclass(frozen=True)
class WindowCount:
    """Requests counted so far in the current window of one key, and when that window ends."""

    hits: int
    window_end: datetime

    def retry_after_seconds(self, now: datetime) -> int:
        return max(1, math.ceil((self.window_end - now).total_seconds()))


def window_start(now: datetime, window: timedelta) -> datetime:
    """The start of the fixed window holding `now`: the same in every process (aligned on the epoch)."""
    seconds = int(window.total_seconds())
    elapsed = int((now - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)


async def count_hit(session: AsyncSession, key: str, *, window: timedelta, now: datetime) -> WindowCount:
    """Count one request of `key` in its current window, atomically, and return the count; the
    caller commits. One INSERT .. ON CONFLICT DO UPDATE .. RETURNING: concurrent processes each get
    a distinct count, never a lost update. A process whose clock lags never moves a window back."""
    row = {"key": key, "window_start": window_start(now, window)}
    hits, counted_start = (await session.execute(_upsert(session.get_bind().dialect.name), row)).one()
    return WindowCount(hits=hits, window_end=counted_start + window)


@functools.cache
def _upsert(dialect: str) -> Any:
    """The counting statement, built once per dialect: it runs on every authenticated request, and
    building it (and its cache key) anew each time cost more than the round trip."""
    row = {"key": bindparam("key"), "window_start": bindparam("window_start"), "hits": 1}
    returned = (RateLimitWindow.hits, RateLimitWindow.window_start)
    # Both dialects spell the upsert the same way, through different classes.
    if dialect == "postgresql":
        pg_insert = postgresql.insert(RateLimitWindow).values(row)
        return pg_insert.on_conflict_do_update(
            index_elements=[RateLimitWindow.key], set_=counted(pg_insert.excluded.window_start)
        ).returning(*returned)
    if dialect == "sqlite":
        lite_insert = sqlite.insert(RateLimitWindow).values(row)
        return lite_insert.on_conflict_do_update(
            index_elements=[RateLimitWindow.key], set_=counted(lite_insert.excluded.window_start)
        ).returning(*returned)
    raise NotImplementedError(f"no rate-limit upsert for the {dialect} dialect")


def counted(new_start: ColumnElement[datetime]) -> dict[str, ColumnElement[Any]]:
    """One more hit in the stored window if it is current (or ahead: another process's clock),
    else a new window counting this one hit."""
    current = RateLimitWindow.window_start >= new_start
    return {
        "hits": case((current, RateLimitWindow.hits + 1), else_=1),
        "window_start": case((current, RateLimitWindow.window_start), else_=new_start),
    }


async def ensure_room_for_portfolio(session: AsyncSession, *, user_id: uuid.UUID, most: int) -> None:
    """Raise QuotaReached if the user holds `most` portfolios. Call inside the inserting transaction."""
    await _lock_user(session, user_id)
    held = await session.scalar(
        select(func.count()).select_from(Portfolio).where(Portfolio.user_id == user_id)
    )
    if (held or 0) >= most:
        raise QuotaReached(f"you have {held} portfolios, the most allowed (MAX_PORTFOLIOS_PER_USER={most})")


async def ensure_room_for_account(session: AsyncSession, *, user_id: uuid.UUID, most: int) -> None:
    """Raise QuotaReached if the user holds `most` accounts. Call inside the inserting transaction."""
    await _lock_user(session, user_id)
    held = await session.scalar(
        select(func.count())
        .select_from(BrokerAccount)
        .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
        .where(Portfolio.user_id == user_id)
    )
    if (held or 0) >= most:
        raise QuotaReached(
            f"you have {held} broker accounts, the most allowed (MAX_ACCOUNTS_PER_USER={most})"
        )


async def _lock_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise one user's creations on Postgres (a row lock on the user until commit), so two
    concurrent requests cannot both see room for the last slot. SQLite ignores FOR UPDATE: there, a
    second writer waits for the first or fails, as SQLite serialises writers."""
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())
