"""The fast reads' pool never hands a connection an error interrupted to the next request, and a
connection Postgres ended while pooled reads as the outage it is (services/api/fast_reads.py)."""

from __future__ import annotations

import asyncpg
import pytest

from services.api.fast_reads import FastReads


class _Connection:
    def __init__(self) -> None:
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


class _Pool:
    def __init__(self) -> None:
        self.connection = _Connection()
        self.released: list[_Connection] = []

    async def acquire(self, **_: float) -> _Connection:
        return self.connection

    async def release(self, connection: _Connection) -> None:
        self.released.append(connection)


async def test_a_connection_is_given_back_as_it_is_after_a_read() -> None:
    pool = _Pool()
    async with FastReads(pool).connection():  # type: ignore[arg-type]
        pass
    assert pool.released == [pool.connection] and not pool.connection.terminated


async def test_a_connection_an_error_interrupted_is_closed_before_it_goes_back() -> None:
    pool = _Pool()
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        async with FastReads(pool).connection():  # type: ignore[arg-type]
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert pool.connection.terminated and pool.released == [pool.connection]


async def test_a_connection_postgres_ended_while_pooled_is_an_outage() -> None:
    pool = _Pool()
    with pytest.raises(ConnectionError) as raised:
        async with FastReads(pool).connection():  # type: ignore[arg-type]
            raise asyncpg.InternalClientError("cannot switch to state 11; another operation is in progress")
    assert isinstance(raised.value.__cause__, asyncpg.InternalClientError)
    assert pool.connection.terminated and pool.released == [pool.connection]
