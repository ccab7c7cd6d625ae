"""Claim due schedules and emit one SyncRequested per claimed tick.

A tick is claimed with a compare-and-set on `next_run_at`, so any number of schedulers can run at
once and no tick is emitted twice, on any database. On Postgres the due rows are also selected
FOR UPDATE SKIP LOCKED, so concurrent schedulers take disjoint rows without waiting on each other.
The request id is derived from the account and the tick, so even a publish repeated after a crash
names the same request. The publish happens before the claim commits: if it
fails, the claim rolls back and the tick is emitted on the next pass; nothing is lost.

After downtime, an account that missed many ticks gets one catch-up run, not one per missed tick.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage
from shared.db.sync_runs import requested_run
from shared.db.tables import BrokerAccount, Credential, Schedule
from shared.events import SyncRequested, SyncTrigger

log = logging.getLogger(__name__)

_TICK_NAMESPACE = uuid.UUID("1f0c3c52-59a5-4bd1-9d4f-4cfa0d0c6f1e")


def tick_request_id(account_id: uuid.UUID, due_at: datetime) -> uuid.UUID:
    return uuid.uuid5(_TICK_NAMESPACE, f"{account_id}/{due_at.isoformat()}")


async def emit_due_syncs(
    sessions: async_sessionmaker[AsyncSession], bus: MessageBus, *, now: datetime, limit: int
) -> int:
    """Emit a sync request for every schedule due at `now` (at most `limit`); return how many."""
    async with sessions.begin() as session:
        due = (
            await session.execute(
                select(Schedule, BrokerAccount.broker, Credential.ciphertext)
                .join(BrokerAccount, BrokerAccount.id == Schedule.account_id)
                .outerjoin(Credential, Credential.account_id == Schedule.account_id)
                .where(Schedule.enabled, Schedule.next_run_at <= now, BrokerAccount.needs_reauth.is_(False))
                .order_by(Schedule.next_run_at, Schedule.account_id)
                .limit(limit)
                # Postgres: concurrent schedulers skip each other's rows instead of queueing on them.
                .with_for_update(of=Schedule, skip_locked=True)
            )
        ).all()
        requests: list[SyncRequested] = []
        for schedule, broker, ciphertext in due:
            due_at = schedule.next_run_at
            claimed = await session.execute(
                update(Schedule)
                .where(Schedule.account_id == schedule.account_id, Schedule.next_run_at == due_at)
                .values(next_run_at=now + timedelta(seconds=schedule.interval_seconds))
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another scheduler took this tick
            request = SyncRequested(
                event_id=tick_request_id(schedule.account_id, due_at),
                account_id=schedule.account_id,
                broker=broker,
                trigger=SyncTrigger.SCHEDULE,
                credentials_ciphertext=ciphertext,
            )
            session.add(requested_run(request))
            requests.append(request)
        await session.flush()
        await bus.publish([OutgoingMessage.of(topics.sync_requests(r.broker), r) for r in requests])
    if requests:
        log.info("sync requests emitted", extra={"count": len(requests)})
    return len(requests)
