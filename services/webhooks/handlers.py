"""The delivery service's work, in three steps that each take the database and a clock:

- `WebhookRecorder.handle` (the consumer's handler): each event that makes a webhook becomes a
  delivery, due now, for every endpoint of the account's portfolio subscribed to its type. Nothing is
  sent here: the consumer commits its offsets as soon as the deliveries are recorded.
- `DeliveryLoop.send_due`: sends the deliveries that are due, and records how each attempt went: a
  failed one is due again after the next wait of the retry schedule, or given up after the last; an
  endpoint whose attempts keep failing is disabled, with the reason.
- `DeliveryLoop.carry_out_replays`: queues again what a user asked to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.webhooks import metrics
from services.webhooks.payloads import webhook_of
from services.webhooks.sending import Outcome, WebhookSender
from services.webhooks.signing import signed_headers
from shared.bus.consumer import Outcomes
from shared.db.errors import is_transient_db_error
from shared.db.tables import (
    BrokerAccount,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointState,
    WebhookReplay,
    WebhookReplayDone,
)
from shared.events import Event, utc_now

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# A claimed delivery is not due again for this long: another process of the service skips it while it
# is being sent (the send takes at most three times WEBHOOKS_TIMEOUT_SECONDS).
CLAIM = timedelta(minutes=5)


@dataclass
class WebhookRecorder:
    sessions: async_sessionmaker[AsyncSession]

    async def handle(self, events: Sequence[Event]) -> Outcomes:
        webhooks = [w for w in map(webhook_of, events) if w is not None]
        if not webhooks:
            return {"no_webhook": len(events)}
        async with self.sessions.begin() as session:
            unknown = {w.account_id for w in webhooks if w.portfolio_id is None}
            accounts = await session.execute(
                select(BrokerAccount.id, BrokerAccount.portfolio_id).where(BrokerAccount.id.in_(unknown))
            )
            portfolio_of = {account: portfolio for account, portfolio in accounts}
            portfolios = {w.portfolio_id or portfolio_of.get(w.account_id) for w in webhooks} - {None}
            endpoints = (
                await session.scalars(
                    select(WebhookEndpoint).where(WebhookEndpoint.portfolio_id.in_(portfolios))
                )
            ).all()
            now = utc_now()
            rows = {}
            for webhook in webhooks:
                portfolio = webhook.portfolio_id or portfolio_of.get(webhook.account_id)
                for endpoint in endpoints:
                    if (
                        endpoint.portfolio_id != portfolio
                        or webhook.event_type not in endpoint.event_types.split(",")
                    ):
                        continue
                    key = f"{endpoint.id}:{webhook.message_id}"
                    rows[key] = WebhookDelivery(
                        endpoint_id=endpoint.id,
                        dedupe_key=key,
                        message_id=webhook.message_id,
                        event_type=webhook.event_type,
                        body=webhook.body(portfolio),
                        created_at=now,
                        status=PENDING,
                        attempts=0,
                        next_attempt_at=now,
                    )
            # An event delivered again by Kafka (a crash before the offsets' commit) adds nothing.
            recorded = set(
                await session.scalars(
                    select(WebhookDelivery.dedupe_key).where(WebhookDelivery.dedupe_key.in_(rows))
                )
            )
            session.add_all(row for key, row in rows.items() if key not in recorded)
        return {"queued": len(rows) - len(recorded), "no_webhook": len(events) - len(webhooks)}


@dataclass(frozen=True)
class _Due:
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    secrets: tuple[str, ...]
    message_id: str
    body: str
    enabled_at: datetime


@dataclass
class DeliveryLoop:
    sessions: async_sessionmaker[AsyncSession]
    sender: WebhookSender
    retry_schedule: tuple[float, ...]  # the waits before each retry, in seconds
    disable_after_failures: int
    batch_size: int = 50

    async def run(self, stop: asyncio.Event, poll_s: float) -> None:
        """Send what is due every `poll_s`, until `stop`; a database outage is waited out."""
        while not stop.is_set():
            try:
                await self.carry_out_replays(utc_now())
                sent = await self.send_due(utc_now())
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                log.warning("database unavailable; trying again", extra={"error": repr(exc)})
                sent = 0
            if sent < self.batch_size:  # a full batch: more may be due at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_s)

    async def send_due(self, now: datetime) -> int:
        """Send every delivery due at `now` (up to a batch), at once; how many were sent."""
        due = await self._claim(now)
        outcomes = await asyncio.gather(*(self._send(d, now) for d in due))
        for delivery, outcome in zip(due, outcomes, strict=True):
            try:
                await self._record(delivery, outcome, now)
            except IntegrityError:  # its endpoint was deleted while it was being sent
                log.info("webhook endpoint gone", extra={"endpoint_id": str(delivery.endpoint_id)})
        return len(due)

    async def _claim(self, now: datetime) -> list[_Due]:
        state = WebhookEndpointState
        async with self.sessions.begin() as session:
            rows = await session.execute(
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .outerjoin(state, state.endpoint_id == WebhookEndpoint.id)
                .where(
                    WebhookDelivery.status == PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    # Disabled: by this service, since its owner last enabled it.
                    or_(state.disabled_at.is_(None), state.disabled_at < WebhookEndpoint.enabled_at),
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(self.batch_size)
            )
            claimed = []
            for delivery, endpoint in rows:
                until = now + CLAIM
                taken = await session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == delivery.id,
                        WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
                    )
                    .values(next_attempt_at=until)
                )
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another process of the service claimed it first
                secrets = [endpoint.secret]
                if (
                    endpoint.previous_secret
                    and endpoint.previous_secret_until
                    and endpoint.previous_secret_until > now
                ):
                    secrets.append(endpoint.previous_secret)
                claimed.append(
                    _Due(
                        delivery.id,
                        endpoint.id,
                        endpoint.url,
                        tuple(secrets),
                        delivery.message_id,
                        delivery.body,
                        endpoint.enabled_at,
                    )
                )
        return claimed

    async def _send(self, due: _Due, now: datetime) -> Outcome:
        body = due.body.encode()
        headers = signed_headers(due.secrets, due.message_id, int(now.timestamp()), body)
        outcome = await self.sender.send(due.url, headers, body)
        log.info(
            "webhook sent" if outcome.delivered else "webhook not delivered",
            extra={
                "delivery_id": str(due.delivery_id),
                "endpoint_id": str(due.endpoint_id),
                "status_code": outcome.status_code,
                "error": outcome.error,
            },
        )
        return outcome

    async def _record(self, due: _Due, outcome: Outcome, now: datetime) -> None:
        async with self.sessions.begin() as session:
            delivery = await session.get(WebhookDelivery, due.delivery_id)
            if delivery is None:
                return  # the endpoint was deleted meanwhile
            metrics.ATTEMPTS.labels(outcome="delivered" if outcome.delivered else "failed").inc()
            delivery.attempts += 1
            delivery.last_attempt_at = now
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            if outcome.delivered:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = DELIVERED, now, None
            elif delivery.attempts > len(self.retry_schedule):
                delivery.status, delivery.next_attempt_at = FAILED, None
                metrics.GIVEN_UP.inc()
            else:
                delivery.next_attempt_at = now + timedelta(seconds=self.retry_schedule[delivery.attempts - 1])
            state = await session.get(WebhookEndpointState, due.endpoint_id)
            if state is None:
                state = WebhookEndpointState(endpoint_id=due.endpoint_id, consecutive_failures=0)
                session.add(state)
            elif state.disabled_at is not None and state.disabled_at < due.enabled_at:
                # Enabled again by its owner: its failures before count no more.
                state.consecutive_failures, state.failing_since = 0, None
                state.disabled_at = state.disabled_reason = None
            if outcome.delivered:
                state.consecutive_failures, state.failing_since, state.last_success_at = 0, None, now
                return
            state.consecutive_failures += 1
            state.failing_since = state.failing_since or now
            if state.consecutive_failures >= self.disable_after_failures and state.disabled_at is None:
                state.disabled_at = now
                state.disabled_reason = (
                    f"disabled after {state.consecutive_failures} failed attempts in a row since "
                    f"{state.failing_since:%Y-%m-%d %H:%M} UTC; the last: {outcome.error}"
                )[:500]
                metrics.ENDPOINTS_DISABLED.inc()
                log.warning(
                    "webhook endpoint disabled",
                    extra={"endpoint_id": str(due.endpoint_id), "reason": state.disabled_reason},
                )

    async def carry_out_replays(self, now: datetime) -> int:
        """Queue again the deliveries each pending replay names; how many replays were carried out."""
        done = 0
        async with self.sessions() as session:
            replays = (
                await session.scalars(
                    select(WebhookReplay)
                    .where(~exists().where(WebhookReplayDone.replay_id == WebhookReplay.id))
                    .order_by(WebhookReplay.requested_at)
                    .limit(self.batch_size)
                )
            ).all()
        for replay in replays:
            try:
                async with self.sessions.begin() as session:
                    await self._replay(session, replay, now)
                done += 1
            except IntegrityError:
                log.info("replay carried out by another process", extra={"replay_id": str(replay.id)})
        return done

    async def _replay(self, session: AsyncSession, replay: WebhookReplay, now: datetime) -> None:
        chosen = (
            WebhookDelivery.id == replay.delivery_id
            if replay.delivery_id is not None
            else and_(WebhookDelivery.replay_id.is_(None), WebhookDelivery.created_at >= replay.since)
        )
        originals = (
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.endpoint_id == replay.endpoint_id, chosen)
            )
        ).all()
        session.add_all(
            WebhookDelivery(
                endpoint_id=replay.endpoint_id,
                dedupe_key=f"{replay.id}:{original.id}",
                message_id=original.message_id,
                event_type=original.event_type,
                body=original.body,
                replay_id=replay.id,
                created_at=now,
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
            )
            for original in originals
        )
        session.add(WebhookReplayDone(replay_id=replay.id, done_at=now, deliveries=len(originals)))
        log.info("replay queued", extra={"replay_id": str(replay.id), "deliveries": len(originals)})
