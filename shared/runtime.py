"""Process plumbing shared by the service entrypoints: signals, the bus and the database."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus.factory import bus_from_settings
from shared.bus.port import MessageBus
from shared.db.engine import assert_schema_current, create_engine
from shared.settings import Settings


async def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `service(stop)`; SIGINT or SIGTERM sets `stop` so that it can finish cleanly."""
    _tune_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@asynccontextmanager
async def started_bus(settings: Settings, *, client_id: str) -> AsyncIterator[MessageBus]:
    bus = bus_from_settings(settings, client_id=client_id)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


@asynccontextmanager
async def checked_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a database whose schema is current; refuses to start otherwise."""
    engine = create_engine(settings.database_url)
    try:
        await assert_schema_current(engine)
        yield engine
    finally:
        await engine.dispose()


def _tune_garbage_collector() -> None:
    """A service holds a batch or two of decoded events and rows (some 100,000 objects) at a time:
    collecting the young generation only when more than that has piled up means no collection
    scans a batch in flight, while cyclic garbage stays bounded. What start-up created (modules,
    settings) is never rescanned."""
    gc.freeze()
    gc.set_threshold(300_000, 20, 100)
