"""Entrypoint: look for due schedules every SCHEDULER_TICK_SECONDS until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.backoff import BrokerBackoff
from services.scheduler.handlers import emit_due_syncs
from services.scheduler.metrics import PASS_DURATION
from services.scheduler.stuck_runs import rerequest_stuck_runs
from shared.bus.port import BusUnavailable, MessageBus
from shared.db.engine import session_factory
from shared.db.errors import is_transient_db_error
from shared.events import utc_now
from shared.metrics import metrics_served
from shared.runtime import checked_engine, run_until_signalled, started_bus
from shared.settings import Settings

log = logging.getLogger(__name__)


def _retryable(exc: BaseException) -> bool:
    """A pass that hits a database outage or conflict is retried on the next tick; its claims rolled
    back, so nothing is lost. (A failed publish is handled per broker inside the pass;
    BusUnavailable here is a safety net.)"""
    return isinstance(exc, BusUnavailable) or is_transient_db_error(exc)


async def run_scheduler(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], bus: MessageBus, stop: asyncio.Event
) -> None:
    backoff = BrokerBackoff(
        first_s=settings.scheduler_broker_backoff_seconds, max_s=settings.scheduler_broker_max_backoff_seconds
    )
    while not stop.is_set():
        started = time.perf_counter()
        try:
            emitted = await emit_due_syncs(
                sessions,
                bus,
                now=utc_now(),
                limit=settings.scheduler_batch_size,
                backoff=backoff,
                publish_timeout_s=settings.scheduler_publish_timeout_seconds,
            )
            await rerequest_stuck_runs(
                sessions,
                bus,
                now=utc_now(),
                after_s=settings.stuck_run_after_seconds,
                limit=settings.scheduler_batch_size,
            )
        except Exception as exc:
            if not _retryable(exc):
                raise
            log.warning("scheduler pass failed; trying again next tick", extra={"error": repr(exc)})
            emitted = 0
        PASS_DURATION.observe(time.perf_counter() - started)
        if emitted >= settings.scheduler_batch_size:
            continue  # more are due right now: no pause
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.scheduler_tick_seconds)


async def serve(settings: Settings) -> None:
    """The `portfolio-sync scheduler` process."""
    async with (
        checked_engine(settings, "scheduler") as engine,
        started_bus(settings, client_id="scheduler") as bus,
    ):
        with metrics_served(settings):
            sessions = session_factory(engine)
            await run_until_signalled(lambda stop: run_scheduler(settings, sessions, bus, stop))
