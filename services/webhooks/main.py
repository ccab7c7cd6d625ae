"""Entrypoint: the webhook delivery service records the deliveries that `holdings.changes` and
`sync.failures` make, in group `webhooks`, and sends the due ones in a loop beside the consumer."""

from __future__ import annotations

import asyncio

from services.webhooks.handlers import DeliveryLoop, WebhookRecorder
from services.webhooks.sending import WebhookSender
from shared import consumer_groups, topics
from shared.bus.consumer import EventConsumer, OneStep
from shared.bus.port import MessageBus
from shared.db.engine import session_factory
from shared.events import HOLDINGS_CHANGES_EVENTS, SyncFailed
from shared.metrics import metrics_served
from shared.runtime import checked_engine, run_until_signalled, started_bus
from shared.settings import Settings


async def run_webhooks(
    recorder: WebhookRecorder, loop: DeliveryLoop, bus: MessageBus, stop: asyncio.Event, *, poll_s: float
) -> None:
    consumer = EventConsumer(
        bus=bus,
        group=consumer_groups.WEBHOOKS,
        event_types={topics.HOLDINGS_CHANGES: HOLDINGS_CHANGES_EVENTS, topics.SYNC_FAILURES: SyncFailed},
        handler=OneStep(recorder.handle),
    )
    await asyncio.gather(consumer.run(stop), loop.run(stop, poll_s))


def delivery_loop(settings: Settings, recorder: WebhookRecorder, sender: WebhookSender) -> DeliveryLoop:
    return DeliveryLoop(
        sessions=recorder.sessions,
        sender=sender,
        retry_schedule=settings.webhooks_retry_schedule,
        disable_after_failures=settings.webhooks_disable_after_failures,
    )


def webhook_sender(settings: Settings) -> WebhookSender:
    return WebhookSender(
        allowed_networks=settings.webhooks_allowed, timeout_s=settings.webhooks_timeout_seconds
    )


async def serve(settings: Settings) -> None:
    """The `portfolio-sync webhooks` process."""
    async with (
        checked_engine(settings, "webhooks") as engine,
        started_bus(settings, client_id=consumer_groups.WEBHOOKS) as bus,
        webhook_sender(settings) as sender,
    ):
        recorder = WebhookRecorder(sessions=session_factory(engine))
        loop = delivery_loop(settings, recorder, sender)
        with metrics_served(settings):
            await run_until_signalled(
                lambda stop: run_webhooks(recorder, loop, bus, stop, poll_s=settings.webhooks_poll_seconds)
            )
