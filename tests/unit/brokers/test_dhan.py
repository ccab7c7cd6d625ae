"""The Dhan adapter against a fake DhanHQ v2 over real HTTP: the conformance suite, then Dhan's own ways."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

import pytest

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerError,
    InvalidResponse,
    RateLimited,
    TransientBrokerError,
    fetch_holdings,
)
from services.fetcher.brokers.dhan import BASE_URL, CODE, LIMITS, DhanBroker
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.registry import plugin
from services.fetcher.testing import BrokerConformance, Scenario, serve_fake
from shared.events import AssetType, Holding
from tests.fakes.dhan import ACCESS_TOKEN, DhanFake, sample

CREDENTIALS = {"access_token": ACCESS_TOKEN}


class TestDhanConformance(BrokerConformance):
    credentials = CREDENTIALS
    # holdings.json is the documented sample: exchange "ALL" is reported as NSE, the currency derived.
    expected = [
        Holding(
            symbol="HDFC",
            exchange="NSE",
            isin="INE001A01036",
            currency="INR",
            asset_type=AssetType.EQUITY,
            quantity=Decimal(1000),
            average_price=Decimal("2655.0"),
            last_price=None,
        )
    ]

    def fake(self) -> DhanFake:
        return DhanFake()

    def adapter(self, base_url: str, limiter: BrokerLimiter) -> DhanBroker:
        return DhanBroker(base_url=f"{base_url}/v2", limiter=limiter)


@dataclass
class Dhan:
    fake: DhanFake
    adapter: DhanBroker

    async def fetch(self, credentials: Mapping[str, str] = CREDENTIALS) -> list[Holding]:
        return list(await fetch_holdings(self.adapter, AccountContext(uuid.uuid4(), dict(credentials))))

    def answer(self, status: int, body: object) -> None:
        self.fake.answer = (status, json.dumps(body).encode())


async def _connect(fake: DhanFake) -> AsyncIterator[Dhan]:
    async with serve_fake(fake) as base_url:
        adapter = DhanBroker(
            base_url=f"{base_url}/v2", limiter=BrokerLimiter(BrokerLimits(rate_per_s=1000, burst=1000))
        )
        try:
            yield Dhan(fake, adapter)
        finally:
            await adapter.aclose()


@pytest.fixture
async def dhan() -> AsyncIterator[Dhan]:
    async for connected in _connect(DhanFake()):
        yield connected


@pytest.fixture
async def varied() -> AsyncIterator[Dhan]:
    async for connected in _connect(DhanFake(holdings="holdings_varied.json")):
        yield connected


def _error(code: str, error_type: str = "", message: str = "") -> dict[str, str]:
    """Dhan's documented error body (docs/v2, "Errors")."""
    return {"errorType": error_type, "errorCode": code, "errorMessage": message}


# --- the request -----------------------------------------------------------------------------------


async def test_the_request_is_the_documented_get_with_only_the_documented_headers(dhan: Dhan) -> None:
    await dhan.fetch({"access_token": ACCESS_TOKEN, "client_id": "1000000009"})
    [request] = dhan.fake.seen
    assert (request.method, request.url.path) == ("GET", "/v2/holdings")
    assert request.headers.getlist("access-token") == [ACCESS_TOKEN]
    assert request.headers.getlist("content-type") == ["application/json"]
    # Not Bearer auth, and the documented holdings request carries no client id.
    assert "authorization" not in request.headers
    assert "client-id" not in request.headers


async def test_no_access_token_is_an_auth_failure_naming_the_key_and_nothing_is_sent(dhan: Dhan) -> None:
    with pytest.raises(AuthRejected, match="'access_token'") as caught:
        await dhan.fetch({"client_id": "1000000009"})
    assert "1000000009" not in str(caught.value)
    assert dhan.fake.requests_seen == 0


async def test_a_token_dhan_does_not_know_is_an_auth_failure(dhan: Dhan) -> None:
    with pytest.raises(AuthRejected, match="DH-901"):
        await dhan.fetch({"access_token": "eyJhbGciOiJIUzUxMiJ9.expired.token"})


def test_it_registers_dhans_production_url_and_documented_limits() -> None:
    found = plugin(CODE)
    assert found.base_url == BASE_URL == "https://api.dhan.co/v2"
    assert found.limits == LIMITS
    assert found.limits.rate_per_s == 20  # "Non Trading APIs: 20 per second"


# --- the payload -----------------------------------------------------------------------------------


async def test_the_varied_payload_is_normalised_with_unknown_fields_tolerated(varied: Dhan) -> None:
    holdings = {h.symbol: h for h in await varied.fetch()}
    assert holdings == {
        "RELIANCE": Holding(
            symbol="RELIANCE",
            exchange="NSE",
            isin="INE002A01018",
            currency="INR",
            asset_type=AssetType.EQUITY,
            quantity=Decimal(12),
            average_price=Decimal("1234.5678"),
            last_price=Decimal("1301.05"),
        ),
        "SBIN": Holding(
            symbol="SBIN",
            exchange="BSE",
            isin="INE062A01020",
            currency="INR",
            asset_type=AssetType.EQUITY,
            quantity=Decimal(5),  # totalQty: collateral and T1 are part of it
            average_price=Decimal("801.10"),
            last_price=Decimal(812),
        ),
        "NIFTYBEES": Holding(
            symbol="NIFTYBEES",
            exchange="NSE",
            isin="INF204KB14I2",
            currency="INR",
            asset_type=AssetType.ETF,
            quantity=Decimal(100),
            average_price=Decimal("262.35"),
            last_price=Decimal("270.00"),
        ),
        "SGBDE31III": Holding(
            symbol="SGBDE31III",
            exchange="BSE",
            isin="IN0020230184",
            currency="INR",
            asset_type=AssetType.BOND,
            quantity=Decimal(4),
            average_price=Decimal(6149),
            last_price=None,  # no lastTradedPrice in the row
        ),
    }  # INFY (totalQty 0) is not held, so not reported


async def test_prices_keep_every_digit_dhan_sent(varied: Dhan) -> None:
    holdings = {h.symbol: h for h in await varied.fetch()}
    # Compared as text: Decimal equality would let 801.1 pass for 801.10, a float would turn
    # 1234.5678 into 1234.5677999999999...
    assert str(holdings["RELIANCE"].average_price) == "1234.5678"
    assert str(holdings["SBIN"].average_price) == "801.10"
    assert str(holdings["NIFTYBEES"].last_price) == "270.00"


async def test_a_holding_on_both_exchanges_is_reported_on_nse(dhan: Dhan) -> None:
    dhan.answer(200, [{**json.loads(dhan.fake.holdings)[0], "exchange": "ALL"}])
    [holding] = await dhan.fetch()
    assert holding.exchange == "NSE"


@pytest.mark.parametrize("status", [200, 400, 404, 500])
async def test_dhans_no_holdings_answer_is_an_empty_account(dhan: Dhan, status: int) -> None:
    dhan.fake.answer = (status, sample("error_no_holdings.json"))
    assert await dhan.fetch() == []


async def test_an_empty_list_is_an_empty_account(dhan: Dhan) -> None:
    dhan.answer(200, [])
    assert await dhan.fetch() == []


_SAMPLE_ROW = {
    "exchange": "ALL",
    "tradingSymbol": "HDFC",
    "securityId": "1330",
    "isin": "INE001A01036",
    "totalQty": 1000,
    "dpQty": 1000,
    "t1Qty": 0,
    "availableQty": 1000,
    "collateralQty": 0,
    "avgCostPrice": 2655.0,
}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param({"data": [_SAMPLE_ROW]}, "list", id="an object instead of the array"),
        pytest.param([{**_SAMPLE_ROW, "totalQty": "1000"}], "totalQty", id="quantity as a string"),
        pytest.param([{**_SAMPLE_ROW, "totalQty": 1000.5}], "totalQty", id="fractional quantity"),
        pytest.param([{**_SAMPLE_ROW, "totalQty": -1}], "totalQty", id="negative quantity"),
        pytest.param([{**_SAMPLE_ROW, "avgCostPrice": None}], "avgCostPrice", id="null price"),
        pytest.param([{**_SAMPLE_ROW, "avgCostPrice": True}], "avgCostPrice", id="boolean price"),
        pytest.param([{**_SAMPLE_ROW, "lastTradedPrice": "2700"}], "lastTradedPrice", id="price as string"),
        pytest.param([{**_SAMPLE_ROW, "exchange": "NASDAQ"}], "exchange", id="unknown exchange"),
        pytest.param([{**_SAMPLE_ROW, "isin": "HDFC"}], "isin", id="not an ISIN"),
        pytest.param(
            [{k: v for k, v in _SAMPLE_ROW.items() if k != "tradingSymbol"}], "tradingSymbol", id="no symbol"
        ),
        pytest.param([_SAMPLE_ROW, {**_SAMPLE_ROW, "exchange": "NSE"}], "twice", id="same instrument twice"),
    ],
)
async def test_a_payload_off_the_documented_schema_is_invalid_with_a_reason(
    dhan: Dhan, body: object, reason: str
) -> None:
    dhan.answer(200, body)
    with pytest.raises(InvalidResponse, match=reason):
        await dhan.fetch()


async def test_a_price_finer_than_a_holding_keeps_is_invalid_not_rounded(dhan: Dhan) -> None:
    dhan.fake.answer = (200, dhan.fake.holdings.replace(b"2655.0", b"2655.1234567890123456789"))
    with pytest.raises(InvalidResponse, match="average_price"):
        await dhan.fetch()


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html>", b'[{"avgCostPrice": NaN}]', b""],
    ids=["html", "NaN", "empty"],
)
async def test_a_200_that_is_not_strict_json_is_invalid(dhan: Dhan, body: bytes) -> None:
    dhan.fake.answer = (200, body)
    with pytest.raises(InvalidResponse, match="not JSON"):
        await dhan.fetch()


# --- Dhan's error codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("DH-901", AuthRejected),
        ("DH-902", AuthRejected),
        ("DH-903", AuthRejected),
        ("DH-904", RateLimited),
        ("DH-905", InvalidResponse),
        ("DH-906", InvalidResponse),
        ("DH-907", TransientBrokerError),
        ("DH-908", TransientBrokerError),
        ("DH-909", TransientBrokerError),
        ("DH-910", TransientBrokerError),
    ],
)
@pytest.mark.parametrize("status", [400, 500, 200])
async def test_each_documented_error_code_decides_the_failure_whatever_the_status(
    dhan: Dhan, code: str, kind: type[BrokerError], status: int
) -> None:
    dhan.answer(status, _error(code, "Some_Type", "what Dhan says"))
    with pytest.raises(BrokerError) as caught:
        await dhan.fetch()
    assert type(caught.value) is kind
    assert code in str(caught.value)
    assert "what Dhan says" in str(caught.value)


@pytest.mark.parametrize("status", [400, 200])
async def test_an_undocumented_error_code_outside_a_server_error_is_invalid(dhan: Dhan, status: int) -> None:
    dhan.answer(status, _error("DH-999", "Some_Type", "what Dhan says"))
    with pytest.raises(InvalidResponse, match="DH-999"):
        await dhan.fetch()


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_an_undocumented_error_code_under_a_5xx_is_transient(dhan: Dhan, status: int) -> None:
    """https://dhanhq.co/docs/v2/annexure lists DH-901 ... DH-910 only; a code outside it under a 5xx
    is Dhan's server failing in a way it has not documented (DH-908 "Internal Server Error" is its
    documented twin), which a retry can cure, not a disagreement about the API."""
    dhan.fake.scenario = Scenario.SERVER_ERROR
    dhan.fake.server_error_status = status
    dhan.fake.server_error_body = sample("error_undocumented_server.json")
    with pytest.raises(TransientBrokerError, match="DH-911"):
        await dhan.fetch()


async def test_a_rate_limit_answer_carries_retry_after_when_dhan_sends_one(dhan: Dhan) -> None:
    dhan.fake.scenario = Scenario.RATE_LIMITED
    with pytest.raises(RateLimited) as without:
        await dhan.fetch()
    assert without.value.retry_after_s is None  # Dhan documents no Retry-After
    dhan.fake.retry_after = "7"
    with pytest.raises(RateLimited) as with_header:
        await dhan.fetch()
    assert with_header.value.retry_after_s == 7.0


@pytest.mark.parametrize(
    ("status", "kind"), [(401, AuthRejected), (403, AuthRejected), (404, InvalidResponse)]
)
async def test_a_refusal_without_dhans_error_body_is_decided_by_the_status(
    dhan: Dhan, status: int, kind: type[BrokerError]
) -> None:
    dhan.fake.answer = (status, b"<html>denied</html>")
    with pytest.raises(BrokerError) as caught:
        await dhan.fetch()
    assert type(caught.value) is kind


@pytest.mark.parametrize(("status", "kind"), [(429, RateLimited), (502, TransientBrokerError)])
async def test_429_and_5xx_without_dhans_error_body_are_left_to_the_common_mapping(
    dhan: Dhan, status: int, kind: type[BrokerError]
) -> None:
    dhan.fake.answer = (status, b"upstream unavailable")
    with pytest.raises(BrokerError) as caught:
        await dhan.fetch()
    assert type(caught.value) is kind


async def test_a_token_echoed_in_dhans_error_message_is_blanked_out(dhan: Dhan) -> None:
    dhan.answer(400, _error("DH-901", "Invalid_Authentication", f"token {ACCESS_TOKEN} is expired"))
    with pytest.raises(AuthRejected) as caught:
        await dhan.fetch()
    assert ACCESS_TOKEN not in str(caught.value)
    assert "token *** is expired" in str(caught.value)
