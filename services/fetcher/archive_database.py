"""The archive in the database (RAW_ARCHIVE=database): table raw_answers, written by the fetcher's own
role. SQLAlchemy only, so the embedded mode keeps it in its SQLite file as Postgres does in Postgres."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.fetcher.archive import ArchivedAnswer, compressed, decompressed
from shared.db.tables import RawAnswer


class DatabaseArchive:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # A batch's answers go in as one statement, atomic on its own: no BEGIN and COMMIT around it
        # (two round trips of three per batch). Whatever a failed insert left is kept one by one below.
        self._statements = engine.execution_options(isolation_level="AUTOCOMMIT")
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    async def keep(self, answers: Sequence[ArchivedAnswer]) -> None:
        if not answers:
            return
        rows = [
            {
                "run_id": a.run_id,
                "attempt": a.attempt,
                "account_id": a.account_id,
                "broker": a.broker,
                "received_at": a.received_at,
                "status_code": a.status_code,
                "body": compressed(a.body),
                "body_bytes": len(a.body),
                "snapshot_id": a.snapshot_id,
            }
            for a in answers
        ]
        statement = self._insert(RawAnswer).on_conflict_do_nothing(index_elements=["run_id", "attempt"])
        try:
            async with self._statements.connect() as conn:
                await conn.execute(statement, rows)
        except IntegrityError:
            # An account deleted while its sync was in flight: its answer has nothing left to
            # correct. The others are kept one by one; the vanished account's are dropped.
            for row in rows:
                with contextlib.suppress(IntegrityError):
                    async with self._statements.connect() as conn:
                        await conn.execute(statement, [row])

    async def answers_of(self, account_id: uuid.UUID, *, since: datetime | None) -> list[ArchivedAnswer]:
        query = select(RawAnswer).where(RawAnswer.account_id == account_id)
        if since is not None:
            query = query.where(RawAnswer.received_at >= since)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(RawAnswer.received_at, RawAnswer.attempt))
            return [
                ArchivedAnswer(
                    run_id=row.run_id,
                    attempt=row.attempt,
                    account_id=row.account_id,
                    broker=row.broker,
                    received_at=row.received_at,
                    status_code=row.status_code,
                    body=decompressed(row.body),
                    snapshot_id=row.snapshot_id,
                )
                for row in rows
            ]

    async def prune(self, *, received_before: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(RawAnswer).where(RawAnswer.received_at < received_before))
        return result.rowcount
