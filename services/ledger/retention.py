"""Retention of old snapshot rows: past SNAPSHOT_RETENTION_DAYS, a snapshot that said the same as the
account's applied snapshot before it (same `content_hash`) is deleted, unless it is the last before
a pause of `CLOSE_GAP` or more (a trading day's close). Nothing of the positions is lost: they are
in the versions, and an as-of read in its time finds the snapshot before it, with the same
positions, priced as of that snapshot: at most a day's prices are coarsened to the close. Kept:
snapshots that changed something, closes, those keeping their own holdings (late, held,
corrected), and every account's current and held snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from shared.db.partitions import create_months_ahead
from shared.db.tables import BrokerAccount, InstrumentPrice, Snapshot, SnapshotStatus
from shared.events import utc_now

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
PRUNE_AT_MOST = 10_000  # snapshot rows per statement: one transaction stays short
# An account's syncs paused this long (a market's night, a weekend) end a day: its last snapshot
# before the pause stays, so that values past the retention keep each day's close.
CLOSE_GAP = timedelta(hours=4)


class _EpochSeconds(FunctionElement[float]):
    """Seconds since the Unix epoch of a time; each dialect spells it its own way."""

    type = Float()
    name = "epoch_seconds"
    inherit_cache = True


@compiles(_EpochSeconds, "postgresql")
def _epoch_on_postgres(element: _EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(_EpochSeconds, "sqlite")
def _epoch_on_sqlite(element: _EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    return (
        f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"  # 2440587.5: 1970
    )


async def prune_snapshots(sessions: async_sessionmaker[AsyncSession], *, taken_before: datetime) -> int:
    """Delete the unchanged snapshots taken before `taken_before`, a bounded statement at a time;
    return how many."""
    s = Snapshot
    previous = (
        func.lag(s.content_hash)
        .over(partition_by=s.account_id, order_by=(s.taken_at, s.id))
        .label("previous")
    )
    # The next one taken before the cutoff: none known, the snapshot stays (until a later pass).
    following = (
        func.lead(s.taken_at).over(partition_by=s.account_id, order_by=(s.taken_at, s.id)).label("following")
    )
    # Compared with every snapshot an as-of read could land on (late ones, those with rows of their
    # own), so that the one a read finds instead of a pruned one says the same.
    applied = (
        select(s.id, s.status, s.holdings_kept, s.content_hash, s.taken_at, previous, following)
        .where(s.status.in_(SnapshotStatus.VALID), s.taken_at < taken_before)
        .subquery()
    )
    pointed = select(BrokerAccount.id).where(
        or_(BrokerAccount.current_snapshot_id == applied.c.id, BrokerAccount.held_snapshot_id == applied.c.id)
    )
    unchanged = (
        select(applied.c.id)
        .where(
            and_(
                applied.c.status == SnapshotStatus.APPLIED,
                ~applied.c.holdings_kept,
                applied.c.content_hash == applied.c.previous,
                _EpochSeconds(applied.c.following) - _EpochSeconds(applied.c.taken_at)
                < CLOSE_GAP.total_seconds(),
                ~pointed.exists(),
            )
        )
        .limit(PRUNE_AT_MOST)
    )
    pruned = 0
    while True:
        async with sessions.begin() as session:
            result = await session.execute(delete(s).where(s.id.in_(unchanged)))
        deleted = int(result.rowcount)  # type: ignore[attr-defined]
        pruned += deleted
        if deleted < PRUNE_AT_MOST:
            return pruned


async def prune_periodically(
    sessions: async_sessionmaker[AsyncSession], *, retention_days: float, stop: asyncio.Event
) -> None:
    """Now and every hour until `stop`: create the prices' months ahead (Postgres), and prune
    (retention 0 keeps every snapshot). Two ledgers doing it at once do the same work: no error,
    only no work for the second."""
    while not stop.is_set():
        try:
            async with sessions.begin() as session:
                await create_months_ahead(await session.connection(), InstrumentPrice.__tablename__)
        except Exception:
            log.exception("the prices' months ahead not created; trying again in an hour")
        if retention_days:
            cutoff = utc_now() - timedelta(days=retention_days)
            try:
                pruned = await prune_snapshots(sessions, taken_before=cutoff)
            except Exception:
                log.exception("snapshots not pruned; trying again in an hour")
            else:
                if pruned:
                    log.info(
                        "unchanged snapshots pruned", extra={"pruned": pruned, "before": cutoff.isoformat()}
                    )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PRUNE_EVERY_S)
