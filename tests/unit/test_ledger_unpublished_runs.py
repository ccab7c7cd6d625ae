"""A "sync now" the API answered 503 (Kafka did not acknowledge in time) may reach Kafka all the same,
as the chaos suite's Kafka stop showed: its snapshot is applied, so its run must say succeeded, not
stay failed with "could not be published"."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.storage import record_unpublished_request
from services.ledger.handlers import Ledger
from shared.bus.memory import InMemoryBus
from shared.db.sync_runs import requested_run
from shared.db.tables import SyncRun
from shared.events import Holding, HoldingSnapshot, SyncFailed, SyncRequested, SyncTrigger, utc_now
from tests.support.accounts import create_account


async def test_a_run_closed_as_unpublished_whose_request_arrived_anyway_succeeds_with_its_snapshot(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    request = SyncRequested(account_id=account.id, broker="sim", trigger=SyncTrigger.MANUAL)
    async with sessions.begin() as session:
        session.add(requested_run(request))
    async with sessions.begin() as session:
        await record_unpublished_request(session, request.event_id, now=utc_now())
    snapshot = HoldingSnapshot(
        account_id=account.id,
        request_id=request.event_id,
        broker="sim",
        taken_at=utc_now(),
        holdings=(
            Holding(
                symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(3), average_price=Decimal(1)
            ),
        ),
    )
    await Ledger(sessions=sessions, bus=bus).apply_batch([snapshot])

    async with sessions() as session:
        run = await session.get(SyncRun, request.event_id)
    assert run is not None
    assert (run.status, run.snapshot_id, run.failure_kind) == ("succeeded", snapshot.event_id, None)


async def test_a_failure_of_an_attempt_that_already_succeeded_does_not_reopen_it(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    request = SyncRequested(account_id=account.id, broker="sim", trigger=SyncTrigger.MANUAL)
    async with sessions.begin() as session:
        session.add(requested_run(request))
    snapshot = HoldingSnapshot(
        account_id=account.id, request_id=request.event_id, broker="sim", taken_at=utc_now(), holdings=()
    )
    failure = SyncFailed(
        account_id=account.id,
        request_id=request.event_id,
        broker="sim",
        kind="invalid_response",
        reason="a redelivered request whose second fetch failed",
        final=True,
        occurred_at=utc_now() + timedelta(seconds=1),
    )
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.apply_batch([snapshot])
    await ledger.apply_batch([failure])

    async with sessions() as session:
        run = await session.get(SyncRun, request.event_id)
    assert run is not None and (run.status, run.snapshot_id) == ("succeeded", snapshot.event_id)


async def test_the_api_closes_a_run_as_unpublished_only_while_nothing_else_has_ended_it(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    """The other order: the request got through, and the ledger recorded its outcome before the API,
    its publish given up on, came to close the run. The ledger's outcome stands."""
    account = await create_account(sessions)
    request = SyncRequested(account_id=account.id, broker="sim", trigger=SyncTrigger.MANUAL)
    async with sessions.begin() as session:
        session.add(requested_run(request))
    snapshot = HoldingSnapshot(
        account_id=account.id, request_id=request.event_id, broker="sim", taken_at=utc_now(), holdings=()
    )
    await Ledger(sessions=sessions, bus=bus).apply_batch([snapshot])
    async with sessions.begin() as session:
        await record_unpublished_request(session, request.event_id, now=utc_now())

    async with sessions() as session:
        run = await session.get(SyncRun, request.event_id)
    assert run is not None
    assert (run.status, run.snapshot_id, run.failure_reason) == ("succeeded", snapshot.event_id, None)
