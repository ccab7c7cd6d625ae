"""Process plumbing shared by the service entrypoints: signals, the bus and the database."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import platform
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus.factory import bus_from_settings
from shared.bus.port import MessageBus
from shared.db.engine import assert_schema_current, create_engine
from shared.db.grants import assert_service_grants
from shared.db.ownership import Service
from shared.settings import Settings


async def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `service(stop)`; SIGINT or SIGTERM sets `stop` so that it can finish cleanly."""
    _tune_garbage_collector()
    _tune_malloc()
    _tune_thread_switching()
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
async def checked_engine(settings: Settings, service: Service | None = None) -> AsyncIterator[AsyncEngine]:
    """An engine on a database whose schema is current; refuses to start otherwise. `service`
    connects as its own role when its URL is set (shared/db/ownership.py), and refuses to start
    unless that role holds every grant the service needs; operator tasks pass none and connect as
    DATABASE_URL's."""
    engine = create_engine(
        settings.database_url if service is None else settings.service_database_url(service)
    )
    try:
        await assert_schema_current(engine)
        if service is not None and engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                await assert_service_grants(conn, service)
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


_M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
_M_ARENA_MAX = -8


def _tune_malloc() -> None:
    """glibc's malloc, tuned for services that allocate a batch at a time. Each thread gets its own
    arena by default, and the ledger decodes in a worker thread: what one arena frees the other
    cannot reuse, so one arena serves all. And blocks of a megabyte or more (a batch's COPY text,
    its fetched records) are always mapped on their own and so returned whole when freed; by default
    the threshold rises to the largest block freed, and such blocks then fragment the heap. Together
    these took some 30 MB off the ledger's peak in `make bench-ledger`. Nothing to do on other C libraries."""
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_ARENA_MAX, 1)
    libc.mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


def _tune_thread_switching() -> None:
    """Hand the GIL over every millisecond instead of every five. The ledger decodes and plans the
    next batch in a worker thread while the event loop drives the previous batch's write, a dozen
    round trips to Postgres: each reply waited for the GIL up to the switch interval, which made
    the write, the part that paces the ledger, a fifth slower in `make bench-ledger`."""
    sys.setswitchinterval(0.001)
