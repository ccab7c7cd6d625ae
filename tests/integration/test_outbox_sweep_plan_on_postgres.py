"""The sweep's claim on old outbox rows (`_mark_in_doubt`) picks and locks them in one scan, whatever
Postgres believes of the table: as a plain subquery of its UPDATE, a young table's statistics had
Postgres rescan (and re-lock) it for every row, minutes of CPU under load (bench/README.md, Ledger)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.ledger.outbox import OutboxRelay
from shared.bus.memory import InMemoryBus
from shared.db.tables import OutboxMessage
from shared.events import utc_now


def _loops_of_locking_scans(plan: dict[str, Any]) -> list[int]:
    """How many times each LockRows node of an EXPLAIN ANALYZE plan ran."""
    own = [plan["Actual Loops"]] if plan["Node Type"] == "LockRows" else []
    return own + [loops for child in plan.get("Plans", []) for loops in _loops_of_locking_scans(child)]


async def test_marking_rows_in_doubt_locks_them_in_one_scan(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    def rows() -> list[dict[str, Any]]:
        return [
            {
                "event_id": uuid.uuid4(),
                "topic": "holdings.changes",
                "message_key": str(uuid.uuid4()),
                "payload": "{}",
                "created_at": utc_now() - timedelta(minutes=1),
            }
            for _ in range(300)
        ]

    # As on the ledger's outbox under load: its statistics taken when every row written so far was
    # relayed (no rows in pages that hold only deleted ones), while new rows have come since.
    async with sessions.begin() as session:
        await session.execute(insert(OutboxMessage), rows())
        await session.execute(delete(OutboxMessage))
    async with engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE outbox")
        await conn.commit()
    async with sessions.begin() as session:
        await session.execute(insert(OutboxMessage), rows())
    relay = OutboxRelay(sessions=sessions, bus=InMemoryBus(), batch=1000)
    relay._in_hand = {uuid.uuid4() for _ in range(200)}  # a batch handed over, not yet relayed
    claims: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().startswith("WITH") or statement.startswith("UPDATE outbox SET in_doubt"):
            claims.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", keep)
    try:
        await relay._mark_in_doubt(timedelta(seconds=2))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", keep)
    [(statement, parameters)] = claims
    async with engine.connect() as conn:
        explained = await conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        plan = explained.scalar_one()
        await conn.rollback()
    [root] = json.loads(plan) if isinstance(plan, str) else plan
    assert _loops_of_locking_scans(root["Plan"]) == [1]
