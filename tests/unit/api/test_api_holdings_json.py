"""The holdings routes encode their lines straight to JSON (services/api/holdings_json.py): the
bytes must be those the response models give, as FastAPI serialises them."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import TypeAdapter

from services.api import holdings_json
from services.api.consolidation import Position, consolidate
from services.api.schemas import ConsolidatedHoldingOut, PositionOut, decimal_text
from shared.numeric import EXACT

FIRST = uuid.UUID("00000000-0000-4000-8000-000000000001")
SECOND = uuid.UUID("ffffffff-0000-4000-8000-000000000002")
NOON = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _position(
    symbol: str,
    quantity: str,
    average_price: str,
    last_price: str | None,
    *,
    account: uuid.UUID = FIRST,
    as_of: datetime = NOON,
    isin: str | None = None,
    exchange: str = "NSE",
    currency: str = "INR",
) -> Position:
    return Position(
        account_id=account,
        symbol=symbol,
        exchange=exchange,
        isin=isin,
        currency=currency,
        asset_type="equity",
        quantity=Decimal(quantity),
        average_price=Decimal(average_price),
        last_price=None if last_price is None else Decimal(last_price),
        as_of=as_of,
    )


PAYLOADS = {
    "nothing": [],
    "decimals": [
        _position("INFY", "10.00000000", "1450.50000000", "1500.25000000", isin="INE009A01021"),
        _position("BIG", "123456789012.12345678", "0.00000001", "99999999.99999999"),
        _position("HUNDRED", "1E+2", "1E+2", "0E-8"),
        _position("SHORT", "-5", "110", "-0.1"),
        _position("FLAT", "0", "0.00000000", "12"),
    ],
    "nulls": [
        _position("NOPRICE", "3", "7.5", None),
        _position("NOISIN", "1", "1", "1", isin=None, exchange=""),
    ],
    "as of": [
        _position("MICRO", "1", "2", "3", as_of=datetime(2026, 1, 31, 15, 30, 0, 120000, tzinfo=UTC)),
        _position(
            "ZONED",
            "1",
            "2",
            "3",
            as_of=datetime(2026, 1, 31, 21, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        _position("OLD", "1", "2", "3", as_of=datetime(1900, 1, 1, tzinfo=UTC)),
    ],
    "text": [
        _position('Q"UOTE\\', "1", "2", "3", exchange="Börse", currency="€UR"),
        _position("TAB\tNL\n\x01\x7f\u2028", "1", "2", None, isin="日本"),
    ],
    "two accounts": [
        _position("INFY", "10", "1450.5", "1500", account=SECOND, as_of=NOON),
        _position("INFY", "-4", "1400", "1510.5", account=FIRST, as_of=NOON - timedelta(hours=1)),
        _position("INFY", "2", "1300", "1499", account=FIRST, as_of=NOON, currency="USD"),
        _position("TCS", "0", "10", "20", account=SECOND),
        _position("TCS", "0", "10", None, account=FIRST),
        _position("AAPL", "1", "150.12345678", "180", account=SECOND, exchange="NASDAQ", currency="USD"),
    ],
}


@pytest.mark.parametrize("positions", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_an_account_s_holdings_are_the_bytes_the_models_give(positions: list[Position]) -> None:
    models = [PositionOut.of(p, as_of=p.as_of) for p in positions]

    expected = TypeAdapter(list[PositionOut]).dump_json(models)

    assert holdings_json.account_holdings(positions).body == expected


@pytest.mark.parametrize("positions", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_a_portfolio_s_holdings_are_the_bytes_the_models_give(positions: list[Position]) -> None:
    holdings = consolidate(positions)
    models = [ConsolidatedHoldingOut.model_validate(h) for h in holdings]

    expected = TypeAdapter(list[ConsolidatedHoldingOut]).dump_json(models)

    assert holdings_json.portfolio_holdings(holdings).body == expected


def test_the_response_is_json() -> None:
    response = holdings_json.account_holdings(PAYLOADS["decimals"])

    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.body))


def _plain(value: Decimal) -> str:
    """The rule decimal_text follows, spelt the slow way."""
    return "0" if value.is_zero() else format(value.normalize(EXACT), "f")


def test_decimal_text_is_plain_notation_without_trailing_zeros() -> None:
    rng = random.Random(13)
    values = [Decimal(t) for t in ("0", "-0", "0E-8", "-0.00", "1E+2", "1E-7", "100.00000000", "-5.50")]
    values += [Decimal(rng.randint(-(10**20), 10**20)).scaleb(-rng.randint(-4, 12)) for _ in range(5000)]
    values += [EXACT.multiply(a, b) for a, b in zip(values[8:100], values[100:192], strict=True)]

    assert [decimal_text(v) for v in values] == [_plain(v) for v in values]


def test_decimal_text_keeps_every_digit() -> None:
    product = EXACT.multiply(Decimal("0.000000123456789012345678"), Decimal("0.123456789012345678"))
    big = EXACT.multiply(Decimal("1E+20"), Decimal("12345678901234567890.123456789012345678"))

    assert decimal_text(product) == "0.000000015241578753238836527968299765279684"
    assert decimal_text(big) == "1234567890123456789012345678901234567800"
