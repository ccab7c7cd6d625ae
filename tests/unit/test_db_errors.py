"""Database errors are classified by what they mean (their SQLSTATE), not by their wrapper class."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from shared.db.errors import is_transient_db_error


def _wrapped(orig: BaseException) -> DBAPIError:
    """What SQLAlchemy raises for a driver error: the class it picks depends on the driver's."""
    return DBAPIError.instance("select 1", None, orig, Exception)  # type: ignore[arg-type]


def _through_the_adapter(orig: asyncpg.PostgresError) -> DBAPIError:
    """As SQLAlchemy's asyncpg dialect really raises it: the adapter's error, caused by asyncpg's."""
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        try:
            raise orig
        except asyncpg.PostgresError as error:
            raise dbapi.Error(f"<class '{type(error).__name__}'>: {error}") from error
    except dbapi.Error as adapted:
        adapted.sqlstate = orig.sqlstate  # type: ignore[attr-defined]
        return DBAPIError.instance("select 1", None, adapted, dbapi.Error)  # type: ignore[arg-type]


TRANSIENT = [
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),  # 57P03
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server"),
    asyncpg.exceptions.ConnectionFailureError("connection failure"),  # 08006
    asyncpg.exceptions.ClientCannotConnectError("cannot connect"),  # 08001
    asyncpg.exceptions.TooManyConnectionsError("too many clients already"),  # 53300
    asyncpg.exceptions.DiskFullError("could not extend file"),  # 53100
    asyncpg.exceptions.SerializationError("could not serialize access"),  # 40001
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),  # 40P01
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),  # 57014
]

PERMANENT = [
    asyncpg.exceptions.UniqueViolationError("duplicate key value"),  # 23505
    asyncpg.exceptions.ForeignKeyViolationError("violates foreign key constraint"),  # 23503
    asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),  # 22003
    asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax for type uuid"),  # 22P02
    asyncpg.exceptions.UndefinedColumnError("column does not exist"),  # 42703: a bug, not an outage
    # 42501: a service's role lacks a grant (`db roles` not run, or a write outside its row of the
    # ownership table): waiting does not cure it.
    asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table users"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_outages_and_conflicts_are_transient_however_they_are_wrapped(error: asyncpg.PostgresError) -> None:
    assert is_transient_db_error(error)
    assert is_transient_db_error(_wrapped(error))
    assert is_transient_db_error(_through_the_adapter(error))


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__name__)
def test_constraint_and_data_errors_are_permanent(error: asyncpg.PostgresError) -> None:
    assert not is_transient_db_error(error)
    assert not is_transient_db_error(_wrapped(error))
    assert not is_transient_db_error(_through_the_adapter(error))


def test_the_57p03_seen_under_a_postgres_restart_is_a_plain_dbapi_error_and_transient() -> None:
    # The wrapper SQLAlchemy chose in the incident: neither OperationalError nor InterfaceError.
    wrapped = _wrapped(asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"))
    assert type(wrapped) is DBAPIError
    assert is_transient_db_error(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        OSError("connection refused"),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_level_errors_are_transient(error: BaseException) -> None:
    assert is_transient_db_error(error)
    assert is_transient_db_error(_wrapped(error))


def test_an_invalidated_connection_is_transient_whatever_it_carries() -> None:
    error = DBAPIError("select 1", None, ValueError("odd"), connection_invalidated=True)
    assert is_transient_db_error(error)


def test_the_cause_chain_is_followed() -> None:
    outer = RuntimeError("while applying a batch")
    outer.__cause__ = _wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection"))
    assert is_transient_db_error(outer)


def test_bugs_and_wrapped_permanent_errors_are_not_transient() -> None:
    assert not is_transient_db_error(ValueError("bad"))
    assert not is_transient_db_error(KeyError("x"))
    integrity = IntegrityError("insert", None, asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not is_transient_db_error(integrity)


def test_sqlalchemy_connection_wrappers_without_a_sqlstate_are_transient() -> None:
    # OperationalError / InterfaceError raised by SQLAlchemy itself (pool, closed connection).
    assert is_transient_db_error(OperationalError("connect", None, Exception("no route to host")))
    assert is_transient_db_error(InterfaceError("select 1", None, Exception("connection is closed")))
