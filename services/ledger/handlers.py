"""Apply a batch of snapshots and failures in one transaction, idempotently on event id.

The batch commits before the consumer commits its offsets, so a crash redelivers at worst a batch
that is already applied; the `processed_events` rows make that redelivery change nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.positions import position_changes
from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage
from shared.db.tables import BrokerAccount, Position, ProcessedEvent, Snapshot, SnapshotHolding, SyncRun
from shared.events import Event, FailureKind, Holding, HoldingsChanged, HoldingSnapshot, SyncFailed

log = logging.getLogger(__name__)

CONSUMER = "ledger"
_FINISHED = frozenset({"succeeded", "failed"})


class UnknownAccount(LookupError):
    """An event for an account the database does not have (deleted, or never created)."""


class Ledger:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], bus: MessageBus) -> None:
        self._sessions = sessions
        self._bus = bus

    async def apply_batch(self, events: Sequence[Event]) -> None:
        async with self._sessions.begin() as session:
            fresh = await _unprocessed(session, events)
            accounts = await _accounts(session, {e.account_id for e in fresh})
            announcements: list[HoldingsChanged] = []
            for event in fresh:
                account = accounts.get(event.account_id)
                if account is None:
                    raise UnknownAccount(f"no broker account {event.account_id}")
                session.add(ProcessedEvent(event_id=event.event_id, consumer=CONSUMER))
                if isinstance(event, HoldingSnapshot):
                    changed = await _apply_snapshot(session, account, event)
                    if changed is not None:
                        announcements.append(changed)
                elif isinstance(event, SyncFailed):
                    await _apply_failure(session, account, event)
        # At-least-once: a crash here redelivers the batch, which is then skipped as processed.
        await self._bus.publish([OutgoingMessage.of(topics.HOLDINGS_CHANGES, a) for a in announcements])


async def _unprocessed(session: AsyncSession, events: Sequence[Event]) -> list[Event]:
    ids = {e.event_id for e in events}
    seen = set(
        await session.scalars(
            select(ProcessedEvent.event_id).where(
                ProcessedEvent.consumer == CONSUMER, ProcessedEvent.event_id.in_(ids)
            )
        )
    )
    fresh = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            fresh.append(event)
    return fresh


async def _accounts(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, BrokerAccount]:
    rows = await session.scalars(select(BrokerAccount).where(BrokerAccount.id.in_(ids)))
    return {a.id: a for a in rows}


async def _apply_snapshot(
    session: AsyncSession, account: BrokerAccount, snapshot: HoldingSnapshot
) -> HoldingsChanged | None:
    session.add(
        Snapshot(
            id=snapshot.event_id,
            account_id=account.id,
            request_id=snapshot.request_id,
            taken_at=snapshot.taken_at,
            holdings_count=len(snapshot.holdings),
        )
    )
    session.add_all(
        SnapshotHolding(snapshot_id=snapshot.event_id, **_holding_columns(h)) for h in snapshot.holdings
    )
    await _record_attempt(
        session,
        snapshot.request_id,
        account.id,
        snapshot.occurred_at,
        attempt=snapshot.attempt,
        status="succeeded",
        snapshot_id=snapshot.event_id,
    )
    if account.positions_as_of is not None and snapshot.taken_at <= account.positions_as_of:
        log.info("older snapshot kept in history only", extra={"account_id": str(account.id)})
        return None

    current = await session.scalars(select(Position).where(Position.account_id == account.id))
    changes = position_changes({(p.symbol, p.exchange): p.quantity for p in current}, snapshot.holdings)
    await session.execute(delete(Position).where(Position.account_id == account.id))
    session.add_all(
        Position(
            account_id=account.id,
            as_of=snapshot.taken_at,
            snapshot_id=snapshot.event_id,
            **_holding_columns(h),
        )
        for h in snapshot.holdings
    )
    account.positions_as_of = snapshot.taken_at
    account.last_attempt_at = account.last_success_at = snapshot.taken_at
    account.consecutive_failures = 0
    account.last_error = None
    if not changes:
        return None
    return HoldingsChanged(
        account_id=account.id,
        portfolio_id=account.portfolio_id,
        snapshot_id=snapshot.event_id,
        taken_at=snapshot.taken_at,
        changes=tuple(changes),
    )


async def _apply_failure(session: AsyncSession, account: BrokerAccount, failure: SyncFailed) -> None:
    account.last_attempt_at = failure.occurred_at
    account.last_error = f"{failure.kind.value}: {failure.reason}"
    if failure.final:
        account.consecutive_failures += 1
    if failure.kind is FailureKind.AUTH:
        account.needs_reauth = True
    await _record_attempt(
        session,
        failure.request_id,
        account.id,
        failure.occurred_at,
        attempt=failure.attempt,
        status="failed" if failure.final else "retrying",
        failure_kind=failure.kind.value,
        failure_reason=failure.reason,
        next_attempt_at=failure.retry_at,
    )


async def _record_attempt(
    session: AsyncSession,
    run_id: uuid.UUID,
    account_id: uuid.UUID,
    at: datetime,
    *,
    attempt: int,
    status: str,
    snapshot_id: uuid.UUID | None = None,
    failure_kind: str | None = None,
    failure_reason: str | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Record how attempt `attempt` of a run ended, unless news of a later attempt came first:
    failures and snapshots travel on different topics, so their relative order is not guaranteed."""
    run = await session.get(SyncRun, run_id)
    if run is None:  # requested by something that did not record the run (an operator's tool)
        run = SyncRun(id=run_id, account_id=account_id, trigger="external", requested_at=at, attempts=attempt)
        session.add(run)
    elif run.attempts > attempt or (run.attempts == attempt and run.status in _FINISHED):
        return
    run.status = status
    run.attempts = attempt
    run.finished_at = at if status in _FINISHED else None
    run.snapshot_id = snapshot_id
    run.failure_kind = failure_kind
    run.failure_reason = failure_reason
    run.next_attempt_at = next_attempt_at


def _holding_columns(holding: Holding) -> dict[str, object]:
    return {
        "symbol": holding.symbol,
        "exchange": holding.exchange,
        "isin": holding.isin,
        "currency": holding.currency,
        "asset_type": holding.asset_type.value,
        "quantity": holding.quantity,
        "average_price": holding.average_price,
        "last_price": holding.last_price,
    }
