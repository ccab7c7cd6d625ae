"""Stuck sync runs: still `requested` long after they were (last) requested, say because a process
died between recording the run and publishing its request. The scheduler and an operator request
them again with the same request id (the run's id), so a request that did get through after all is
the same run, not a second one."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage
from shared.db.tables import BrokerAccount, Credential, SyncRun
from shared.events import SyncRequested, SyncTrigger

REQUESTED = "requested"
# Runs of these triggers are a SyncRequested, which can be sent again; an import's run is not.
_REQUESTABLE = tuple(t.value for t in SyncTrigger)


def stuck(now: datetime, after_s: float) -> ColumnElement[bool]:
    """Runs still `requested` `after_s` after they were last requested, that a request can retry."""
    last_requested = func.coalesce(SyncRun.rerequested_at, SyncRun.requested_at)
    return and_(
        SyncRun.status == REQUESTED,
        last_requested <= now - timedelta(seconds=after_s),
        SyncRun.trigger.in_(_REQUESTABLE),
    )


async def stuck_run_ids(
    session: AsyncSession, *, now: datetime, after_s: float, limit: int
) -> list[uuid.UUID]:
    query = select(SyncRun.id).where(stuck(now, after_s)).order_by(SyncRun.requested_at).limit(limit)
    return list((await session.scalars(query)).all())


async def rerequest_run(session: AsyncSession, bus: MessageBus, run_id: uuid.UUID, *, now: datetime) -> bool:
    """Publish the run's SyncRequested again (same id), if the run is still `requested`; commit.

    The claim is a fenced update on `rerequested_at` (compare-and-set on the value read), so two
    schedulers, or a scheduler and an operator, send it once per round. A failed publish rolls the
    claim back (the run stays stuck and is tried again) and raises BusUnavailable. Returns False
    when the run is not `requested`, not requestable, or another process claimed it first.
    """
    row = (
        await session.execute(
            select(SyncRun, BrokerAccount.broker, Credential.ciphertext)
            .join(BrokerAccount, BrokerAccount.id == SyncRun.account_id)
            .outerjoin(Credential, Credential.account_id == SyncRun.account_id)
            .where(SyncRun.id == run_id)
        )
    ).one_or_none()
    if row is None:
        return False
    run, broker, ciphertext = row
    if run.status != REQUESTED or run.trigger not in _REQUESTABLE:
        return False
    seen = run.rerequested_at
    fence = SyncRun.rerequested_at.is_(None) if seen is None else SyncRun.rerequested_at == seen
    claimed = await session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.status == REQUESTED, fence)
        .values(rerequested_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        return False
    request = SyncRequested(
        event_id=run.id,
        account_id=run.account_id,
        broker=broker,
        trigger=SyncTrigger(run.trigger),
        credentials_ciphertext=ciphertext,
    )
    try:
        await bus.publish([OutgoingMessage.of(topics.sync_requests(broker), request)])
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return True
