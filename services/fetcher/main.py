"""Entrypoint: one fetcher process serving one broker.

Two consume loops share the broker's adapter and limits: new requests (group `fetcher.<broker>`)
and retries (group `fetcher.<broker>.retry`), so accounts waiting to retry never delay new syncs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.fetcher.adapter import BrokerAdapter
from services.fetcher.handlers import Fetcher
from services.fetcher.heartbeats import Heartbeats
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import create_adapter
from services.fetcher.retry import RetryPolicy
from shared import topics
from shared.bus.consumer import EventConsumer, OneStep
from shared.bus.port import MessageBus
from shared.credentials import CredentialCipher
from shared.events import SyncRequested
from shared.metrics import metrics_served
from shared.runtime import run_until_signalled, started_bus
from shared.settings import Settings


def consumer_group(broker: str) -> str:
    return f"fetcher.{broker}"


@dataclass
class FetcherRuntime:
    """One broker's fetcher, wired: its adapter, its limiter and its two consume loops."""

    adapter: BrokerAdapter
    limiter: BrokerLimiter
    loops: list[EventConsumer]
    heartbeats: Heartbeats | None = None

    @property
    def handled(self) -> int:
        """Requests whose outcome is published and whose offsets are committed."""
        return sum(loop.handled for loop in self.loops)

    async def run(self, stop: asyncio.Event) -> None:
        beating = [self.heartbeats.run(stop)] if self.heartbeats is not None else []
        try:
            await asyncio.gather(*(loop.run(stop) for loop in self.loops), *beating)
        finally:
            await self.adapter.aclose()


def build_fetcher(settings: Settings, broker: str, bus: MessageBus) -> FetcherRuntime:
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    adapter, limiter = create_adapter(broker, settings)
    share = limiter.share_by_partitions([topics.sync_requests(broker), topics.sync_request_retries(broker)])
    fetcher = Fetcher(
        adapter=adapter,
        bus=bus,
        cipher=cipher,
        slots=limiter.accounts,
        retry=RetryPolicy.from_settings(settings),
    )
    batch = limiter.limits.concurrency * 2  # enough records per batch to keep every slot busy
    loops = [
        EventConsumer(
            bus=bus,
            group=group,
            event_types={topic: SyncRequested},
            handler=OneStep(fetcher.handle_requests),
            max_records=batch,
            listener=share.listener(group),
        )
        for group, topic in (
            (consumer_group(broker), topics.sync_requests(broker)),
            (f"{consumer_group(broker)}.retry", topics.sync_request_retries(broker)),
        )
    ]
    runtime = FetcherRuntime(adapter=adapter, limiter=limiter, loops=loops)
    runtime.heartbeats = Heartbeats(
        bus=bus,
        fetcher_id=f"{fetcher.fetcher_id}/{broker}",
        broker=broker,
        interval_s=settings.fetcher_heartbeat_seconds,
        in_flight=lambda: fetcher.in_flight,
        handled=lambda: runtime.handled,
    )
    return runtime


async def run_fetcher(settings: Settings, broker: str, bus: MessageBus, stop: asyncio.Event) -> None:
    """Serve `broker` on an already started bus until `stop` is set."""
    await build_fetcher(settings, broker, bus).run(stop)


async def serve(settings: Settings, broker: str) -> None:
    """The `portfolio-sync fetcher --broker CODE` process."""
    # A missing key or an unknown broker fails before any connection is made.
    CredentialCipher(settings.credentials_keys.get_secret_value())
    await create_adapter(broker, settings)[0].aclose()
    async with started_bus(settings, client_id=consumer_group(broker)) as bus:
        with metrics_served(settings):
            await run_until_signalled(lambda stop: run_fetcher(settings, broker, bus, stop))
