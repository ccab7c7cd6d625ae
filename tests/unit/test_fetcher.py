from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAnswer,
    InvalidResponse,
    fetch_holdings,
)
from services.fetcher.brokers.simulated import SimulatedBroker, holdings_answer, holdings_in
from services.fetcher.handlers import Fetcher
from services.fetcher.metrics import FetcherMetrics
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
)

KEY = CredentialCipher.generate_key()
NO_RETRY = RetryPolicy(max_attempts=1, base_s=1, max_s=1)


class RecordingBroker:
    """Returns what it is told to, and remembers the credentials it was given."""

    def __init__(self, outcome: Sequence[Holding] | Exception) -> None:
        self.outcome = outcome
        self.seen: list[AccountContext] = []

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        self.seen.append(account)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return holdings_answer(self.outcome)

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return holdings_in(answer)

    async def aclose(self) -> None:
        return None


def _request(ciphertext: str | None = None) -> SyncRequested:
    return SyncRequested(
        account_id=uuid.uuid4(), broker="sim", trigger=SyncTrigger.MANUAL, credentials_ciphertext=ciphertext
    )


async def test_snapshot_carries_the_holdings_and_decrypted_credentials_reach_the_adapter(
    bus: InMemoryBus,
) -> None:
    cipher = CredentialCipher(KEY)
    holding = Holding(
        symbol="TCS", exchange="NSE", currency="INR", quantity=Decimal("3"), average_price=Decimal("10")
    )
    broker = RecordingBroker([holding])
    request = _request(cipher.encrypt({"api_key": "k", "access_token": "secret-token"}))

    await Fetcher(
        adapter=broker, bus=bus, cipher=cipher, slots=asyncio.Semaphore(4), retry=NO_RETRY
    ).handle_requests([request])

    [record] = bus.records(topics.HOLDINGS_SNAPSHOTS)
    snapshot = decode_event(HoldingSnapshot, record.value)
    assert (snapshot.request_id, snapshot.account_id, snapshot.holdings) == (
        request.event_id,
        request.account_id,
        (holding,),
    )
    assert broker.seen[0].credentials == {"api_key": "k", "access_token": "secret-token"}
    assert b"secret-token" not in record.value


async def test_typed_broker_errors_become_sync_failed_of_that_kind(bus: InMemoryBus) -> None:
    cases = [
        (AuthRejected("token expired"), FailureKind.AUTH),
        (InvalidResponse("no data"), FailureKind.INVALID_RESPONSE),
    ]
    for error, kind in cases:
        request = _request()
        await Fetcher(
            adapter=RecordingBroker(error),
            bus=bus,
            cipher=CredentialCipher(KEY),
            slots=asyncio.Semaphore(1),
            retry=NO_RETRY,
        ).handle_requests([request])
        failures = [decode_event(SyncFailed, r.value) for r in bus.records(topics.SYNC_FAILURES)]
        [failure] = [f for f in failures if f.request_id == request.event_id]
        assert (failure.kind, failure.reason) == (kind, str(error))
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []


async def test_credentials_no_key_opens_are_an_operator_error_not_an_auth_failure(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    foreign_key = CredentialCipher.generate_key()
    foreign = CredentialCipher(foreign_key).encrypt({"pin": "1234"})
    broker = RecordingBroker([])
    registry = CollectorRegistry()
    metrics = FetcherMetrics(registry)
    request = _request(foreign)
    with caplog.at_level(logging.ERROR, logger="services.fetcher.handlers"):
        await Fetcher(
            adapter=broker,
            bus=bus,
            cipher=CredentialCipher(KEY),
            slots=asyncio.Semaphore(1),
            retry=RetryPolicy(max_attempts=5, base_s=1, max_s=1),
            metrics=metrics,
        ).handle_requests([request])

    failure = decode_event(SyncFailed, bus.records(topics.SYNC_FAILURES)[0].value)
    assert (failure.kind, failure.final) == (FailureKind.UNREADABLE_CREDENTIALS, True), "no retry can cure it"
    assert broker.seen == [] and bus.records(topics.sync_request_retries("sim")) == []
    counted = registry.get_sample_value(
        "portfolio_sync_fetcher_unreadable_credentials_total", {"broker": "sim"}
    )
    assert counted == 1
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert line.__dict__["account_id"] == str(request.account_id)
    logged = line.getMessage() + repr(line.__dict__)
    for secret in (KEY, foreign_key, foreign, "1234"):
        assert secret not in logged


async def test_simulated_broker_is_deterministic_per_account() -> None:
    broker = SimulatedBroker(latency_s=0, failure_rate=0)
    one, other = AccountContext(uuid.uuid4(), {}), AccountContext(uuid.uuid4(), {})
    first, again = await fetch_holdings(broker, one), await fetch_holdings(broker, one)
    assert [(h.symbol, h.quantity) for h in first] == [(h.symbol, h.quantity) for h in again]
    assert [(h.symbol, h.quantity) for h in first] != [
        (h.symbol, h.quantity) for h in await fetch_holdings(broker, other)
    ]
    assert all(isinstance(h.quantity, Decimal) and h.quantity > 0 for h in first)
