"""The conformance suite every broker adapter passes, ours and plug-ins' alike.

Subclass it in a test module and provide what it needs::

    class TestMyBroker(BrokerConformance):
        credentials = {"token": "t0k3n"}
        expected = [Holding(symbol="AAPL", ...)]          # what the documented sample must become

        def fake(self) -> FakeBroker:                      # a fresh fake server app
            return MyBrokerFake()

        def adapter(self, base_url: str, limiter: BrokerLimiter) -> BrokerAdapter:
            return MyBroker(base_url=base_url, limiter=limiter)

Every test talks to the fake over real HTTP on a loopback port.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pytest

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAdapter,
    BrokerAnswer,
    InvalidResponse,
    RateLimited,
    TransientBrokerError,
    fetch_holdings,
)
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.testing.fake_server import FakeBroker, Scenario, serve_fake
from shared.events import Holding


class CountingLimiter(BrokerLimiter):
    """A generous limiter that counts the tokens taken."""

    def __init__(self) -> None:
        super().__init__(BrokerLimits(rate_per_s=1000, burst=1000, concurrency=10))
        self.taken = 0
        inner = self.requests.acquire

        async def counted() -> None:
            self.taken += 1
            await inner()

        self.requests.acquire = counted  # type: ignore[method-assign]


@dataclass
class Connected:
    fake: FakeBroker
    adapter: BrokerAdapter
    limiter: CountingLimiter
    account: AccountContext

    async def fetch(self, scenario: Scenario) -> Sequence[Holding]:
        self.fake.scenario = scenario
        return await fetch_holdings(self.adapter, self.account)


def _sorted(holdings: Sequence[Holding]) -> list[Holding]:
    return sorted(holdings, key=lambda h: (h.symbol, h.exchange))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrokerConformance:
    credentials: ClassVar[Mapping[str, str]]
    expected: ClassVar[Sequence[Holding]]

    def fake(self) -> FakeBroker:
        raise NotImplementedError

    def adapter(self, base_url: str, limiter: BrokerLimiter) -> BrokerAdapter:
        raise NotImplementedError

    @pytest.fixture
    async def connected(self) -> AsyncIterator[Connected]:
        fake = self.fake()
        async with serve_fake(fake) as base_url:
            limiter = CountingLimiter()
            adapter = self.adapter(base_url, limiter)
            try:
                yield Connected(fake, adapter, limiter, AccountContext(uuid.uuid4(), dict(self.credentials)))
            finally:
                await adapter.aclose()

    async def test_the_documented_sample_becomes_normalised_holdings(self, connected: Connected) -> None:
        holdings = await connected.fetch(Scenario.HOLDINGS)
        assert _sorted(holdings) == _sorted(self.expected)

    async def test_its_answer_parses_again_later_without_the_broker_or_the_credentials(
        self, connected: Connected
    ) -> None:
        """What replay relies on: an answer as archived (status and body, no secrets) parses to the
        same holdings with no request to the broker."""
        connected.fake.scenario = Scenario.HOLDINGS
        answer = await connected.adapter.fetch_answer(connected.account)
        asked = connected.fake.requests_seen
        archived = BrokerAnswer(status_code=answer.status_code, body=answer.body)
        assert _sorted(connected.adapter.parse_holdings(archived)) == _sorted(self.expected)
        assert connected.fake.requests_seen == asked

    async def test_every_request_to_the_broker_takes_a_rate_token(self, connected: Connected) -> None:
        await connected.fetch(Scenario.HOLDINGS)
        assert connected.fake.requests_seen > 0
        assert connected.limiter.taken >= connected.fake.requests_seen

    async def test_rejected_credentials_are_an_auth_failure(self, connected: Connected) -> None:
        with pytest.raises(AuthRejected):
            await connected.fetch(Scenario.AUTH_REJECTED)

    async def test_a_rate_limit_answer_is_rate_limited(self, connected: Connected) -> None:
        with pytest.raises(RateLimited):
            await connected.fetch(Scenario.RATE_LIMITED)

    async def test_a_server_error_is_transient(self, connected: Connected) -> None:
        with pytest.raises(TransientBrokerError):
            await connected.fetch(Scenario.SERVER_ERROR)

    async def test_a_payload_off_the_schema_is_an_invalid_response(self, connected: Connected) -> None:
        with pytest.raises(InvalidResponse):
            await connected.fetch(Scenario.MALFORMED)

    async def test_an_unreachable_broker_is_transient(self) -> None:
        adapter = self.adapter(f"http://127.0.0.1:{_closed_port()}", CountingLimiter())
        try:
            with pytest.raises(TransientBrokerError):
                await fetch_holdings(adapter, AccountContext(uuid.uuid4(), dict(self.credentials)))
        finally:
            await adapter.aclose()

    async def test_no_error_message_carries_a_credential(self, connected: Connected) -> None:
        for scenario in (
            Scenario.AUTH_REJECTED,
            Scenario.RATE_LIMITED,
            Scenario.SERVER_ERROR,
            Scenario.MALFORMED,
        ):
            with pytest.raises(Exception) as caught:  # noqa: PT011 - the kind is checked by the tests above
                await connected.fetch(scenario)
            for secret in self.credentials.values():
                assert secret not in str(caught.value), f"{scenario.name} error message shows a credential"
