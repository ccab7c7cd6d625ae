"""Following one sync: a run through scheduler, fetcher and ledger handlers, then its trace; and the
run id on the log lines of its handling."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.cli import main
from services.fetcher.adapter import AccountContext, BrokerAnswer, TransientBrokerError
from services.fetcher.brokers.simulated import holdings_answer, holdings_in
from services.fetcher.handlers import Fetcher
from services.fetcher.retry import RetryPolicy
from services.ledger.handlers import CONSUMER, Ledger
from services.ledger.plan import plan_batch
from services.ledger.store import LedgerStore, PositionsCache
from services.scheduler.handlers import emit_due_syncs
from shared import topics
from shared.bus.consumer import EventConsumer, OneStep
from shared.bus.memory import InMemoryBus
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine, session_factory, upgrade_schema
from shared.db.tables import Schedule, SyncAttempt
from shared.events import (
    Event,
    Holding,
    HoldingsChanged,
    HoldingSnapshot,
    SyncFailed,
    SyncRequested,
    SyncTrigger,
    decode_event,
    utc_now,
)
from shared.log_context import RunContextFilter
from shared.run_trace import load_run_trace, trace_lines
from tests.support.accounts import create_account
from tests.support.waiting import eventually

E = TypeVar("E", bound=Event)
HOLDING = Holding(
    symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(3), average_price=Decimal(10)
)


class FailsOnceThenHolds:
    """The broker times out on the first call, then answers with HOLDING."""

    def __init__(self) -> None:
        self.calls = 0

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        self.calls += 1
        if self.calls == 1:
            raise TransientBrokerError("broker timed out")
        return holdings_answer([HOLDING])

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return holdings_in(answer)

    async def aclose(self) -> None:
        return None


def _fetcher(bus: InMemoryBus) -> Fetcher:
    return Fetcher(
        adapter=FailsOnceThenHolds(),
        bus=bus,
        cipher=CredentialCipher(CredentialCipher.generate_key()),
        slots=asyncio.Semaphore(4),
        retry=RetryPolicy(max_attempts=3, base_s=0.001, max_s=0.001),
    )


def _events(bus: InMemoryBus, topic: str, model: type[E]) -> list[E]:
    return [decode_event(model, r.value) for r in bus.records(topic)]


async def test_a_scheduled_run_retried_once_is_traced_from_its_tick_to_its_announcement(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    async with sessions() as session:
        tick = await session.scalar(select(Schedule.next_run_at).where(Schedule.account_id == account.id))
    assert await emit_due_syncs(sessions, bus, now=utc_now(), limit=10) == 1
    [request] = _events(bus, topics.sync_requests("sim"), SyncRequested)
    fetcher, ledger = _fetcher(bus), Ledger(sessions=sessions, bus=bus)

    await fetcher.handle_requests([request])
    [retry] = _events(bus, topics.sync_request_retries("sim"), SyncRequested)
    await fetcher.handle_requests([retry])
    [failure] = _events(bus, topics.SYNC_FAILURES, SyncFailed)
    [snapshot] = _events(bus, topics.HOLDINGS_SNAPSHOTS, HoldingSnapshot)
    await ledger.apply_batch([failure])
    await ledger.apply_batch([snapshot])
    await ledger.apply_batch([snapshot, failure])  # redelivered: no attempt recorded twice
    [announcement] = _events(bus, topics.HOLDINGS_CHANGES, HoldingsChanged)

    async with sessions() as session:
        trace = await load_run_trace(session, request.event_id)
        assert await session.scalar(select(func.count()).select_from(SyncAttempt)) == 2
    assert trace is not None
    assert (trace.run_id, trace.account_id, trace.broker) == (request.event_id, account.id, "sim")
    assert trace.status == "succeeded"
    assert trace.requested.trigger == "schedule"
    assert trace.requested.schedule_tick == tick and trace.requested.by_user is None

    first, second = trace.attempts
    assert (first.attempt, first.outcome, first.failure_kind) == (1, "retrying", "transient")
    assert first.failure_reason == "broker timed out" and first.event_id == failure.event_id
    assert (second.attempt, second.outcome, second.holdings) == (2, "snapshot", 1)
    for attempt in (first, second):
        assert attempt.fetcher_id == fetcher.fetcher_id
        assert attempt.started_at is not None and attempt.started_at <= attempt.reported_at
        assert attempt.duration_ms is not None and attempt.duration_ms >= 0
    assert second.started_at is not None and first.started_at is not None
    assert second.started_at >= first.started_at

    [stored] = trace.stored
    assert (stored.snapshot_id, stored.status, stored.holdings) == (snapshot.event_id, "applied", 1)
    [announced] = trace.announced
    assert announced.event_id == announcement.event_id and announced.snapshot_id == snapshot.event_id
    assert announced.published_at is not None

    lines = trace_lines(trace)
    assert lines[1].startswith("requested") and f"tick of {tick.isoformat()}" in lines[1]
    assert "retrying: transient: broker timed out" in lines[2] and f"fetcher {fetcher.fetcher_id}" in lines[2]
    assert "snapshot of 1 holdings" in lines[3]
    assert lines[4].startswith("stored") and "applied" in lines[4]
    assert lines[5].startswith("announced") and str(announcement.event_id) in lines[5]


async def test_an_announcement_still_in_the_outbox_shows_as_waiting_until_relayed(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions)
    await emit_due_syncs(sessions, bus, now=utc_now(), limit=10)
    [request] = _events(bus, topics.sync_requests("sim"), SyncRequested)
    snapshot = HoldingSnapshot(
        account_id=account.id,
        request_id=request.event_id,
        broker="sim",
        taken_at=utc_now(),
        holdings=(HOLDING,),
    )
    # Written but not relayed, as when the ledger dies between its commit and the relay.
    async with sessions() as session:
        store = LedgerStore(session, consumer=CONSUMER)
        accounts = await store.accounts({account.id}, PositionsCache())
        runs = await store.runs({request.event_id})
    plan = plan_batch([snapshot], accounts, runs, consumer=CONSUMER)
    async with sessions.begin() as session:
        writer = LedgerStore(session, consumer=CONSUMER)
        await writer.write(plan, writer.encode(plan))  # COPY text on Postgres

    async with sessions() as session:
        waiting = await load_run_trace(session, request.event_id)
    assert waiting is not None
    [announced] = waiting.announced
    assert announced.published_at is None
    assert "waits in the outbox" in trace_lines(waiting)[-1]

    relayed_count = await Ledger(sessions=sessions, bus=bus).relay.publish_pending()
    assert relayed_count == 2, "the HoldingsChanged, and the account's CurrentHoldings beside it"
    async with sessions() as session:
        relayed = await load_run_trace(session, request.event_id)
    assert relayed is not None and relayed.announced[0].published_at is not None
    [announcement] = _events(bus, topics.HOLDINGS_CHANGES, HoldingsChanged)
    assert relayed.announced[0].event_id == announcement.event_id


def _batch_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord] | None:
    lines = [r for r in caplog.records if r.getMessage() == "batch handled"]
    return lines if len(lines) >= count else None


async def test_log_lines_of_a_sync_carry_its_run_id_and_each_batch_says_what_it_did(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RunContextFilter())  # what configure_logging puts on the service's handler
    caplog.set_level(logging.INFO)
    request = SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL)
    fetcher = _fetcher(bus)
    consumer = EventConsumer(
        bus=bus,
        group="fetcher.sim",
        event_types={
            topics.sync_requests("sim"): SyncRequested,
            topics.sync_request_retries("sim"): SyncRequested,
        },
        handler=OneStep(fetcher.handle_requests),
    )
    await bus.publish([OutgoingMessage.of(topics.sync_requests("sim"), request)])
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def snapshot_taken() -> bool:
        return bool(bus.records(topics.HOLDINGS_SNAPSHOTS))

    await eventually(snapshot_taken, timeout_s=10, what="the retried sync's snapshot")

    async def two_batch_lines() -> list[logging.LogRecord] | None:
        return _batch_lines(caplog, 2)

    await eventually(two_batch_lines, timeout_s=10, what="two batch lines")
    stop.set()
    await task

    [failed] = [r for r in caplog.records if r.getMessage() == "sync failed"]
    assert failed.__dict__["run_id"] == str(request.event_id)  # the retry's run is the first request's
    assert failed.__dict__["account_id"] == str(request.account_id)
    assert failed.__dict__["broker"] == "sim"
    first, second = _batch_lines(caplog, 2) or []
    assert first.__dict__["outcomes"] == {"retrying": 1}
    assert first.__dict__["records"] == 1 and first.__dict__["topics"] == [topics.sync_requests("sim")]
    assert second.__dict__["outcomes"] == {"snapshot": 1}
    assert "run_id" not in first.__dict__  # a batch is many runs: it names none


def test_the_trace_command_prints_the_path_and_refuses_an_unknown_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"

    async def a_requested_run() -> uuid.UUID:
        engine = create_engine(url)
        await upgrade_schema(engine)
        sessions = session_factory(engine)
        await create_account(sessions)
        bus = InMemoryBus()
        await emit_due_syncs(sessions, bus, now=utc_now(), limit=1)
        await engine.dispose()
        [request] = _events(bus, topics.sync_requests("sim"), SyncRequested)
        return request.event_id

    run_id = asyncio.run(a_requested_run())
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CREDENTIALS_KEYS", CredentialCipher.generate_key())

    assert main(["trace", str(run_id)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"run {run_id}: ") and lines[0].endswith("requested")
    assert lines[1].startswith("requested") and "schedule by the schedule's tick of" in lines[1]
    assert lines[2] == "no attempt reported yet"

    unknown = uuid.uuid4()
    assert main(["trace", str(unknown)]) == 1
    assert f"no sync run {unknown}" in capsys.readouterr().err
