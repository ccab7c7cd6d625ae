from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduler.backoff import BrokerBackoff
from services.scheduler.handlers import emit_due_syncs, tick_request_id
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.bus.port import BusUnavailable, OutgoingMessage
from shared.db.tables import BrokerAccount, Portfolio, Schedule, SyncRun
from shared.events import SyncRequested, SyncTrigger, decode_event, utc_now
from tests.support.accounts import create_account


def _requests(bus: InMemoryBus, broker: str = "sim") -> list[SyncRequested]:
    return [decode_event(SyncRequested, r.value) for r in bus.records(topics.sync_requests(broker))]


async def test_due_schedule_emits_one_request_and_moves_to_the_next_interval(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    due = await create_account(sessions, interval_seconds=600, next_run_at=now - timedelta(seconds=1))
    await create_account(sessions, next_run_at=now + timedelta(minutes=5))

    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 1
    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 0

    [request] = _requests(bus)
    assert (request.account_id, request.trigger) == (due.id, SyncTrigger.SCHEDULE)
    async with sessions() as session:
        schedule = await session.get(Schedule, due.id)
        run = await session.get(SyncRun, request.event_id)
    assert schedule is not None and schedule.next_run_at == now + timedelta(seconds=600)
    assert run is not None and run.status == "requested"


async def test_many_missed_ticks_give_one_catch_up_run(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    await create_account(sessions, interval_seconds=60, next_run_at=now - timedelta(days=2))
    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 1
    assert await emit_due_syncs(sessions, bus, now=now + timedelta(seconds=30), limit=100) == 0


async def test_concurrent_schedulers_never_emit_the_same_tick_twice(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    accounts = [await create_account(sessions, next_run_at=now - timedelta(seconds=5)) for _ in range(20)]
    counts = await asyncio.gather(*(emit_due_syncs(sessions, bus, now=now, limit=100) for _ in range(4)))
    emitted = _requests(bus)
    assert sum(counts) == len(emitted) == 20
    assert sorted(r.account_id for r in emitted) == sorted(a.id for a in accounts)


async def test_accounts_needing_reauth_are_not_scheduled(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    account = await create_account(sessions, next_run_at=utc_now() - timedelta(seconds=1))
    async with sessions.begin() as session:
        stored = await session.scalar(select(BrokerAccount).where(BrokerAccount.id == account.id))
        assert stored is not None
        stored.needs_reauth = True
    assert await emit_due_syncs(sessions, bus, now=utc_now(), limit=100) == 0


async def test_accounts_of_an_inactive_portfolio_are_not_scheduled(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    now = utc_now()
    paused = await create_account(sessions, next_run_at=now - timedelta(seconds=1))
    running = await create_account(sessions, next_run_at=now - timedelta(seconds=1))
    async with sessions.begin() as session:
        portfolio = await session.get(Portfolio, paused.portfolio_id)
        assert portfolio is not None
        portfolio.active = False

    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 1
    assert [r.account_id for r in _requests(bus)] == [running.id]
    async with sessions() as session:
        schedule = await session.get(Schedule, paused.id)
    assert schedule is not None and schedule.next_run_at < now  # unclaimed: due again once reactivated


class TopiclessBus(InMemoryBus):
    """Refuses every publish to one broker's topic, as Kafka does when that topic does not exist."""

    def __init__(self, missing_broker: str) -> None:
        super().__init__()
        self.missing = topics.sync_requests(missing_broker)
        self.refused = 0

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if any(m.topic == self.missing for m in messages):
            self.refused += 1
            raise BusUnavailable(f"unknown topic {self.missing}")
        await super().publish(messages)


def _failures(broker: str) -> float:
    return (
        REGISTRY.get_sample_value("portfolio_sync_scheduler_publish_failures_total", {"broker": broker})
        or 0.0
    )


async def test_a_broker_whose_publish_fails_is_set_aside_with_backoff_while_others_fire(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    bus = TopiclessBus("zerodha")
    backoff = BrokerBackoff(first_s=100, max_s=250)
    now = utc_now()
    # The broken broker's account is the oldest due, at the head of the queue.
    broken = await create_account(
        sessions, broker="zerodha", interval_seconds=60, next_run_at=now - timedelta(hours=1)
    )
    healthy = [
        await create_account(sessions, interval_seconds=60, next_run_at=now - timedelta(seconds=1))
        for _ in range(3)
    ]
    before = _failures("zerodha")

    with caplog.at_level(logging.WARNING, logger="services.scheduler.handlers"):
        assert await emit_due_syncs(sessions, bus, now=now, limit=100, backoff=backoff) == 3

    assert sorted(r.account_id for r in _requests(bus)) == sorted(a.id for a in healthy)
    assert _failures("zerodha") == before + 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert getattr(warning, "broker", None) == "zerodha"
    async with sessions() as session:
        schedule = await session.get(Schedule, broken.id)
        runs = (await session.scalars(select(SyncRun).where(SyncRun.account_id == broken.id))).all()
    assert schedule is not None and schedule.next_run_at == now - timedelta(hours=1)  # claim rolled back
    assert runs == []

    # Within the backoff the broker is not even tried; the others keep firing on their schedule.
    later = now + timedelta(seconds=61)
    assert await emit_due_syncs(sessions, bus, now=later, limit=100, backoff=backoff) == 3
    assert bus.refused == 1
    # After it, one more try; a second failure doubles the wait (100 s, then 200 s).
    at_retry = now + timedelta(seconds=100)
    assert await emit_due_syncs(sessions, bus, now=at_retry, limit=100, backoff=backoff) == 0
    assert bus.refused == 2
    assert backoff.waiting(now=at_retry + timedelta(seconds=199)) == {"zerodha"}
    assert backoff.waiting(now=at_retry + timedelta(seconds=200)) == frozenset()

    # Once the topic exists the held-back tick fires, under the id it would always have had.
    bus.missing = "nothing"
    assert (
        await emit_due_syncs(sessions, bus, now=at_retry + timedelta(seconds=200), limit=100, backoff=backoff)
        == 1 + 3  # the held-back tick, and the healthy accounts' next ticks
    )
    [request] = _requests(bus, "zerodha")
    assert request.event_id == tick_request_id(broken.id, now - timedelta(hours=1))
    assert backoff.waiting(now=at_retry + timedelta(seconds=200)) == frozenset()


def test_backoff_doubles_up_to_its_maximum_and_a_success_clears_it() -> None:
    backoff = BrokerBackoff(first_s=5, max_s=30)
    now = utc_now()
    assert [backoff.set_aside("alpaca", now=now) for _ in range(5)] == [5, 10, 20, 30, 30]
    backoff.succeeded("alpaca")
    assert backoff.set_aside("alpaca", now=now) == 5
