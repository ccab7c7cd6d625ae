"""Each instrumented path, exercised, and its metric read back from the registry."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

import httpx
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.fetcher.adapter import AccountContext, AuthRejected, BrokerAnswer, TransientBrokerError
from services.fetcher.brokers.simulated import holdings_answer, holdings_in
from services.fetcher.handlers import Fetcher
from services.fetcher.http import broker_client, send
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.metrics import FetcherMetrics
from services.fetcher.retry import RetryPolicy
from services.ledger.handlers import Ledger
from services.scheduler.handlers import emit_due_syncs
from shared.bus.consumer import EventConsumer, OneStep
from shared.bus.memory import InMemoryBus
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.db.tables import OutboxMessage
from shared.events import Event, Holding, HoldingSnapshot, SyncRequested, SyncTrigger, utc_now
from tests.support.accounts import create_account
from tests.support.waiting import eventually


def _value(name: str, labels: dict[str, str] | None = None, registry: CollectorRegistry = REGISTRY) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


def _holding(symbol: str) -> Holding:
    return Holding(
        symbol=symbol, exchange="NSE", currency="INR", quantity=Decimal(10), average_price=Decimal("100.5")
    )


# The consume loop (shared by every service)


async def test_the_consume_loop_counts_dead_letters_and_records_and_reports_lag(bus: InMemoryBus) -> None:
    topic, group = f"metrics.{uuid.uuid4().hex[:8]}", "metrics-unit"
    release = asyncio.Event()
    seen: list[Event] = []

    async def handler(events: Sequence[Event]) -> None:
        await release.wait()  # hold the first batch, so the rest waits in the log: lag
        seen.extend(events)

    good = [
        SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL) for _ in range(6)
    ]
    await bus.publish(
        [OutgoingMessage(topic, "k", b"{broken")] + [OutgoingMessage.of(topic, e) for e in good]
    )
    consumer = EventConsumer(
        bus=bus, group=group, event_types={topic: SyncRequested}, handler=OneStep(handler), max_records=2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    def lag() -> float:
        return sum(
            _value(
                "portfolio_sync_consumer_lag_records", {"group": group, "topic": topic, "partition": str(p)}
            )
            for p in range(4)
        )

    async def lagging() -> bool:
        return lag() > 0

    await eventually(lagging, timeout_s=10, what="lag reported while a batch is held")
    release.set()

    async def done() -> bool:
        return len(seen) == 6 and lag() == 0

    await eventually(done, timeout_s=10, what="every record handled and no lag left")
    stop.set()
    await task
    assert _value("portfolio_sync_dead_letters_total", {"topic": topic, "group": group}) == 1
    assert _value("portfolio_sync_consumed_records_total", {"group": group}) >= 7, "dead letter included"
    partitions = {
        s.labels["partition"]
        for m in REGISTRY.collect()
        for s in m.samples
        if s.name == "portfolio_sync_consumer_lag_records" and s.labels.get("topic") == topic
    }
    assert partitions == set(), "a consumer that stopped reports no lag for partitions it no longer holds"


# The fetcher


class _Answers:
    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return holdings_answer([_holding("TCS")])

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return holdings_in(answer)

    async def aclose(self) -> None:
        return None


async def test_the_fetcher_counts_outcomes_by_kind_and_the_retries_it_schedules(bus: InMemoryBus) -> None:
    registry = CollectorRegistry()
    key = CredentialCipher.generate_key()
    fetcher = Fetcher(
        adapter=_Answers(None, AuthRejected("expired"), TransientBrokerError("502")),
        bus=bus,
        cipher=CredentialCipher(key),
        slots=asyncio.Semaphore(1),
        retry=RetryPolicy(max_attempts=3, base_s=1, max_s=1),
        metrics=FetcherMetrics(registry),
    )
    requests = [
        SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL) for _ in range(3)
    ]
    for request in requests:  # one at a time: the answers come in order
        await fetcher.handle_requests([request])

    def syncs(outcome: str) -> float:
        return _value("portfolio_sync_fetcher_syncs_total", {"broker": "sim", "outcome": outcome}, registry)

    assert (syncs("succeeded"), syncs("auth"), syncs("transient")) == (1, 1, 1)
    retries = "portfolio_sync_fetcher_retries_scheduled_total"
    assert _value(retries, {"broker": "sim", "kind": "transient"}, registry) == 1
    assert _value(retries, {"broker": "sim", "kind": "auth"}, registry) == 0, "an auth failure is final"
    assert _value("portfolio_sync_fetcher_sync_duration_seconds_count", {"broker": "sim"}, registry) == 3
    assert _value("portfolio_sync_fetcher_in_flight", {"broker": "sim"}, registry) == 0


async def test_broker_http_requests_are_timed_by_status_class_and_the_token_wait_apart() -> None:
    broker = f"metrics-{uuid.uuid4().hex[:8]}"  # a label of this test's own
    statuses = iter([200, 404, 503])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(next(statuses))

    limiter = BrokerLimiter(BrokerLimits(rate_per_s=1000, burst=1000), broker=broker)
    client = broker_client("http://broker.test", limiter)
    client._transport = httpx.MockTransport(answer)  # the hooks stay: they are the client's
    async with client:
        for path in ("/a", "/b", "/c", "/slow"):
            with contextlib.suppress(TransientBrokerError):  # 503 and the timeout: counted all the same
                await send(client, client.build_request("GET", path), broker=broker)

    def count(status_class: str) -> float:
        return _value(
            "portfolio_sync_broker_http_request_duration_seconds_count",
            {"broker": broker, "status_class": status_class},
        )

    assert [count(c) for c in ("2xx", "4xx", "5xx", "timeout")] == [1, 1, 1, 1]
    assert _value("portfolio_sync_fetcher_rate_limit_wait_seconds_count", {"broker": broker}) == 4


# The scheduler


async def test_the_scheduler_counts_claimed_ticks_how_late_they_were_and_the_requests(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    broker = "sim"
    now = utc_now()
    before = {
        "claimed": _value("portfolio_sync_scheduler_ticks_claimed_total", {"broker": broker}),
        "requests": _value("portfolio_sync_sync_requests_total", {"broker": broker, "trigger": "schedule"}),
        "delay_sum": _value("portfolio_sync_scheduler_tick_delay_seconds_sum", {"broker": broker}),
        "late_buckets": _value(
            "portfolio_sync_scheduler_tick_delay_seconds_bucket", {"broker": broker, "le": "60.0"}
        ),
    }
    await create_account(sessions, next_run_at=now - timedelta(seconds=120))
    await create_account(sessions, next_run_at=now - timedelta(seconds=1))
    await create_account(sessions, next_run_at=now + timedelta(minutes=5))  # not due

    assert await emit_due_syncs(sessions, bus, now=now, limit=100) == 2
    claimed = _value("portfolio_sync_scheduler_ticks_claimed_total", {"broker": broker})
    requests = _value("portfolio_sync_sync_requests_total", {"broker": broker, "trigger": "schedule"})
    delay_sum = _value("portfolio_sync_scheduler_tick_delay_seconds_sum", {"broker": broker})
    within_a_minute = _value(
        "portfolio_sync_scheduler_tick_delay_seconds_bucket", {"broker": broker, "le": "60.0"}
    )
    assert (claimed - before["claimed"], requests - before["requests"]) == (2, 2)
    assert abs(delay_sum - before["delay_sum"] - 121) < 0.01
    assert within_a_minute - before["late_buckets"] == 1, "the tick two minutes late is not within 60 s"


# The ledger


def _snapshot(account_id: uuid.UUID, *symbols: str) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=utc_now(),
        holdings=tuple(_holding(s) for s in symbols),
    )


async def test_the_ledger_counts_batches_snapshot_outcomes_and_holdings(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    ledger = Ledger(sessions=sessions, bus=bus)
    account = await create_account(sessions)
    names = ("applied", "held", "dismissed", "late")
    before = {n: _value("portfolio_sync_ledger_snapshots_total", {"outcome": n}) for n in names}
    batches = _value("portfolio_sync_ledger_batch_events_count")
    events = _value("portfolio_sync_ledger_batch_events_sum")
    holdings = _value("portfolio_sync_ledger_holdings_written_total")
    writes = _value("portfolio_sync_ledger_write_duration_seconds_count")

    first = _snapshot(account.id, "A", "B", "C", "D")
    await ledger.apply_batch([first])
    await ledger.apply_batch([_snapshot(account.id)])  # empty where it held four: held
    await ledger.apply_batch(
        [_snapshot(account.id, "A", "B", "C", "D"), _snapshot(account.id, "A", "B", "C", "D")]
    )

    after = {n: _value("portfolio_sync_ledger_snapshots_total", {"outcome": n}) - before[n] for n in names}
    assert after == {"applied": 3, "held": 1, "dismissed": 1, "late": 0}
    assert _value("portfolio_sync_ledger_batch_events_count") - batches == 3
    assert _value("portfolio_sync_ledger_batch_events_sum") - events == 4
    assert _value("portfolio_sync_ledger_holdings_written_total") - holdings == 12
    assert _value("portfolio_sync_ledger_write_duration_seconds_count") - writes == 3


async def test_the_outbox_gauges_say_how_many_messages_wait_and_since_when(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    ledger = Ledger(sessions=sessions, bus=bus)
    await ledger.relay.sample_backlog()
    assert (
        _value("portfolio_sync_ledger_outbox_messages"),
        _value("portfolio_sync_ledger_outbox_oldest_age_seconds"),
    ) == (0, 0)
    async with sessions.begin() as session:
        for age_s in (90, 30):
            session.add(
                OutboxMessage(
                    event_id=uuid.uuid4(),
                    topic="holdings.changes",
                    message_key="k",
                    payload="{}",
                    created_at=utc_now() - timedelta(seconds=age_s),
                )
            )
    await ledger.relay.sample_backlog()
    assert _value("portfolio_sync_ledger_outbox_messages") == 2
    assert 90 <= _value("portfolio_sync_ledger_outbox_oldest_age_seconds") < 100
