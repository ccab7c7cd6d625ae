"""Which database errors to wait out and which to give up on, decided by what they mean.

SQLAlchemy wraps a driver's error in a class of its own choosing (asyncpg's "the database system is
shutting down" arrives as a plain `DBAPIError`), so the wrapper says little. The SQLSTATE the server
sent says what happened; failing that, an error of the connection itself (refused, reset, closed,
timed out) means the database is out of reach. Either way the remedy is the same: wait and retry.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError as SQLAlchemyInterfaceError
from sqlalchemy.exc import OperationalError as SQLAlchemyOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

_TRANSIENT_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception
        "53",  # insufficient resources: too many connections, out of memory or disk
    }
)
_TRANSIENT_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is stopping, or pg_terminate_backend
        "57P02",  # crash_shutdown: another backend crashed and the server restarts
        "57P03",  # cannot_connect_now: starting up or shutting down
        "57014",  # query_canceled: by an operator or statement_timeout (transient before, kept so)
        "40001",  # serialization_failure: retrying the transaction is the documented remedy
        "40P01",  # deadlock_detected: likewise
    }
)

# No SQLSTATE: the connection itself failed (or SQLAlchemy's pool had none to give in time).
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable (ConnectionError and socket errors)
    TimeoutError,
    asyncpg.InterfaceError,  # closed under the driver (ConnectionDoesNotExistError among them)
    SQLAlchemyOperationalError,
    SQLAlchemyInterfaceError,
    PoolTimeout,
)


def sqlstate_of(exc: BaseException) -> str | None:
    """The first SQLSTATE in `exc`'s chain (SQLAlchemy's `.orig`, then causes), if the server sent one."""
    for error in _chain(exc):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_transient_sqlstate(code: str) -> bool:
    return code in _TRANSIENT_SQLSTATES or code[:2] in _TRANSIENT_SQLSTATE_CLASSES


def is_transient_db_error(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable, restarting or briefly in conflict (wait and
    retry) rather than that the work itself is wrong (a constraint or data error: dead-letter it)."""
    code = sqlstate_of(exc)
    if code is not None:
        return is_transient_sqlstate(code)
    for error in _chain(exc):
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, _CONNECTION_ERRORS):
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, what it wraps (`.orig`) and what caused it, each once, outermost first."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            pending.append(current.orig)
        # Only explicit causes: an error raised while handling an outage is not an outage itself.
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    return chain
