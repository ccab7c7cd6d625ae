"""Claim due schedules and emit one SyncRequested per claimed tick.

A tick is claimed with a compare-and-set on `next_run_at`, so any number of schedulers can run at
once and no tick is emitted twice, on any database. On Postgres the due rows are also selected
FOR UPDATE SKIP LOCKED, so concurrent schedulers take disjoint rows without waiting on each other.
The request id is derived from the account and the tick, so even a publish repeated after a crash
names the same request. The publish happens before the claim commits: if it
fails, the claim rolls back and the tick is emitted on a later pass; nothing is lost.

Each broker's due schedules are claimed and published in a transaction of their own, so a broker
whose topic is missing or whose publish fails is set aside (exponential backoff, a WARNING and the
`portfolio_sync_scheduler_publish_failures_total` counter) while every other broker's fire. Accounts
of an inactive portfolio, or whose credentials the broker rejected, or of a broker an operator
paused (`broker_pauses`), are not scheduled: their ticks stay due, and fire once when that ends.

Every kind of schedule (`shared/schedule_times.py`) moves on the same way: once fired, `next_run_at`
becomes the kind's next time after now (interval: now + N; cron: the next match; once: none), and
`last_run_at` and `run_count` change in the same compare-and-set. After downtime, an account that
missed many ticks gets one catch-up run, not one per missed tick; a schedule past its `end_at` does
not fire at all.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.backoff import BrokerBackoff
from services.scheduler.metrics import PUBLISH_FAILURES, TICK_DELAY, TICKS_CLAIMED
from shared import topics
from shared.bus.port import BusUnavailable, MessageBus, OutgoingMessage
from shared.db.schedule_rules import rule_of
from shared.db.sync_runs import requested_run
from shared.db.tables import BrokerAccount, BrokerPause, Credential, Portfolio, Schedule
from shared.events import SyncRequested, SyncTrigger
from shared.metrics import SYNC_REQUESTS

log = logging.getLogger(__name__)

_TICK_NAMESPACE = uuid.UUID("1f0c3c52-59a5-4bd1-9d4f-4cfa0d0c6f1e")


def tick_request_id(account_id: uuid.UUID, due_at: datetime) -> uuid.UUID:
    return uuid.uuid5(_TICK_NAMESPACE, f"{account_id}/{due_at.isoformat()}")


def _due(now: datetime) -> ColumnElement[bool]:
    """Schedules that should fire at `now`: enabled, due, not ended, credentials not rejected,
    portfolio active, broker not paused by an operator."""
    return and_(
        Schedule.enabled,
        Schedule.next_run_at <= now,
        or_(Schedule.end_at.is_(None), Schedule.end_at >= now),
        BrokerAccount.needs_reauth.is_(False),
        Portfolio.active.is_(True),
        ~exists().where(BrokerPause.broker == BrokerAccount.broker),
    )


async def emit_due_syncs(
    sessions: async_sessionmaker[AsyncSession],
    bus: MessageBus,
    *,
    now: datetime,
    limit: int,
    backoff: BrokerBackoff | None = None,
    publish_timeout_s: float = 10.0,
) -> int:
    """Emit a sync request for every schedule due at `now` (at most `limit`); return how many.

    Broker by broker, each in its own transaction: a broker whose publish fails (say, its topic does
    not exist) has its claims rolled back and is set aside in `backoff`, and the others still fire.
    """
    backoff = backoff if backoff is not None else BrokerBackoff()
    set_aside = backoff.waiting(now=now)
    async with sessions() as session:
        brokers = (
            (
                await session.execute(
                    select(BrokerAccount.broker)
                    .select_from(Schedule)
                    .join(BrokerAccount, BrokerAccount.id == Schedule.account_id)
                    .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
                    .where(_due(now), BrokerAccount.broker.not_in(set_aside))
                    .group_by(BrokerAccount.broker)
                    # The broker whose oldest tick has waited longest goes first.
                    .order_by(func.min(Schedule.next_run_at), BrokerAccount.broker)
                )
            )
            .scalars()
            .all()
        )
    emitted = 0
    for broker in brokers:
        if emitted >= limit:
            break
        try:
            emitted += await _emit_broker(
                sessions, bus, broker, now=now, limit=limit - emitted, publish_timeout_s=publish_timeout_s
            )
        except BusUnavailable as exc:
            delay = backoff.set_aside(broker, now=now)
            PUBLISH_FAILURES.labels(broker=broker).inc()
            log.warning(
                "broker's sync requests not published; its schedules wait, the other brokers' go on",
                extra={"broker": broker, "retry_in_s": delay, "error": str(exc)},
            )
        else:
            backoff.succeeded(broker)
    return emitted


async def _emit_broker(
    sessions: async_sessionmaker[AsyncSession],
    bus: MessageBus,
    broker: str,
    *,
    now: datetime,
    limit: int,
    publish_timeout_s: float,
) -> int:
    async with sessions.begin() as session:
        due = (
            await session.execute(
                select(Schedule, Credential.ciphertext)
                .join(BrokerAccount, BrokerAccount.id == Schedule.account_id)
                .join(Portfolio, Portfolio.id == BrokerAccount.portfolio_id)
                .outerjoin(Credential, Credential.account_id == Schedule.account_id)
                .where(_due(now), BrokerAccount.broker == broker)
                .order_by(Schedule.next_run_at, Schedule.account_id)
                .limit(limit)
                # Postgres: concurrent schedulers skip each other's rows instead of queueing on them.
                .with_for_update(of=Schedule, skip_locked=True)
            )
        ).all()
        requests: list[SyncRequested] = []
        delays: list[float] = []
        for schedule, ciphertext in due:
            due_at = schedule.next_run_at
            assert due_at is not None  # only due rows were selected
            claimed = await session.execute(
                update(Schedule)
                .where(Schedule.account_id == schedule.account_id, Schedule.next_run_at == due_at)
                .values(
                    next_run_at=rule_of(schedule).next_after(now),
                    last_run_at=now,
                    run_count=Schedule.run_count + 1,
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another scheduler took this tick
            request = SyncRequested(
                event_id=tick_request_id(schedule.account_id, due_at),
                account_id=schedule.account_id,
                broker=broker,
                trigger=SyncTrigger.SCHEDULE,
                scheduled_for=due_at,
                credentials_ciphertext=ciphertext,
            )
            session.add(requested_run(request))
            requests.append(request)
            delays.append((now - due_at).total_seconds())
        await session.flush()
        messages = [OutgoingMessage.of(topics.sync_requests(broker), r) for r in requests]
        try:
            # A missing topic makes Kafka clients wait for its metadata for long: bound the wait.
            await asyncio.wait_for(bus.publish(messages), publish_timeout_s)
        except TimeoutError:
            raise BusUnavailable(f"publish to {topics.sync_requests(broker)} timed out") from None
    # Counted once the claims are committed: a pass that rolled back claimed nothing.
    if requests:
        TICKS_CLAIMED.labels(broker=broker).inc(len(requests))
        SYNC_REQUESTS.labels(broker=broker, trigger=SyncTrigger.SCHEDULE.value).inc(len(requests))
        delay = TICK_DELAY.labels(broker=broker)
        for seconds in delays:
            delay.observe(max(0.0, seconds))
        log.info("sync requests emitted", extra={"broker": broker, "count": len(requests)})
    return len(requests)
