"""A request's session is closed after its answer may have gone out: a connection that died in
between (Postgres restarting) must not turn into an error the server cannot answer any more."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.api.deps import db_session


class _ClosingFails:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.close_calls = 0

    async def close(self) -> None:
        self.close_calls += 1
        raise self.error


async def _use_and_close(session: _ClosingFails) -> None:
    context: Any = SimpleNamespace(sessions=lambda: session)
    dependency = db_session(context)
    assert await anext(dependency) is session
    with pytest.raises(StopAsyncIteration):
        await anext(dependency)


async def test_a_connection_gone_at_close_is_logged_not_raised() -> None:
    gone = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    session = _ClosingFails(DBAPIError("ROLLBACK", None, gone))
    await _use_and_close(session)
    assert session.close_calls == 1


async def test_any_other_error_at_close_is_raised() -> None:
    session = _ClosingFails(IntegrityError("COMMIT", None, ValueError("a bug")))
    with pytest.raises(IntegrityError):
        await _use_and_close(session)
