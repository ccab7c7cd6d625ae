"""The scheduler's part in stuck runs: request again what has waited longer than
STUCK_RUN_AFTER_SECONDS (shared/stuck_runs.py says what stuck means and how it is claimed)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus.port import MessageBus
from shared.stuck_runs import rerequest_run, stuck_run_ids

log = logging.getLogger(__name__)


async def rerequest_stuck_runs(
    sessions: async_sessionmaker[AsyncSession], bus: MessageBus, *, now: datetime, after_s: float, limit: int
) -> int:
    """Request again up to `limit` stuck runs; return how many were sent."""
    async with sessions() as session:
        run_ids = await stuck_run_ids(session, now=now, after_s=after_s, limit=limit)
    sent = 0
    for run_id in run_ids:
        async with sessions() as session:
            if await rerequest_run(session, bus, run_id, now=now):
                sent += 1
                log.warning("stuck sync run requested again", extra={"run_id": str(run_id)})
    return sent
