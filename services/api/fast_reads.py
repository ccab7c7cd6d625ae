"""The API's hottest reads on asyncpg directly: the token check and an account's or a portfolio's
holdings (now or as of a past time) in one statement, on a connection of a pool of the API's own;
the statement returns the response body itself, JSON text built by Postgres (holdings_json_sql.py),
which the route sends as it is.

Why: through SQLAlchemy an account's holdings cost the API 3.2 ms of CPU per request and /healthz
0.39 ms (bench-api at 6aff1e1), so a read ran at an eighth of the framework's rate; the time went to
two sessions per request, ORM rows for the caller, the pool's checkouts and Core's result rows, not
to Postgres. Here the statements are SQLAlchemy's own (storage_callers.token_check_and_holdings,
built from the guard's token check and storage_history's holdings statement; storage_users.
token_use_update; storage_history.owned_scope), compiled once for asyncpg and run as prepared
statements (asyncpg keeps them per connection): one source of truth for the SQL, none of the layers
above it per request. One round trip rather than two (the check, then the read): on this machine a
round trip to Postgres costs the API about a fifth of a millisecond of CPU (socket write and wake-up),
half what /healthz costs in all. Then the rows: for a portfolio's 200 positions, decoding them cost
the API 1.4 ms of CPU and building the body from them (Position tuples, consolidation, decimal_text,
the JSON encoder) 3 to 4 ms more; Postgres builds the same bytes for 0.3 to 1 ms more of its own CPU.

Only on Postgres (`open_fast_reads`); SQLite (tests, the embedded demo) keeps the SQLAlchemy path,
where holdings_json.py builds the body from positions, and tests/integration/
test_api_fast_reads_on_postgres.py compares the two paths' responses byte by byte. Errors are
asyncpg's own (or OSError, TimeoutError): errors.py answers an outage with the same 503 as through
SQLAlchemy.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from services.api import storage_limits
from services.api.storage_callers import token_check_and_holdings
from services.api.storage_history import owned_scope
from services.api.storage_limits import WindowCount
from services.api.storage_users import is_use_noted, token_use_update, token_use_values

_CHECKOUT_TIMEOUT_S = 30.0
_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialects are untyped


class CompiledStatement:
    """A SQLAlchemy statement compiled once for asyncpg: its SQL with `$n` placeholders, and where
    each argument comes from, a value given per call (`given`) or the statement's own constant.

    The statements' bind processors are not run: the only ones they have are UtcDateTime's, which
    refuse a naive time and convert an aware one to UTC, and asyncpg sends an aware time as the
    same instant; every time given here is aware (utc_now, or a validated Timestamp)."""

    def __init__(self, statement: ClauseElement, given: Iterable[str]) -> None:
        names = frozenset(given)
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        expanded = compiled.construct_expanded_state(dict.fromkeys(names))
        self.sql = expanded.statement
        order = expanded.positiontup or ()
        missing = names - set(order)
        if missing:
            raise ValueError(f"the statement has no parameters {sorted(missing)}")
        self._sources = [(name if name in names else None, expanded.parameters[name]) for name in order]

    def arguments(self, values: Mapping[str, object]) -> list[object]:
        return [constant if name is None else values[name] for name, constant in self._sources]


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """A live token's user and what the guard decides on for a read (which every scope may send):
    the token's last use, and this request's count in its rate-limit window (None: no limit set)."""

    user_id: uuid.UUID
    token_id: uuid.UUID
    last_used_at: datetime | None
    count: WindowCount | None


@functools.cache
def _token_check_and_holdings(counted: bool, whole_portfolio: bool, past: bool) -> CompiledStatement:
    given = (
        ["token_hash", "now", "scope_id"] + (["window_start"] if counted else []) + (["at"] if past else [])
    )
    return CompiledStatement(token_check_and_holdings(counted, whole_portfolio, past), given)


@functools.cache
def _token_use() -> CompiledStatement:
    return CompiledStatement(token_use_update(), ["token_id", "now", "stale_before"])


@functools.cache
def _owned(whole_portfolio: bool) -> CompiledStatement:
    return CompiledStatement(owned_scope(whole_portfolio), ["owner_id", "scope_id"])


class FastReads:
    """The pool the fast reads run on, and the reads."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection: the token check and the read share one checkout. Waiting for one
        ends as SQLAlchemy's pool does (`pool_timeout`): a TimeoutError, a 503. A connection an
        error interrupted (Postgres going away mid-statement, the request cancelled) may be halfway
        through the protocol, and the pool's release does not look (`_leave_as_is`): it is closed,
        and the pool opens a new one when next needed, rather than given to the next request.

        A connection Postgres ended while it sat in the pool (a shutdown: its last message, an error,
        read but the socket not yet seen closed) refuses its next statement with asyncpg's
        InternalClientError ("another operation is in progress"): that is the database going away,
        told as one (a ConnectionError: a 503 with Retry-After, as any outage)."""
        connection = await self._pool.acquire(timeout=_CHECKOUT_TIMEOUT_S)
        try:
            yield connection
        except asyncpg.InternalClientError as error:
            connection.terminate()
            raise ConnectionError("the database closed the connection") from error
        except BaseException:
            connection.terminate()
            raise
        finally:
            await self._pool.release(connection)

    @staticmethod
    async def read(
        connection: asyncpg.Connection,
        token_hash: str,
        *,
        now: datetime,
        window: timedelta | None,
        scope_id: uuid.UUID,
        at: datetime | None,
        whole_portfolio: bool,
    ) -> tuple[TokenCheck, str] | None:
        """storage_callers.authenticate for a read, without ORM objects (the live token's user and
        this request counted in its `window`, if given), and, in the same round trip, the response
        body (JSON text, built by Postgres) that the route would give for what
        storage.account_positions (or portfolio_positions, `whole_portfolio`) would read for that
        user for `scope_id` now or as of `at`: `[]` when nothing is held; None for no live token."""
        values: dict[str, object] = {"token_hash": token_hash, "now": now, "scope_id": scope_id, "at": at}
        if window is not None:
            values["window_start"] = storage_limits.window_start(now, window)
        statement = _token_check_and_holdings(window is not None, whole_portfolio, at is not None)
        row = await connection.fetchrow(statement.sql, *statement.arguments(values))
        if row is None:
            return None
        user_id, token_id, last_used_at, hits, counted_start, body = row
        count = None if hits is None or window is None else WindowCount(hits, counted_start + window)
        return TokenCheck(user_id, token_id, last_used_at, count), body

    @staticmethod
    async def note_token_use(connection: asyncpg.Connection, token: TokenCheck, *, now: datetime) -> None:
        """storage_users.note_token_use: most requests write nothing."""
        if not is_use_noted(token.last_used_at, now):
            statement = _token_use()
            await connection.execute(
                statement.sql, *statement.arguments(token_use_values(token.token_id, now))
            )

    @staticmethod
    async def owns(
        connection: asyncpg.Connection, *, owner_id: uuid.UUID, scope_id: uuid.UUID, whole_portfolio: bool
    ) -> bool:
        statement = _owned(whole_portfolio)
        values = {"owner_id": owner_id, "scope_id": scope_id}
        return await connection.fetchval(statement.sql, *statement.arguments(values)) is not None


@asynccontextmanager
async def open_fast_reads(url: URL, *, max_connections: int) -> AsyncIterator[FastReads]:
    """A pool on the database (and as the role) of the engine's `url`, closed on exit."""
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_connections, reset=_leave_as_is)
    try:
        yield FastReads(pool)
    finally:
        await pool.close()


async def _leave_as_is(connection: asyncpg.Connection) -> None:
    """What a connection needs when it goes back to the pool: nothing beyond the rollback of an open
    transaction, which asyncpg does anyway (there is none: each statement commits by itself). The
    reads leave no session state (no SET, LISTEN, cursor or advisory lock); asyncpg's default reset
    (RESET ALL, UNLISTEN *, ...) would be a third round trip per request."""
