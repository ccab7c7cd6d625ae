"""Faults at the outbox relay's one delicate moment: Kafka has acknowledged, the delete has not committed.

`FailingCommits` wraps a session factory so that one chosen commit fails the way a connection lost
under it does (the transaction is rolled back, the caller gets SQLAlchemy's OperationalError);
`AfterPublishing` wraps a bus and runs a callback once a publish to `holdings.changes` came back
acknowledged. Together: "the relay's publish landed, then its delete did not commit" — a crash or
a database outage at that moment — with no hook in production code.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage


class FailingCommits:
    """A session factory whose next commit fails once `fail_next_commit` was called."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.kw = sessions.kw
        self._sessions = sessions
        self._fail_next = False
        self.failed = 0

    def fail_next_commit(self, *_: object) -> None:
        self._fail_next = True

    def __call__(self) -> AsyncSession:
        return self._sessions()

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            await session.begin()
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            if self._fail_next:
                self._fail_next = False
                self.failed += 1
                await session.rollback()
                raise OperationalError("COMMIT", None, ConnectionResetError("connection lost under COMMIT"))
            await session.commit()


class AfterPublishing:
    """A bus that calls `then(messages)` after the first `times` acknowledged publishes of changes."""

    def __init__(
        self, bus: MessageBus, then: Callable[[Sequence[OutgoingMessage]], None], *, times: int = 1
    ) -> None:
        self.inner = bus
        self._then = then
        self.times = times

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        await self.inner.publish(messages)
        if self.times > 0 and any(m.topic == topics.HOLDINGS_CHANGES for m in messages):
            self.times -= 1
            self._then(messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
