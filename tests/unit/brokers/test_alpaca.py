"""The Alpaca adapter against a fake Alpaca over real HTTP: the conformance suite, then Alpaca's own rules."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    InvalidResponse,
    RateLimited,
    fetch_holdings,
)
from services.fetcher.brokers.alpaca import LIVE_URL, PAPER_URL, AlpacaBroker, create
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.registry import AdapterContext, create_adapter, plugin
from services.fetcher.testing import BrokerConformance, Scenario, serve_fake
from shared.events import AssetType, Holding
from shared.settings import Settings
from tests.fakes.alpaca import AlpacaFake, sample

KEY_ID = "PKTESTKEY0123456789A"
SECRET_KEY = "alpaca-test-secret-0123456789abcdefghij"
LIVE_KEY_ID = "AKLIVEKEY0123456789B"
LIVE_SECRET_KEY = "alpaca-live-secret-9876543210zyxwvutsrq"

# The documented samples, normalised: AAPL's published symbol has a trailing space; BTCUSD's average
# entry price has 16 decimal places, all of which a Holding price keeps.
EXPECTED = [
    Holding(
        symbol="AAPL",
        exchange="NASDAQ",
        currency="USD",
        asset_type=AssetType.EQUITY,
        quantity=Decimal("5"),
        average_price=Decimal("100.0"),
        last_price=Decimal("120.0"),
    ),
    Holding(
        symbol="BTCUSD",
        exchange="FTXU",
        currency="USD",
        asset_type=AssetType.CRYPTO,
        quantity=Decimal("2.61937"),
        average_price=Decimal("19660.5738784516887649"),  # exactly as published
        last_price=Decimal("19444"),
    ),
]


class TestAlpacaConformance(BrokerConformance):
    # No `environment` here: its values ("live", "paper") are not secrets and appear in URLs and
    # hints, which the suite's no-credential-in-messages check would flag.
    credentials = {"key_id": KEY_ID, "secret_key": SECRET_KEY}
    expected = EXPECTED

    def fake(self) -> AlpacaFake:
        return AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)

    def adapter(self, base_url: str, limiter: BrokerLimiter) -> AlpacaBroker:
        return AlpacaBroker(live_url=base_url, paper_url=base_url, limiter=limiter)


def _limiter() -> BrokerLimiter:
    return BrokerLimiter(BrokerLimits(rate_per_s=1000, burst=1000))


def _account(**credentials: str) -> AccountContext:
    return AccountContext(uuid.uuid4(), credentials)


PAPER_ACCOUNT = {"key_id": KEY_ID, "secret_key": SECRET_KEY, "environment": "paper"}


@asynccontextmanager
async def _alpaca(fake: AlpacaFake) -> AsyncIterator[AlpacaBroker]:
    """The adapter pointed at `fake` for both environments."""
    async with serve_fake(fake) as url:
        adapter = AlpacaBroker(live_url=url, paper_url=url, limiter=_limiter())
        try:
            yield adapter
        finally:
            await adapter.aclose()


def _aapl(**changes: Any) -> dict[str, Any]:
    """The documented equity Position with some fields changed (None removes a field)."""
    position: dict[str, Any] = copy.deepcopy(sample("positions.json")[0])
    for field, value in changes.items():
        if value is None:
            position.pop(field, None)
        else:
            position[field] = value
    return position


async def _holdings_of(positions: list[dict[str, Any]]) -> list[Holding]:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY, positions=positions)
    async with _alpaca(fake) as adapter:
        return list(await fetch_holdings(adapter, _account(**PAPER_ACCOUNT)))


async def test_the_request_carries_exactly_the_documented_key_headers() -> None:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with _alpaca(fake) as adapter:
        await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))
    credential_headers = {
        name: value for name, value in fake.last_headers.items() if "apca" in name or "auth" in name
    }
    assert credential_headers == {"apca-api-key-id": KEY_ID, "apca-api-secret-key": SECRET_KEY}


async def test_a_wrong_secret_is_rejected_as_alpaca_does_and_is_an_auth_failure() -> None:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with _alpaca(fake) as adapter:
        with pytest.raises(AuthRejected, match=r"HTTP 401: request is not authorized") as caught:
            await fetch_holdings(adapter, _account(key_id=KEY_ID, secret_key="not-the-secret"))
    assert "not-the-secret" not in str(caught.value)
    assert fake.requests_seen == 1


class _EchoingAlpaca(AlpacaFake):
    """A host whose 401 message repeats the key it was sent."""

    async def _positions(self, request: Request) -> JSONResponse:
        self.last_headers = dict(request.headers)
        key = request.headers.get("apca-api-key-id")
        return JSONResponse({"code": 40110000, "message": f"key {key} is not authorized"}, status_code=401)


async def test_a_broker_message_repeating_the_key_is_blanked_out() -> None:
    async with _alpaca(_EchoingAlpaca(key_id=KEY_ID, secret_key=SECRET_KEY)) as adapter:
        with pytest.raises(AuthRejected, match=r"HTTP 401: key \*\*\* is not authorized") as caught:
            await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))
    assert KEY_ID not in str(caught.value)


@pytest.mark.parametrize("missing", ["key_id", "secret_key"])
async def test_a_missing_credential_is_an_auth_failure_naming_it_and_sends_nothing(missing: str) -> None:
    credentials = {key: value for key, value in PAPER_ACCOUNT.items() if key != missing}
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with _alpaca(fake) as adapter:
        with pytest.raises(AuthRejected, match=repr(missing)):
            await fetch_holdings(adapter, _account(**credentials))
    assert fake.requests_seen == 0


async def test_an_unknown_environment_is_an_auth_failure() -> None:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with _alpaca(fake) as adapter:
        with pytest.raises(AuthRejected, match="'live' or 'paper'"):
            await fetch_holdings(
                adapter, _account(key_id=KEY_ID, secret_key=SECRET_KEY, environment="sandbox")
            )
    assert fake.requests_seen == 0


async def test_paper_accounts_call_the_paper_host_and_live_accounts_the_live_host() -> None:
    live = AlpacaFake(key_id=LIVE_KEY_ID, secret_key=LIVE_SECRET_KEY)
    paper = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with serve_fake(live) as live_url, serve_fake(paper) as paper_url:
        adapter = AlpacaBroker(live_url=live_url, paper_url=paper_url, limiter=_limiter())
        try:
            await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))
            assert (paper.requests_seen, live.requests_seen) == (1, 0)

            await fetch_holdings(
                adapter, _account(key_id=LIVE_KEY_ID, secret_key=LIVE_SECRET_KEY, environment="live")
            )
            assert (paper.requests_seen, live.requests_seen) == (1, 1)

            # No environment: live, the registered default.
            await fetch_holdings(adapter, _account(key_id=LIVE_KEY_ID, secret_key=LIVE_SECRET_KEY))
            assert (paper.requests_seen, live.requests_seen) == (1, 2)

            # Paper keys without `environment` go to the live host, which does not know them.
            with pytest.raises(AuthRejected, match="environment"):
                await fetch_holdings(adapter, _account(key_id=KEY_ID, secret_key=SECRET_KEY))
            assert (paper.requests_seen, live.requests_seen) == (1, 3)
        finally:
            await adapter.aclose()


def test_alpaca_registers_the_live_host_and_its_documented_rate() -> None:
    registered = plugin("alpaca")
    assert registered.base_url == LIVE_URL == "https://api.alpaca.markets"
    assert registered.limits.rate_per_s == pytest.approx(200 / 60)


def test_the_registered_host_means_live_and_paper_hosts_an_override_means_one_host_for_both() -> None:
    limiter = _limiter()
    default = create(AdapterContext(settings=Settings(), limiter=limiter, base_url=LIVE_URL))
    assert isinstance(default, AlpacaBroker)
    assert (
        (default.live_url, default.paper_url)
        == (LIVE_URL, PAPER_URL)
        == (
            "https://api.alpaca.markets",
            "https://paper-api.alpaca.markets",
        )
    )
    proxied = create(AdapterContext(settings=Settings(), limiter=limiter, base_url="http://proxy:8080"))
    assert isinstance(proxied, AlpacaBroker)
    assert (proxied.live_url, proxied.paper_url) == ("http://proxy:8080", "http://proxy:8080")


async def test_an_overridden_base_url_from_settings_serves_a_paper_account() -> None:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with serve_fake(fake) as url:
        adapter, _ = create_adapter("alpaca", Settings(broker_base_urls={"alpaca": url}))
        try:
            holdings = await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))
        finally:
            await adapter.aclose()
    assert fake.requests_seen == 1
    assert [h.symbol for h in holdings] == ["AAPL", "BTCUSD"]


async def test_fields_alpaca_adds_are_tolerated() -> None:
    position = _aapl(
        asset_marginable=True,
        avg_entry_swap_rate="1",
        some_future_field={"nested": ["anything", 1, None]},
        another_number=12.5,
    )
    assert await _holdings_of([position]) == [EXPECTED[0]]


async def test_numbers_keep_every_digit() -> None:
    [holding] = await _holdings_of(
        [_aapl(qty="0.12345678", avg_entry_price="1234.5678", current_price="1234.56780000")]
    )
    assert str(holding.quantity) == "0.12345678"
    assert str(holding.average_price) == "1234.5678"
    assert str(holding.last_price) == "1234.56780000"


async def test_prices_finer_than_a_holding_carries_round_half_even_to_eighteen_places() -> None:
    [holding] = await _holdings_of(
        [_aapl(avg_entry_price="10.1234567890123456785", current_price="10.1234567890123456775000001")]
    )
    assert str(holding.average_price) == "10.123456789012345678"
    assert str(holding.last_price) == "10.123456789012345678"


async def test_a_quantity_finer_than_a_holding_carries_is_invalid_not_rounded() -> None:
    [nine_places] = await _holdings_of([_aapl(qty="0.123456789")])  # Alpaca documents up to 9
    assert str(nine_places.quantity) == "0.123456789"
    with pytest.raises(InvalidResponse, match=r"position 0 \('AAPL'\).*quantity"):
        await _holdings_of([_aapl(qty="0.1234567890123456789")])


async def test_a_short_position_keeps_its_negative_quantity() -> None:
    short = _aapl(side="short", qty="-5", qty_available="-5", market_value="-600.0")
    [holding] = await _holdings_of([short])
    assert holding.quantity == Decimal("-5")
    assert holding.average_price == Decimal("100.0")


@pytest.mark.parametrize(("side", "qty"), [("short", "5"), ("long", "-5")])
async def test_a_side_contradicting_the_quantity_is_invalid(side: str, qty: str) -> None:
    with pytest.raises(InvalidResponse, match=f"side '{side}' but qty {qty}"):
        await _holdings_of([_aapl(side=side, qty=qty)])


async def test_an_option_position_is_other_and_usd() -> None:
    option = _aapl(symbol="AAPL240119C00190000", asset_class="us_option", exchange="")
    [holding] = await _holdings_of([option])
    assert (holding.asset_type, holding.currency, holding.exchange) == (AssetType.OTHER, "USD", "")


async def test_a_position_without_a_current_price_has_no_last_price() -> None:
    null_price = _aapl(symbol="MSFT")
    null_price["current_price"] = None
    holdings = await _holdings_of([_aapl(current_price=None), null_price])
    assert [(h.symbol, h.last_price) for h in holdings] == [("AAPL", None), ("MSFT", None)]


@pytest.mark.parametrize(
    ("positions", "reason"),
    [
        ([_aapl(qty=5)], r"0\.qty: Value error, expected a decimal number written as a string"),
        ([_aapl(current_price="")], r"0\.current_price"),
        ([_aapl(avg_entry_price="1e3")], r"0\.avg_entry_price"),
        ([_aapl(side="flat")], r"0\.side"),
        ([_aapl(asset_id="not-a-uuid")], r"0\.asset_id"),
        ([sample("positions.json")[1], _aapl(symbol=None)], r"1\.symbol: Field required"),
    ],
)
async def test_a_body_off_the_documented_schema_is_invalid_and_says_where(
    positions: list[dict[str, Any]], reason: str
) -> None:
    with pytest.raises(InvalidResponse, match=reason):
        await _holdings_of(positions)


async def test_an_object_where_the_array_belongs_is_invalid() -> None:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    fake.positions = {"positions": sample("positions.json")}
    async with _alpaca(fake) as adapter:
        with pytest.raises(InvalidResponse, match="<root>: Input should be a valid array"):
            await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))


async def test_a_local_currency_position_is_refused_rather_than_labelled_usd() -> None:
    lct = _aapl(usd={"avg_entry_price": "0.66", "current_price": "0.79"}, swap_rate="151.2")
    with pytest.raises(InvalidResponse, match="local currency"):
        await _holdings_of([lct])


async def test_an_account_without_positions_has_no_holdings() -> None:
    assert await _holdings_of([]) == []


async def test_a_rate_limit_says_to_wait_until_alpacas_reset_time() -> None:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    fake.scenario = Scenario.RATE_LIMITED
    async with _alpaca(fake) as adapter:
        with pytest.raises(RateLimited) as caught:
            await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))
    expected = fake.rate_limit_reset_at - time.time()
    assert caught.value.retry_after_s is not None
    assert caught.value.retry_after_s == pytest.approx(expected, abs=2)
    assert caught.value.retry_after_s > 50


async def test_an_undocumented_status_is_an_invalid_response() -> None:
    fake = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with serve_fake(fake) as url:
        adapter = AlpacaBroker(live_url=f"{url}/elsewhere", paper_url=f"{url}/elsewhere", limiter=_limiter())
        try:
            with pytest.raises(InvalidResponse, match="unexpected HTTP 404"):
                await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))
        finally:
            await adapter.aclose()


async def test_closing_releases_every_client() -> None:
    live = AlpacaFake(key_id=LIVE_KEY_ID, secret_key=LIVE_SECRET_KEY)
    paper = AlpacaFake(key_id=KEY_ID, secret_key=SECRET_KEY)
    async with serve_fake(live) as live_url, serve_fake(paper) as paper_url:
        adapter = AlpacaBroker(live_url=live_url, paper_url=paper_url, limiter=_limiter())
        await fetch_holdings(adapter, _account(**PAPER_ACCOUNT))
        await fetch_holdings(adapter, _account(key_id=LIVE_KEY_ID, secret_key=LIVE_SECRET_KEY))
        clients = list(adapter._clients.values())
        await adapter.aclose()
    assert len(clients) == 2
    assert all(client.is_closed for client in clients)
