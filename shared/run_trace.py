"""One sync run's path, read from the database: requested -> attempts -> stored -> announced.

What `GET /v1/admin/runs/{id}/trace` answers and `portfolio-sync trace RUN_ID` prints. The requester
wrote the run (`sync_runs`), the ledger each attempt the fetcher reported (`sync_attempts`), the
snapshot and its announcement (`snapshots.announcement_id`, `announced_at`, set by the outbox relay).
Nothing secret is in any of these: failure reasons are the adapters' messages, which never carry
credentials (the conformance kit checks it).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import BrokerAccount, Snapshot, SyncAttempt, SyncRun

__all__ = ["RunTrace", "load_run_trace", "trace_lines"]


class Requested(BaseModel):
    at: datetime
    trigger: str  # schedule, manual, import, external (a run nobody recorded before its outcome)
    by_user: uuid.UUID | None = None  # manual syncs and imports
    schedule_tick: datetime | None = None  # scheduled syncs


class Attempt(BaseModel):
    attempt: int
    event_id: uuid.UUID
    fetcher_id: str | None  # host:pid; none for an import
    started_at: datetime | None
    duration_ms: int | None
    reported_at: datetime
    outcome: str  # snapshot, retrying, failed
    holdings: int | None = None
    failure_kind: str | None = None
    failure_reason: str | None = None


class Stored(BaseModel):
    snapshot_id: uuid.UUID
    status: str  # applied, late, held, dismissed
    holdings: int
    received_at: datetime


class Announced(BaseModel):
    snapshot_id: uuid.UUID
    event_id: uuid.UUID  # the HoldingsChanged on holdings.changes
    published_at: datetime | None  # None: still in the outbox


class RunTrace(BaseModel):
    run_id: uuid.UUID
    account_id: uuid.UUID
    broker: str
    status: str
    finished_at: datetime | None
    requested: Requested
    attempts: list[Attempt]
    stored: list[Stored]
    announced: list[Announced]


async def load_run_trace(session: AsyncSession, run_id: uuid.UUID) -> RunTrace | None:
    """The run's trace, or None for a run the database does not know."""
    found = (
        await session.execute(
            select(SyncRun, BrokerAccount.broker)
            .join(BrokerAccount, BrokerAccount.id == SyncRun.account_id)
            .where(SyncRun.id == run_id)
        )
    ).first()
    if found is None:
        return None
    run, broker = found
    attempts = (
        await session.scalars(
            select(SyncAttempt)
            .where(SyncAttempt.run_id == run_id)
            .order_by(SyncAttempt.attempt, SyncAttempt.reported_at)
        )
    ).all()
    snapshot_ids = {a.event_id for a in attempts if a.outcome == "snapshot"}
    if run.snapshot_id is not None:
        snapshot_ids.add(run.snapshot_id)
    snapshots = (
        (
            await session.scalars(
                select(Snapshot).where(Snapshot.id.in_(snapshot_ids)).order_by(Snapshot.received_at)
            )
        ).all()
        if snapshot_ids
        else []
    )
    return RunTrace(
        run_id=run.id,
        account_id=run.account_id,
        broker=broker,
        status=run.status,
        finished_at=run.finished_at,
        requested=Requested(
            at=run.requested_at,
            trigger=run.trigger,
            by_user=run.requested_by,
            schedule_tick=run.scheduled_for,
        ),
        attempts=[
            Attempt(
                attempt=a.attempt,
                event_id=a.event_id,
                fetcher_id=a.fetcher_id,
                started_at=a.started_at,
                duration_ms=a.duration_ms,
                reported_at=a.reported_at,
                outcome=a.outcome,
                holdings=a.holdings_count,
                failure_kind=a.failure_kind,
                failure_reason=a.failure_reason,
            )
            for a in attempts
        ],
        stored=[
            Stored(snapshot_id=s.id, status=s.status, holdings=s.holdings_count, received_at=s.received_at)
            for s in snapshots
        ],
        announced=[
            Announced(snapshot_id=s.id, event_id=s.announcement_id, published_at=s.announced_at)
            for s in snapshots
            if s.announcement_id is not None
        ],
    )


def trace_lines(trace: RunTrace) -> list[str]:
    """The trace as lines for a person, in the order things happened."""
    asked = trace.requested
    if asked.by_user is not None:
        by = f" by user {asked.by_user}"
    elif asked.schedule_tick is not None:
        by = f" by the schedule's tick of {asked.schedule_tick.isoformat()}"
    else:
        by = ""
    lines = [
        f"run {trace.run_id}: account {trace.account_id}, broker {trace.broker}, {trace.status}"
        + (f" at {trace.finished_at.isoformat()}" if trace.finished_at else ""),
        f"requested  {asked.at.isoformat()}  {asked.trigger}{by}",
    ]
    for a in trace.attempts:
        started = a.started_at.isoformat() if a.started_at else a.reported_at.isoformat()
        took = f" in {a.duration_ms} ms" if a.duration_ms is not None else ""
        where = f" on fetcher {a.fetcher_id}" if a.fetcher_id else ""
        if a.outcome == "snapshot":
            answer = f"snapshot of {a.holdings} holdings"
        else:
            answer = f"{a.outcome}: {a.failure_kind}: {a.failure_reason}"
        lines.append(f"attempt {a.attempt}  {started}{where}{took}: {answer}")
    if not trace.attempts and not trace.stored:
        lines.append("no attempt reported yet")
    for s in trace.stored:
        at = s.received_at.isoformat()
        lines.append(f"stored     {at}  snapshot {s.snapshot_id}: {s.status}, {s.holdings} holdings")
    announcements = {n.snapshot_id: n for n in trace.announced}
    for s in trace.stored:
        n = announcements.get(s.snapshot_id)
        if n is None:
            lines.append(f"announced  nothing: {_UNANNOUNCED.get(s.status, 'no position changed')}")
        elif n.published_at is None:
            lines.append(f"announced  not yet: HoldingsChanged {n.event_id} waits in the outbox")
        else:
            lines.append(f"announced  {n.published_at.isoformat()}  HoldingsChanged {n.event_id}")
    return lines


_UNANNOUNCED = {
    "held": "the snapshot is held for review",
    "late": "a newer snapshot was already current (history only)",
    "dismissed": "the snapshot was dismissed",
}
