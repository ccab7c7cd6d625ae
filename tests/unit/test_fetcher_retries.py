"""A failure that trying again can cure goes to the retry topic; every attempt shows as a SyncFailed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAnswer,
    RateLimited,
    TransientBrokerError,
)
from services.fetcher.brokers.simulated import holdings_answer, holdings_in
from services.fetcher.handlers import Fetcher
from services.fetcher.retry import RetryPolicy
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.events import (
    FailureKind,
    Holding,
    HoldingSnapshot,
    SyncFailed,
    SyncRequested,
    SyncTrigger,
    decode_event,
    utc_now,
)

HOLDING = Holding(symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal(1), average_price=Decimal(1))


class ScriptedBroker:
    """Fails as scripted, one outcome per call, then returns HOLDING; records when it was called."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls: list[float] = []

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        self.calls.append(asyncio.get_running_loop().time())
        if self.failures:
            raise self.failures.pop(0)
        return holdings_answer([HOLDING])

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return holdings_in(answer)

    async def aclose(self) -> None:
        return None


def _fetcher(
    bus: InMemoryBus,
    broker: ScriptedBroker,
    *,
    max_attempts: int = 3,
    base_s: float = 0.01,
    max_s: float | None = None,
    max_inline_wait_s: float = 5.0,
) -> Fetcher:
    return Fetcher(
        adapter=broker,
        bus=bus,
        cipher=CredentialCipher(CredentialCipher.generate_key()),
        slots=asyncio.Semaphore(4),
        retry=RetryPolicy(
            max_attempts=max_attempts,
            base_s=base_s,
            max_s=base_s if max_s is None else max_s,
            max_inline_wait_s=max_inline_wait_s,
        ),
    )


def _request(**changes: object) -> SyncRequested:
    return SyncRequested(account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.SCHEDULE, **changes)  # type: ignore[arg-type]


def _failures(bus: InMemoryBus) -> list[SyncFailed]:
    return [decode_event(SyncFailed, r.value) for r in bus.records(topics.SYNC_FAILURES)]


def _retries(bus: InMemoryBus) -> list[SyncRequested]:
    return [decode_event(SyncRequested, r.value) for r in bus.records(topics.sync_request_retries("sim"))]


async def test_a_transient_failure_is_announced_and_requeued_for_the_same_run(bus: InMemoryBus) -> None:
    request = _request()
    await _fetcher(bus, ScriptedBroker(TransientBrokerError("timeout"))).handle_requests([request])

    [failure] = _failures(bus)
    [retry] = _retries(bus)
    assert (failure.kind, failure.final, failure.attempt) == (FailureKind.TRANSIENT, False, 1)
    assert failure.request_id == request.event_id
    assert (retry.attempt, retry.run_id, retry.account_id) == (2, request.event_id, request.account_id)
    assert retry.event_id != request.event_id
    assert retry.not_before == failure.retry_at
    assert retry.not_before is not None and retry.not_before > request.occurred_at


async def test_a_rate_limited_sync_is_not_retried_before_the_broker_allows(bus: InMemoryBus) -> None:
    before = utc_now()
    broker = ScriptedBroker(RateLimited("429", retry_after_s=30))
    await _fetcher(bus, broker, max_s=60).handle_requests([_request()])
    [retry] = _retries(bus)
    assert retry.not_before is not None and retry.not_before >= before + timedelta(seconds=30)
    assert _failures(bus)[0].kind is FailureKind.RATE_LIMITED


async def test_the_last_attempt_and_an_auth_failure_are_final_with_no_retry(bus: InMemoryBus) -> None:
    last = _request(attempt=3, run_id=uuid.uuid4())
    await _fetcher(bus, ScriptedBroker(TransientBrokerError("down")), max_attempts=3).handle_requests([last])
    await _fetcher(bus, ScriptedBroker(AuthRejected("token expired"))).handle_requests([_request()])

    assert _retries(bus) == []
    finals = {f.kind: f for f in _failures(bus)}
    assert finals[FailureKind.TRANSIENT].final and finals[FailureKind.TRANSIENT].request_id == last.run_id
    assert finals[FailureKind.AUTH].final and finals[FailureKind.AUTH].attempt == 1


async def test_a_retry_waits_for_not_before_and_its_snapshot_names_the_run(bus: InMemoryBus) -> None:
    run_id = uuid.uuid4()
    broker = ScriptedBroker()
    loop = asyncio.get_running_loop()
    started = loop.time()
    retry = _request(attempt=2, run_id=run_id, not_before=utc_now() + timedelta(milliseconds=300))
    await _fetcher(bus, broker).handle_requests([retry])

    assert broker.calls[0] - started >= 0.29
    [record] = bus.records(topics.HOLDINGS_SNAPSHOTS)
    snapshot = decode_event(HoldingSnapshot, record.value)
    assert (snapshot.request_id, snapshot.attempt) == (run_id, 2)


async def test_a_waiting_retry_holds_no_concurrency_slot(bus: InMemoryBus) -> None:
    broker = ScriptedBroker()
    fetcher = Fetcher(
        adapter=broker,
        bus=bus,
        cipher=CredentialCipher(CredentialCipher.generate_key()),
        slots=asyncio.Semaphore(1),
        retry=RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.01),
    )
    waiting = asyncio.create_task(
        fetcher.handle_requests(
            [_request(attempt=2, run_id=uuid.uuid4(), not_before=utc_now() + timedelta(seconds=5))]
        )
    )
    await asyncio.wait_for(fetcher.handle_requests([_request()]), timeout=2)  # the one slot was free
    assert len(broker.calls) == 1
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting


async def test_an_absurd_retry_after_is_capped_at_the_longest_backoff(bus: InMemoryBus) -> None:
    """A broker asking for three days cannot park a sync for three days: FETCHER_MAX_BACKOFF_SECONDS."""
    broker = ScriptedBroker(RateLimited("429", retry_after_s=3 * 86400))
    await _fetcher(bus, broker, max_s=60).handle_requests([_request()])

    [retry] = _retries(bus)
    assert retry.not_before is not None and retry.not_before <= utc_now() + timedelta(seconds=60)


async def test_a_far_not_before_goes_back_to_the_retry_topic_instead_of_holding_the_batch(
    bus: InMemoryBus,
) -> None:
    """Sleeping past Kafka's max poll interval would cost the fetcher its partitions and redeliver
    the batch: the batch waits at most the inline bound, then the request goes back, unchanged."""
    broker = ScriptedBroker()
    waiting = _request(attempt=2, run_id=uuid.uuid4(), not_before=utc_now() + timedelta(hours=1))
    fetcher = _fetcher(bus, broker, max_inline_wait_s=0.05)

    outcomes = await asyncio.wait_for(fetcher.handle_requests([waiting]), timeout=2)

    assert broker.calls == [], "not fetched before its time"
    assert _failures(bus) == [] and bus.records(topics.HOLDINGS_SNAPSHOTS) == []
    [again] = _retries(bus)
    assert again == waiting
    assert outcomes == {"waiting": 1}


async def test_a_not_before_within_the_inline_bound_is_waited_for_in_the_batch(bus: InMemoryBus) -> None:
    broker = ScriptedBroker()
    soon = _request(attempt=2, run_id=uuid.uuid4(), not_before=utc_now() + timedelta(milliseconds=100))
    outcomes = await _fetcher(bus, broker, max_inline_wait_s=1).handle_requests([soon])
    assert len(broker.calls) == 1 and _retries(bus) == []
    assert outcomes == {"snapshot": 1}


# --- one request, one outcome: ids derived from the run and the attempt ------------------------------


async def test_a_redelivered_request_yields_events_with_the_same_ids(bus: InMemoryBus) -> None:
    """A fetcher that dies after publishing and before committing sees the request again: what it
    publishes then must carry the ids it published the first time, so the ledger dedupes them."""
    succeeding, failing = _request(), _request()
    for _ in range(2):  # two fetchers, as after a crash before the commit
        await _fetcher(bus, ScriptedBroker()).handle_requests([succeeding])
        await _fetcher(bus, ScriptedBroker(TransientBrokerError("down"))).handle_requests([failing])

    first, second = (decode_event(HoldingSnapshot, r.value) for r in bus.records(topics.HOLDINGS_SNAPSHOTS))
    assert first.event_id == second.event_id
    failed_once, failed_twice = _failures(bus)
    assert failed_once.event_id == failed_twice.event_id
    retry_once, retry_twice = _retries(bus)
    assert retry_once.event_id == retry_twice.event_id
    assert len({first.event_id, failed_once.event_id, retry_once.event_id, succeeding.event_id}) == 4


async def test_each_attempt_of_a_run_has_its_own_ids(bus: InMemoryBus) -> None:
    run_id = uuid.uuid4()
    for attempt in (2, 3):
        await _fetcher(bus, ScriptedBroker(TransientBrokerError("down")), max_attempts=5).handle_requests(
            [_request(attempt=attempt, run_id=run_id)]
        )
    assert len({f.event_id for f in _failures(bus)}) == 2
    assert sorted(r.attempt for r in _retries(bus)) == [3, 4]
    assert len({r.event_id for r in _retries(bus)}) == 2
