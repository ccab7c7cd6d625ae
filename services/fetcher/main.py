"""Entrypoint: one fetcher process serving one broker, consuming in group `fetcher.<broker>`."""

from __future__ import annotations

import asyncio

from services.fetcher.handlers import Fetcher
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import create_adapter
from shared import topics
from shared.bus.consumer import EventConsumer
from shared.bus.port import MessageBus
from shared.credentials import CredentialCipher
from shared.events import SyncRequested
from shared.runtime import run_until_signalled, started_bus
from shared.settings import Settings


def consumer_group(broker: str) -> str:
    return f"fetcher.{broker}"


def build_consumer(broker: str, bus: MessageBus, fetcher: Fetcher, limiter: BrokerLimiter) -> EventConsumer:
    return EventConsumer(
        bus=bus,
        group=consumer_group(broker),
        event_types={topics.sync_requests(broker): SyncRequested},
        handler=fetcher.handle_requests,
        # Enough records to keep every concurrency slot busy while a batch is in flight.
        max_records=limiter.limits.concurrency * 2,
    )


async def run_fetcher(settings: Settings, broker: str, bus: MessageBus, stop: asyncio.Event) -> None:
    """Serve `broker` on an already started bus until `stop` is set."""
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    adapter, limiter = create_adapter(broker, settings)
    try:
        fetcher = Fetcher(adapter=adapter, bus=bus, cipher=cipher, slots=limiter.accounts)
        await build_consumer(broker, bus, fetcher, limiter).run(stop)
    finally:
        await adapter.aclose()


async def serve(settings: Settings, broker: str) -> None:
    """The `portfolio-sync fetcher --broker CODE` process."""
    # A missing key or an unknown broker fails before any connection is made.
    CredentialCipher(settings.credentials_keys.get_secret_value())
    await create_adapter(broker, settings)[0].aclose()
    async with started_bus(settings, client_id=consumer_group(broker)) as bus:
        await run_until_signalled(lambda stop: run_fetcher(settings, broker, bus, stop))
