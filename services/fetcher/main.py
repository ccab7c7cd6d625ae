"""Entrypoint: one fetcher process serving one broker.

Two consume loops share the broker's adapter and limits: new requests (group `fetcher.<broker>`)
and retries (group `fetcher.<broker>.retry`), so accounts waiting to retry never delay new syncs.
Beside them, the raw archive (RAW_ARCHIVE) is pruned of answers older than its retention.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from services.fetcher.adapter import BrokerAdapter
from services.fetcher.archive import AnswerArchive, prune_periodically
from services.fetcher.archive_database import DatabaseArchive
from services.fetcher.archive_files import FileArchive
from services.fetcher.handlers import Fetcher
from services.fetcher.heartbeats import Heartbeats
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import create_adapter
from services.fetcher.retry import RetryPolicy
from shared import topics
from shared.brokers import broker_type
from shared.bus.consumer import EventConsumer, OneStep
from shared.bus.port import MessageBus
from shared.credentials import CredentialCipher
from shared.events import SyncRequested
from shared.metrics import metrics_served
from shared.runtime import checked_engine, run_until_signalled, started_bus
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
    pruning: list[tuple[AnswerArchive, float]] = field(default_factory=list)  # archive, retention days

    @property
    def handled(self) -> int:
        """Requests whose outcome is published and whose offsets are committed."""
        return sum(loop.handled for loop in self.loops)

    async def run(self, stop: asyncio.Event) -> None:
        beating = [self.heartbeats.run(stop)] if self.heartbeats is not None else []
        pruning = [prune_periodically(a, retention_days=days, stop=stop) for a, days in self.pruning]
        try:
            await asyncio.gather(*(loop.run(stop) for loop in self.loops), *beating, *pruning)
        finally:
            await self.adapter.aclose()


@contextlib.asynccontextmanager
async def opened_archive(settings: Settings) -> AsyncIterator[AnswerArchive | None]:
    """The raw archive RAW_ARCHIVE names, open until the block ends; None for `none`. In the
    database, as the fetcher's own role, on a current schema with its grants (or it refuses)."""
    if settings.raw_archive == "none":
        yield None
    elif settings.raw_archive == "files":
        yield FileArchive(Path(settings.raw_archive_dir))
    else:
        async with checked_engine(settings, "fetcher") as engine:
            yield DatabaseArchive(engine)


def build_fetcher(
    settings: Settings, broker: str, bus: MessageBus, archive: AnswerArchive | None = None
) -> FetcherRuntime:
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    adapter, limiter = create_adapter(broker, settings)
    share = limiter.share_by_partitions([topics.sync_requests(broker), topics.sync_request_retries(broker)])
    fetcher = Fetcher(
        adapter=adapter,
        bus=bus,
        cipher=cipher,
        slots=limiter.accounts,
        retry=RetryPolicy.from_settings(settings),
        archive=archive,
        secret_fields=broker_type(broker).credential_fields,
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
    if archive is not None:
        runtime.pruning.append((archive, settings.raw_archive_retention_days))
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
    async with opened_archive(settings) as archive:
        await build_fetcher(settings, broker, bus, archive).run(stop)


async def serve(settings: Settings, broker: str) -> None:
    """The `portfolio-sync fetcher --broker CODE` process."""
    # A missing key or an unknown broker fails before any connection is made.
    CredentialCipher(settings.credentials_keys.get_secret_value())
    await create_adapter(broker, settings)[0].aclose()
    async with started_bus(settings, client_id=consumer_group(broker)) as bus:
        with metrics_served(settings):
            await run_until_signalled(lambda stop: run_fetcher(settings, broker, bus, stop))
