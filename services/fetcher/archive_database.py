"""The archive in the database (RAW_ARCHIVE=database): table raw_answers, written by the fetcher's own
role. SQLAlchemy only, so the embedded mode keeps it in its SQLite file as Postgres does in Postgres."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.fetcher.archive import ArchivedAnswer, compressed, decompressed
from shared.db.partitions import create_months_ahead
from shared.db.sets import insert_absent
from shared.db.tables import RawAnswer


class DatabaseArchive:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # A batch's answers go in as one statement, atomic on its own: no BEGIN and COMMIT around it
        # (two round trips fewer per batch). Whatever a failed insert left is kept one by one.
        self._statements = engine.execution_options(isolation_level="AUTOCOMMIT")

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
        # On Postgres the table's key holds the time too (it is partitioned by month): an attempt
        # stored before is looked for (in the INSERT itself there), and a redelivery racing with its
        # first keeps both, which a replay applies alike.
        try:
            async with self._statements.connect() as conn:
                await self._keep_absent(conn, rows)
        except IntegrityError:
            # An account deleted while its sync was in flight: its answer has nothing left to
            # correct. The others are kept one by one; the vanished account's are dropped.
            for row in rows:
                with contextlib.suppress(IntegrityError):
                    async with self._statements.connect() as conn:
                        await self._keep_absent(conn, [row])

    async def _keep_absent(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        """The rows whose attempt is not stored yet: one statement on Postgres, two on SQLite."""
        if conn.dialect.name == "postgresql":
            await insert_absent(conn, RawAnswer, rows, key=("run_id", "attempt"))
            return
        pairs = [(r["run_id"], r["attempt"]) for r in rows]
        attempt = tuple_(RawAnswer.run_id, RawAnswer.attempt)
        found = await conn.execute(select(RawAnswer.run_id, RawAnswer.attempt).where(attempt.in_(pairs)))
        stored = {(run_id, attempt) for run_id, attempt in found}
        absent = [r for r in rows if (r["run_id"], r["attempt"]) not in stored]
        if absent:
            await conn.execute(sqlite.insert(RawAnswer).on_conflict_do_nothing(), absent)

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
        """On Postgres the months that ended before the time go whole (migration 0016), then the
        rows left before it; how many rows went in all. The months ahead are created here too."""
        dropped = 0
        async with self._engine.begin() as conn:
            await create_months_ahead(conn, RawAnswer.__tablename__)
            if conn.dialect.name == "postgresql":
                before = (
                    select(func.count()).select_from(RawAnswer).where(RawAnswer.received_at < received_before)
                )
                counted = int(await conn.scalar(before) or 0)
                await conn.execute(
                    text("SELECT drop_raw_answer_partitions(:before)"), {"before": received_before}
                )
                dropped = counted - int(await conn.scalar(before) or 0)
            result = await conn.execute(delete(RawAnswer).where(RawAnswer.received_at < received_before))
        return dropped + int(result.rowcount)
