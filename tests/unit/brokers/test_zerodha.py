"""Zerodha Kite Connect v3 adapter against the fake Kite API (tests/fakes/zerodha.py), over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAdapter,
    InvalidResponse,
    fetch_holdings,
)
from services.fetcher.brokers.zerodha import ZerodhaKite
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.registry import create_adapter, plugin
from services.fetcher.testing import BrokerConformance, FakeBroker, serve_fake
from shared.events import AssetType, Holding
from shared.settings import Settings
from tests.fakes.zerodha import ACCESS_TOKEN, API_KEY, ZerodhaFake

CREDENTIALS = {"api_key": API_KEY, "access_token": ACCESS_TOKEN}

# What tests/fakes/data/zerodha/holdings.json must become, worked out by hand from the sample:
# quantity = quantity + t1_quantity (RELIANCE 0 + 2, SBIN 11 + 7, BHEL 11 + 1, WIPRO 0 + 4),
# INF... ISINs are ETFs, every exchange is NSE or BSE and so INR.
# (symbol, exchange, isin, asset type, quantity, average price, last price)
_SAMPLE = [
    ("AXTEL", "BSE", "INE767C01012", AssetType.EQUITY, "1", "261.5", "313"),
    ("BHEL", "BSE", "INE257A01026", AssetType.EQUITY, "12", "56.35", "75.85"),
    ("GOLDBEES", "BSE", "INF204KB17I5", AssetType.ETF, "2", "40.67", "42.47"),
    ("IDEA", "NSE", "INE669E01016", AssetType.EQUITY, "5", "8.466", "10"),
    ("IRFC", "BSE", "INE053F01010", AssetType.EQUITY, "5", "24.39", "24.8"),
    ("JPPOWER", "NSE", "INE351F01018", AssetType.EQUITY, "6", "3.216667", "3.9"),
    ("KUSHAL", "BSE", "INE647N01021", AssetType.EQUITY, "7", "5.441429", "5.18"),
    ("L&TFH", "BSE", "INE498L01015", AssetType.EQUITY, "1", "101.5", "96.7"),
    ("NIFTYBEES", "NSE", "INF204KB14I2", AssetType.ETF, "1", "156.07", "168.54"),
    ("RBLBANK", "BSE", "INE976G01028", AssetType.EQUITY, "1", "226.3", "216.3"),
    ("RCOM", "BSE", "INE330H01018", AssetType.EQUITY, "10", "0.811", "3.24"),
    ("RELIANCE", "NSE", "INE002A01018", AssetType.EQUITY, "2", "2206.5", "2214"),
    ("RJKMRFR", "BSE", "INE013J01016", AssetType.EQUITY, "1", "45.9", "53.9"),
    ("SAIL", "NSE", "INE114A01011", AssetType.EQUITY, "5", "97.35", "121.55"),
    ("SBIN", "BSE", "INE062A01020", AssetType.EQUITY, "18", "429", "426.9"),
    ("URJAGLOBA", "BSE", "INE550C01020", AssetType.EQUITY, "6", "5.708333", "7.45"),
    ("VEDL", "NSE", "INE205A01025", AssetType.EQUITY, "1", "132.7", "273.2"),
    ("WIPRO", "BSE", "INE075A01022", AssetType.EQUITY, "4", "549.6", "550.85"),
    ("WONDERLA", "NSE", "INE066O01014", AssetType.EQUITY, "2", "189.075", "210.5"),
]
EXPECTED = [
    Holding(
        symbol=symbol,
        exchange=exchange,
        isin=isin,
        currency="INR",
        asset_type=asset_type,
        quantity=Decimal(quantity),
        average_price=Decimal(average),
        last_price=Decimal(last),
    )
    for symbol, exchange, isin, asset_type, quantity, average, last in _SAMPLE
]


def _limiter() -> BrokerLimiter:
    return BrokerLimiter(BrokerLimits(rate_per_s=1000, burst=1000))


class TestZerodhaConformance(BrokerConformance):
    credentials = CREDENTIALS
    expected = EXPECTED

    def fake(self) -> FakeBroker:
        return ZerodhaFake()

    def adapter(self, base_url: str, limiter: BrokerLimiter) -> BrokerAdapter:
        return ZerodhaKite(base_url=base_url, limiter=limiter)


@asynccontextmanager
async def _running(fake: ZerodhaFake) -> AsyncIterator[ZerodhaKite]:
    async with serve_fake(fake) as base_url:
        adapter = ZerodhaKite(base_url=base_url, limiter=_limiter())
        try:
            yield adapter
        finally:
            await adapter.aclose()


async def _fetch(fake: ZerodhaFake, credentials: dict[str, str] = CREDENTIALS) -> dict[str, Holding]:
    async with _running(fake) as adapter:
        holdings = await fetch_holdings(adapter, AccountContext(uuid.uuid4(), credentials))
    by_symbol = {h.symbol: h for h in holdings}
    assert len(by_symbol) == len(holdings)
    return by_symbol


def _entry(fake: ZerodhaFake, symbol: str) -> dict[str, Any]:
    return next(e for e in fake.holdings_body["data"] if e["tradingsymbol"] == symbol)


async def test_the_session_goes_only_in_the_documented_headers() -> None:
    fake = ZerodhaFake()
    await _fetch(fake)
    assert [(seen.method, seen.path, seen.query) for seen in fake.seen] == [
        ("GET", "/portfolio/holdings", "")
    ]
    headers = fake.seen[0].headers
    assert headers["authorization"] == f"token {API_KEY}:{ACCESS_TOKEN}"
    assert headers["x-kite-version"] == "3"
    # v2 sent api_key and access_token as query parameters; v3 has them in Authorization only.
    others = {name: value for name, value in headers.items() if name != "authorization"}
    assert not [name for name, value in others.items() if API_KEY in value or ACCESS_TOKEN in value]


async def test_t1_quantities_belong_to_the_holding() -> None:
    holdings = await _fetch(ZerodhaFake())
    # quantity + t1_quantity: what the sample's pnl is computed on (SBIN: 18 x (426.9 - 429) = -37.8)
    assert holdings["SBIN"].quantity == Decimal(18)
    assert holdings["RELIANCE"].quantity == Decimal(2)
    assert holdings["WIPRO"].quantity == Decimal(4)


async def test_mtf_shares_join_the_holding_at_the_weighted_average_price() -> None:
    holdings = await _fetch(ZerodhaFake(sample="holdings_mtf.json"))
    assert list(holdings) == ["AARON"]
    aaron = holdings["AARON"]
    assert aaron.quantity == Decimal(1001)  # 1 delivery + 1000 MTF
    assert aaron.average_price == Decimal("100.06093906")  # (1 x 161 + 1000 x 100) / 1001, 8 places
    assert aaron.last_price == Decimal("352.95")
    assert (aaron.exchange, aaron.isin, aaron.currency) == ("NSE", "INE721Z01010", "INR")


async def test_an_empty_mtf_part_leaves_the_delivery_average_alone() -> None:
    fake = ZerodhaFake()
    _entry(fake, "IDEA")["mtf"] = {
        "quantity": 0,
        "used_quantity": 0,
        "average_price": 0,
        "value": 0,
        "initial_margin": 0,
    }
    holdings = await _fetch(fake)
    assert holdings["IDEA"].quantity == Decimal(5)
    assert holdings["IDEA"].average_price == Decimal("8.466")


async def test_an_instrument_with_nothing_left_is_not_a_holding() -> None:
    fake = ZerodhaFake()
    _entry(fake, "RELIANCE")["t1_quantity"] = 0  # quantity is 0 already
    holdings = await _fetch(fake)
    assert "RELIANCE" not in holdings
    assert len(holdings) == len(EXPECTED) - 1


async def test_fields_the_docs_do_not_name_are_tolerated() -> None:
    fake = ZerodhaFake(sample="holdings_mtf.json")
    fake.holdings_body["meta"] = {"request_id": "abc"}
    aaron = fake.holdings_body["data"][0]
    aaron["pledge"] = {"quantity": 3, "status": "pending"}
    aaron["mtf"]["interest"] = Decimal("12.5")
    holdings = await _fetch(fake)
    assert holdings["AARON"].quantity == Decimal(1001)

    fake = ZerodhaFake()
    for entry in fake.holdings_body["data"]:
        entry["new_field"] = [1, "two", None]
    # repr: the very digits of each Decimal, not only equal values.
    assert sorted(map(repr, (await _fetch(fake)).values())) == sorted(map(repr, EXPECTED))


async def test_prices_keep_every_digit_of_the_json_text() -> None:
    fake = ZerodhaFake()
    _entry(fake, "GOLDBEES")["average_price"] = Decimal("1234.5678")
    # 20 significant digits: a float keeps about 17, so a detour through float would change it.
    _entry(fake, "GOLDBEES")["last_price"] = Decimal("123456789012.12345678")
    goldbees = (await _fetch(fake))["GOLDBEES"]
    assert str(goldbees.average_price) == "1234.5678"
    assert str(goldbees.last_price) == "123456789012.12345678"


async def test_float_noise_beyond_eight_places_is_rounded_off() -> None:
    fake = ZerodhaFake()
    _entry(fake, "IRFC")["average_price"] = Decimal("3.5999999999999943")  # as the docs' pnl shows
    assert (await _fetch(fake))["IRFC"].average_price == Decimal("3.60000000")


@pytest.mark.parametrize("missing", ["api_key", "access_token"])
async def test_a_missing_credential_is_rejected_by_name_before_any_request(missing: str) -> None:
    fake = ZerodhaFake()
    credentials = {key: value for key, value in CREDENTIALS.items() if key != missing}
    with pytest.raises(AuthRejected, match=missing) as caught:
        await _fetch(fake, credentials)
    assert fake.requests_seen == 0
    for value in CREDENTIALS.values():
        assert value not in str(caught.value)


async def test_a_credential_that_cannot_go_in_a_header_is_rejected() -> None:
    fake = ZerodhaFake()
    with pytest.raises(AuthRejected, match="access_token"):
        await _fetch(fake, {"api_key": API_KEY, "access_token": "abc\r\nX-Injected: 1"})
    assert fake.requests_seen == 0


async def test_wrong_credentials_get_kites_token_exception() -> None:
    with pytest.raises(AuthRejected, match="HTTP 403 TokenException"):
        await _fetch(ZerodhaFake(), {"api_key": API_KEY, "access_token": "expired-token"})


async def test_a_broker_message_echoing_a_credential_is_redacted() -> None:
    fake = ZerodhaFake()
    fake.token_error_body["message"] = f"Token {ACCESS_TOKEN} for {API_KEY} has expired"
    fake.token_error_body["error_type"] = "TokenException"
    fake.access_token = "the-token-kite-expects-now"
    with pytest.raises(AuthRejected) as caught:
        await _fetch(fake)
    message = str(caught.value)
    assert "has expired" in message
    assert ACCESS_TOKEN not in message
    assert API_KEY not in message


def _set(symbol: str, field: str, value: Any) -> Callable[[ZerodhaFake], None]:
    def edit(fake: ZerodhaFake) -> None:
        _entry(fake, symbol)[field] = value

    return edit


def _drop(symbol: str, field: str) -> Callable[[ZerodhaFake], None]:
    def edit(fake: ZerodhaFake) -> None:
        del _entry(fake, symbol)[field]

    return edit


def _body(body: Any) -> Callable[[ZerodhaFake], None]:
    def edit(fake: ZerodhaFake) -> None:
        fake.holdings_body = body

    return edit


def _duplicate(symbol: str) -> Callable[[ZerodhaFake], None]:
    def edit(fake: ZerodhaFake) -> None:
        fake.holdings_body["data"].append(dict(_entry(fake, symbol)))

    return edit


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        pytest.param(_body({"status": "success"}), "data", id="no-data"),
        pytest.param(_body({"status": "success", "data": {}}), "data", id="data-not-a-list"),
        pytest.param(_body({"status": "ok", "data": []}), "status", id="unknown-status"),
        pytest.param(_body([]), "body", id="not-an-object"),
        pytest.param(_drop("SBIN", "t1_quantity"), "t1_quantity", id="no-t1-quantity"),
        pytest.param(_drop("SBIN", "last_price"), "last_price", id="no-last-price"),
        pytest.param(_set("SBIN", "quantity", Decimal("2.5")), "quantity", id="fractional-quantity"),
        pytest.param(_set("SBIN", "quantity", True), "quantity", id="boolean-quantity"),
        pytest.param(_set("SBIN", "average_price", "429"), "average_price", id="price-as-string"),
        pytest.param(_set("SBIN", "last_price", Decimal("-1")), "last_price", id="negative-price"),
        pytest.param(_set("SBIN", "tradingsymbol", ""), "tradingsymbol", id="empty-symbol"),
        pytest.param(_set("SBIN", "isin", "INE062A0102099"), "SBIN", id="isin-too-long"),
        pytest.param(_set("SBIN", "mtf", {"quantity": "5", "average_price": 1}), "mtf", id="mtf-string"),
        pytest.param(_set("SBIN", "exchange", "NFO"), "NFO", id="undocumented-exchange"),
        pytest.param(_duplicate("SBIN"), "listed twice", id="same-instrument-twice"),
    ],
)
async def test_a_payload_off_the_documented_schema_is_invalid(
    edit: Callable[[ZerodhaFake], None], reason: str
) -> None:
    fake = ZerodhaFake()
    edit(fake)
    with pytest.raises(InvalidResponse, match=reason):
        await _fetch(fake)


def test_registered_with_the_documented_base_url_and_limits() -> None:
    registered = plugin("zerodha")
    assert registered.base_url == "https://api.kite.trade"
    assert (registered.limits.rate_per_s, registered.limits.burst) == (10, 1)


async def test_the_registered_factory_calls_the_configured_base_url() -> None:
    fake = ZerodhaFake()
    async with serve_fake(fake) as base_url:
        adapter, limiter = create_adapter("zerodha", Settings(broker_base_urls={"zerodha": base_url}))
        try:
            holdings = await fetch_holdings(adapter, AccountContext(uuid.uuid4(), CREDENTIALS))
        finally:
            await adapter.aclose()
    assert len(holdings) == len(EXPECTED)
    assert fake.requests_seen == 1
    assert limiter.limits.rate_per_s == 10
