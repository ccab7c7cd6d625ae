"""The Upstox adapter against a fake of its documented API, over real HTTP on a loopback port."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    InvalidResponse,
    RateLimited,
    fetch_holdings,
)
from services.fetcher.brokers.upstox import BASE_URL, UpstoxBroker, create
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.registry import AdapterContext, plugin
from services.fetcher.testing import BrokerConformance, Scenario, serve_fake
from shared.brokers import LimitScope
from shared.events import AssetType, Holding
from shared.settings import Settings
from tests.fakes.upstox import UpstoxFake, sample

TOKEN = "eyJ0eXAiOiJKV1Qi.upstox-test-token.c2lnbmF0dXJl"
CREDENTIALS = {"access_token": TOKEN}

SAMPLE_HOLDINGS = [
    Holding(
        symbol="YESBANK",
        exchange="NSE",
        isin="INE528G01035",
        currency="INR",
        asset_type=AssetType.EQUITY,
        quantity=Decimal("36"),
        average_price=Decimal("18.75"),
        last_price=Decimal("17.05"),
    ),
    Holding(
        symbol="RELINFRA",
        exchange="NSE",
        isin="INE036A01016",
        currency="INR",
        asset_type=AssetType.EQUITY,
        quantity=Decimal("1"),
        average_price=Decimal("192.55"),
        last_price=Decimal("174.85"),
    ),
]


def _generous_limiter() -> BrokerLimiter:
    return BrokerLimiter(BrokerLimits(rate_per_s=1000, burst=1000, concurrency=10))


class TestUpstoxConformance(BrokerConformance):
    credentials = CREDENTIALS
    expected = SAMPLE_HOLDINGS

    def fake(self) -> UpstoxFake:
        return UpstoxFake(access_token=TOKEN)

    def adapter(self, base_url: str, limiter: BrokerLimiter) -> UpstoxBroker:
        return UpstoxBroker(base_url=f"{base_url}/v2", limiter=limiter)


@dataclass
class Served:
    fake: UpstoxFake
    adapter: UpstoxBroker
    base_url: str

    async def fetch(self, credentials: dict[str, str] | None = None) -> list[Holding]:
        account = AccountContext(uuid.uuid4(), credentials if credentials is not None else dict(CREDENTIALS))
        return list(await fetch_holdings(self.adapter, account))

    def serve(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Answer the next holdings request with the documented sample as `edit` changes it."""
        body: dict[str, Any] = json.loads(sample("holdings.json"))
        edit(body)
        self.fake.holdings_body = json.dumps(body).encode()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    fake = UpstoxFake(access_token=TOKEN)
    async with serve_fake(fake) as base_url:
        adapter = UpstoxBroker(base_url=f"{base_url}/v2", limiter=_generous_limiter())
        try:
            yield Served(fake, adapter, base_url)
        finally:
            await adapter.aclose()


def _only(holdings: list[Holding]) -> Holding:
    assert len(holdings) == 1, holdings
    return holdings[0]


def _entry(**changes: Any) -> dict[str, Any]:
    """The documented first sample holding with some fields changed (None removes a field)."""
    entry: dict[str, Any] = json.loads(sample("holdings.json"))["data"][0]
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


class TestUpstoxRequests:
    async def test_the_broker_sees_exactly_the_documented_headers(self, served: Served) -> None:
        await served.fetch()
        assert len(served.fake.headers_seen) == 1
        headers = served.fake.headers_seen[0]
        assert headers.getlist("authorization") == [f"Bearer {TOKEN}"]
        assert headers.getlist("accept") == ["application/json"]
        others = [(name, value) for name, value in headers.items() if name != "authorization"]
        assert not [name for name, value in others if TOKEN in value], (
            "the token travels outside Authorization"
        )

    async def test_a_missing_access_token_is_rejected_before_any_request(self, served: Served) -> None:
        with pytest.raises(AuthRejected, match="'access_token'"):
            await served.fetch({"api_key": "k3y-not-a-token"})
        assert served.fake.requests_seen == 0

    async def test_a_wrong_token_is_an_auth_failure_naming_the_code_not_the_token(
        self, served: Served
    ) -> None:
        wrong = "wrong-token-0123456789"
        with pytest.raises(AuthRejected) as caught:
            await served.fetch({"access_token": wrong})
        assert "UDAPI100050" in str(caught.value)
        assert wrong not in str(caught.value)

    async def test_an_error_envelope_under_http_200_is_still_an_auth_failure(self, served: Served) -> None:
        served.fake.holdings_body = sample("error_invalid_token.json")
        with pytest.raises(AuthRejected, match="UDAPI100050"):
            await served.fetch()

    async def test_the_rate_limit_answer_gives_no_retry_delay_since_none_is_documented(
        self, served: Served
    ) -> None:
        served.fake.scenario = Scenario.RATE_LIMITED
        with pytest.raises(RateLimited) as caught:
            await served.fetch()
        assert caught.value.retry_after_s is None

    async def test_a_production_registration_with_the_documented_limits_and_url(self) -> None:
        registered = plugin("upstox")
        assert registered.create is create
        assert registered.base_url == "https://api.upstox.com/v2" == BASE_URL
        assert registered.limits == BrokerLimits(
            rate_per_s=50, burst=50, concurrency=10, scope=LimitScope.ACCOUNT, key_fields=("access_token",)
        )

    async def test_the_factory_calls_the_base_url_it_is_given(self) -> None:
        fake = UpstoxFake(access_token=TOKEN)
        async with serve_fake(fake) as base_url:
            context = AdapterContext(
                settings=Settings(), limiter=_generous_limiter(), base_url=f"{base_url}/v2"
            )
            adapter = create(context)
            try:
                holdings = await fetch_holdings(adapter, AccountContext(uuid.uuid4(), CREDENTIALS))
            finally:
                await adapter.aclose()
        assert [h.symbol for h in holdings] == ["YESBANK", "RELINFRA"]
        assert fake.requests_seen == 1


class TestUpstoxPayloads:
    async def test_unknown_fields_are_tolerated(self, served: Served) -> None:
        def add_fields(body: dict[str, Any]) -> None:
            body["metadata"] = {"latency": 12}
            for entry in body["data"]:
                entry["mtf_quantity"] = 3
                entry["pledge"] = {"quantity": 0, "status": None}

        served.serve(add_fields)
        assert await served.fetch() == SAMPLE_HOLDINGS

    async def test_prices_keep_their_exact_digits(self, served: Served) -> None:
        def precise(body: dict[str, Any]) -> None:
            body["data"] = [_entry(average_price="@avg@", last_price="@last@")]

        served.serve(precise)
        # JSON text the docs' way (bare numbers), which json.dumps of a str would have quoted.
        served.fake.holdings_body = served.fake.holdings_body.replace(b'"@avg@"', b"1234.5678").replace(
            b'"@last@"', b"0.1"
        )
        holding = _only(await served.fetch())
        assert str(holding.average_price) == "1234.5678"
        assert holding.average_price == Decimal("1234.5678")
        assert holding.last_price == Decimal("0.1")  # a float detour would give 0.1000000000000000055...

    async def test_quantity_is_the_total_and_t1_quantity_is_not_added(self, served: Served) -> None:
        served.serve(lambda body: body.update(data=[_entry(quantity=10, t1_quantity=4)]))
        assert _only(await served.fetch()).quantity == Decimal("10")

    async def test_bought_but_unsettled_shares_are_held_at_their_t1_quantity(self) -> None:
        """https://upstox.com/developer/api-documentation/get-holdings: `quantity` is "The total
        holding qty", `t1_quantity` the "Quantity on T+1 day after order execution". A row with
        quantity 0 and t1_quantity 36 is 36 shares the user bought and holds, awaiting delivery."""
        fake = UpstoxFake(access_token=TOKEN, holdings="holdings_unsettled.json")
        async with serve_fake(fake) as base_url:
            adapter = UpstoxBroker(base_url=f"{base_url}/v2", limiter=_generous_limiter())
            try:
                [holding] = await fetch_holdings(adapter, AccountContext(uuid.uuid4(), dict(CREDENTIALS)))
            finally:
                await adapter.aclose()
        assert (holding.symbol, holding.quantity) == ("YESBANK", Decimal("36"))

    async def test_a_bse_holding_is_in_rupees(self, served: Served) -> None:
        served.serve(
            lambda body: body.update(data=[_entry(exchange="BSE", instrument_token="BSE_EQ|INE528G01035")])
        )
        holding = _only(await served.fetch())
        assert (holding.exchange, holding.currency) == ("BSE", "INR")

    async def test_an_exchange_without_a_known_currency_is_refused(self, served: Served) -> None:
        served.serve(lambda body: body.update(data=[_entry(exchange="NYSE")]))
        with pytest.raises(InvalidResponse, match="NYSE"):
            await served.fetch()

    async def test_the_older_tradingsymbol_field_stands_in_for_trading_symbol(self, served: Served) -> None:
        served.serve(lambda body: body.update(data=[_entry(trading_symbol=None, tradingsymbol="YESBANK")]))
        assert _only(await served.fetch()).symbol == "YESBANK"

    async def test_a_holding_without_any_symbol_is_invalid(self, served: Served) -> None:
        served.serve(lambda body: body.update(data=[_entry(trading_symbol=None, tradingsymbol=None)]))
        with pytest.raises(InvalidResponse, match="trading_symbol"):
            await served.fetch()

    async def test_an_empty_isin_is_no_isin(self, served: Served) -> None:
        served.serve(lambda body: body.update(data=[_entry(isin="")]))
        assert _only(await served.fetch()).isin is None

    async def test_an_empty_account_has_no_holdings(self, served: Served) -> None:
        served.serve(lambda body: body.update(data=[]))
        assert await served.fetch() == []

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("last_price", "17.05"),  # a string where the docs have a number
            ("quantity", True),
            ("average_price", None),  # None removes the field
            ("exchange", 1),
        ],
    )
    async def test_a_field_off_the_documented_type_invalidates_the_whole_payload(
        self, served: Served, field: str, value: Any
    ) -> None:
        sound = json.loads(sample("holdings.json"))["data"][1]
        served.serve(lambda body: body.update(data=[sound, _entry(**{field: value})]))
        with pytest.raises(InvalidResponse, match=field):
            await served.fetch()

    async def test_a_nan_price_is_invalid(self, served: Served) -> None:
        served.fake.holdings_body = sample("holdings.json").replace(
            b'"last_price": 17.05', b'"last_price": NaN'
        )
        with pytest.raises(InvalidResponse, match="last_price"):
            await served.fetch()

    async def test_a_negative_price_is_invalid(self, served: Served) -> None:
        served.serve(lambda body: body.update(data=[_entry(average_price=-1)]))
        with pytest.raises(InvalidResponse, match="average_price"):
            await served.fetch()

    async def test_a_body_that_is_not_json_is_invalid(self, served: Served) -> None:
        served.fake.holdings_body = b"<html>maintenance</html>"
        with pytest.raises(InvalidResponse, match="not JSON"):
            await served.fetch()

    async def test_a_status_other_than_success_is_invalid(self, served: Served) -> None:
        served.serve(lambda body: body.update(status="partial_success"))
        with pytest.raises(InvalidResponse, match="status"):
            await served.fetch()


class TestUpstoxErrorText:
    async def test_broker_text_echoing_the_token_is_blanked_out(self, served: Served) -> None:
        echo = {
            "status": "error",
            "errors": [
                {"error_code": "UDAPI100036", "message": f"Invalid Input {TOKEN}", "invalid_value": TOKEN}
            ],
        }
        served.fake.holdings_body = json.dumps(echo).encode()
        with pytest.raises(InvalidResponse) as caught:
            await served.fetch()
        assert "UDAPI100036: Invalid Input ***" in str(caught.value)
        assert TOKEN not in str(caught.value)
