"""Entrypoint: the ledger consumes snapshots, failures and reviews in group `ledger`, and relays
its outbox (right after each batch, and in a sweep for anything a crash left behind)."""

from __future__ import annotations

import asyncio

from services.ledger.handlers import ConcurrentWrite, Ledger
from services.ledger.retention import prune_periodically
from shared import topics
from shared.bus.consumer import EventConsumer
from shared.bus.port import MessageBus
from shared.db.engine import session_factory
from shared.db.errors import is_transient_db_error
from shared.events import OneOf, SnapshotAccepted, SnapshotDismissed, SyncFailed
from shared.metrics import metrics_served
from shared.runtime import checked_engine, run_until_signalled, started_bus
from shared.settings import Settings
from shared.snapshot_decoding import LeanSnapshots

CONSUMER_GROUP = "ledger"


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, ConcurrentWrite) or is_transient_db_error(exc)


_DECODE_AHEAD: int = Settings.model_fields["ledger_decode_ahead"].default


async def run_ledger(
    ledger: Ledger, bus: MessageBus, stop: asyncio.Event, *, decode_ahead: int = _DECODE_AHEAD
) -> None:
    consumer = EventConsumer(
        bus=bus,
        group=CONSUMER_GROUP,
        event_types={
            topics.HOLDINGS_SNAPSHOTS: LeanSnapshots(),  # what the model would give, faster
            topics.SYNC_FAILURES: SyncFailed,
            topics.SNAPSHOT_REVIEWS: OneOf((SnapshotAccepted, SnapshotDismissed)),
        },
        handler=ledger,
        # A fenced write (another ledger or the API moved an account) is planned again from fresh
        # state, like any batch whose write failed: waited out, never dead-lettered.
        is_transient=_transient,
        max_records=ledger.batch_size,
        # Preparing a batch of 2,000 waits some 0.1 s on its reads (dedupe, accounts, runs) with
        # nothing else to do; decoding 2,000 snapshots takes 0.3-0.4 s of the GIL: the default of
        # 500 (a quarter) fills that wait, for some 12 MB more at the memory peak (bench/README.md).
        decode_ahead=decode_ahead,
    )
    await asyncio.gather(consumer.run(stop), ledger.relay.run(stop))
    await ledger.relay.settle()


async def serve(settings: Settings) -> None:
    """The `portfolio-sync ledger` process."""
    async with (
        checked_engine(settings, "ledger") as engine,
        started_bus(settings, client_id=CONSUMER_GROUP) as bus,
    ):
        sessions = session_factory(engine)
        ledger = Ledger(sessions=sessions, bus=bus, batch_size=settings.ledger_batch_size)
        retention = settings.snapshot_retention_days

        async def run(stop: asyncio.Event) -> None:
            await asyncio.gather(
                run_ledger(ledger, bus, stop, decode_ahead=settings.ledger_decode_ahead),
                prune_periodically(sessions, retention_days=retention, stop=stop),
            )

        with metrics_served(settings):
            await run_until_signalled(run)
