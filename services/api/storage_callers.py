"""The guard's lookup: who sends a token and, on Postgres, its request counted against the token's
rate limit in the same statement, so that an authenticated request costs one round trip before
its route runs rather than two. SQLite (tests, the demo) does the same in two statements."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CTE, Select, String, bindparam, cast, literal, null, or_, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import holdings_json_sql, storage_limits, storage_users
from services.api.storage_history import holdings_of_owner
from services.api.storage_limits import WindowCount
from services.api.storage_users import Caller
from shared.db.tables import ApiToken, RateLimitWindow, TokenScope, User


@dataclass(frozen=True)
class Authenticated:
    caller: Caller
    count: WindowCount | None
    """This request's count in the token's window; None when not counted (no limit asked for, or a
    write that the token's scope refuses: a refused request is not counted)."""


def token_key(token_id: uuid.UUID) -> str:
    """The rate-limit key of a token's requests."""
    return f"token:{token_id}"


def may_send(scope: str, *, writes: bool) -> bool:
    return not writes or scope == TokenScope.WRITE


async def authenticate(
    session: AsyncSession, token_hash: str, *, now: datetime, window: timedelta | None, writes: bool
) -> Authenticated | None:
    """The live token's (neither revoked nor expired) caller, with this request counted in its
    `window` if one is given; None for no live token. Each statement is atomic by itself."""
    if window is None or session.get_bind().dialect.name != "postgresql":
        caller = await storage_users.caller_by_token_hash(session, token_hash, now=now)
        if caller is None:
            return None
        count = None
        if window is not None and may_send(caller.token.scope, writes=writes):
            key = token_key(caller.token.id)
            count = await storage_limits.count_hit(session, key, window=window, now=now)
        return Authenticated(caller, count)
    values = {"token_hash": token_hash, "now": now, "window_start": storage_limits.window_start(now, window)}
    row = (await session.execute(_counting_lookup(writes), values)).first()
    if row is None:
        return None
    user, token, hits, counted_start = row
    count = None if hits is None else WindowCount(hits=hits, window_end=counted_start + window)
    return Authenticated(Caller(user=user, token=token), count)


@functools.cache
def _counting_lookup(writes: bool) -> Any:
    """WITH caller (the live token), hit (its request counted: INSERT .. ON CONFLICT DO UPDATE ..
    RETURNING, only for a live token its scope allows) SELECT the user, the token and the count.
    Built once per kind of request."""
    live = _live_token()
    hit = _hit(live, writes)
    return (
        select(User, ApiToken, hit.c.hits, hit.c.window_start)
        .select_from(live)
        .join(ApiToken, ApiToken.id == live.c.token_id)
        .join(User, User.id == ApiToken.user_id)
        .outerjoin(hit, true())
    )


@functools.cache
def token_check_and_holdings(counted: bool, whole_portfolio: bool, past: bool) -> Select[*tuple[Any, ...]]:
    """`_counting_lookup` for a read (`counted`; without, the live token alone) as plain columns (the
    user's id, the token's id and last use, the hits and window counted, NULL when not), and, in the
    same statement, the response to the read of the holdings that `holdings_at` would read for the
    token's user (storage_history.holdings_of_owner; bind parameters scope_id and, `past`, at): the
    JSON text built by Postgres (holdings_json_sql.py), `[]` for none. One round trip for a holdings
    read; one row, none for no live token. A request over its rate limit still reads the holdings
    (then refused: it is counted). For the fast reads."""
    live = _live_token()
    owner = select(live.c.user_id).scalar_subquery()
    holdings = holdings_of_owner(whole_portfolio, past, owner, holdings_json_sql.time_text)
    # Unordered: the body orders its lines itself (one sort, not two).
    held = holdings.order_by(None).subquery("held")
    response = holdings_json_sql.portfolio_holdings if whole_portfolio else holdings_json_sql.account_holdings
    body = response(held).subquery("body")
    return _read_token_check(live, counted).add_columns(*body.c).join(body, true())


def _read_token_check(live: CTE, counted: bool) -> Select[*tuple[Any, ...]]:
    """The live token's columns from `live` itself: the token is read once, by its hash."""
    columns = (live.c.user_id, live.c.token_id, live.c.last_used_at)
    if not counted:
        return select(*columns, null(), null()).select_from(live)
    hit = _hit(live, writes=False)
    return select(*columns, hit.c.hits, hit.c.window_start).select_from(live).outerjoin(hit, true())


def _live_token() -> CTE:
    """The live token with what the reads need of it (its user, last use and scope), so that they
    need not look it up again by its id."""
    return (
        select(
            ApiToken.id.label("token_id"),
            ApiToken.user_id.label("user_id"),
            ApiToken.last_used_at.label("last_used_at"),
            ApiToken.scope.label("scope"),
        )
        .where(
            ApiToken.token_hash == bindparam("token_hash"),
            ApiToken.revoked_at.is_(None),
            or_(
                ApiToken.expires_at.is_(None),
                ApiToken.expires_at > bindparam("now", type_=ApiToken.expires_at.type),
            ),
        )
        .cte("caller")
    )


def _hit(live: CTE, writes: bool) -> CTE:
    counted = select(
        literal("token:", String) + cast(live.c.token_id, String),
        bindparam("window_start", type_=RateLimitWindow.window_start.type),
        literal(1),
    ).select_from(live)
    if writes:
        counted = counted.where(live.c.scope == TokenScope.WRITE)
    insert = postgresql.insert(RateLimitWindow).from_select(["key", "window_start", "hits"], counted)
    return (
        insert.on_conflict_do_update(
            index_elements=[RateLimitWindow.key], set_=storage_limits.counted(insert.excluded.window_start)
        )
        .returning(RateLimitWindow.hits, RateLimitWindow.window_start)
        .cte("hit")
    )
