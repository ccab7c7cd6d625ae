from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.consolidation import Position
from tests.support.accounts import give_current_positions

EARLIER = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 5, 1, 15, 30, tzinfo=UTC)


def _position(
    account_id: str,
    symbol: str,
    quantity: str,
    average_price: str,
    last_price: str | None,
    *,
    exchange: str = "NSE",
    currency: str = "INR",
    as_of: datetime = EARLIER,
    isin: str | None = None,
) -> Position:
    return Position(
        account_id=uuid.UUID(account_id),
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


async def _new_account(client: httpx.AsyncClient, headers: dict[str, str], portfolio_id: str) -> str:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "sim", "label": "more"},
        headers=headers,
    )
    assert response.status_code == 201
    return str(response.json()["id"])


@pytest.mark.asyncio
async def test_account_holdings_are_its_positions_with_decimals_as_strings(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await give_current_positions(
        sessions,
        [
            _position(account_id, "TCS", "10", "3500.25", "3600.5", isin="INE467B01029"),
            _position(account_id, "INFY", "0.5", "1400", None),
        ],
    )

    response = await client.get(f"/v1/accounts/{account_id}/holdings", headers=alice)

    assert response.status_code == 200
    infy, tcs = response.json()
    assert tcs == {
        "symbol": "TCS",
        "exchange": "NSE",
        "isin": "INE467B01029",
        "currency": "INR",
        "asset_type": "equity",
        "quantity": "10",
        "average_price": "3500.25",
        "last_price": "3600.5",
        "market_value": "36005",
        "as_of": tcs["as_of"],
    }
    assert datetime.fromisoformat(tcs["as_of"]) == EARLIER
    assert infy["quantity"] == "0.5"
    assert infy["average_price"] == "1400"
    assert infy["last_price"] is None
    assert infy["market_value"] is None


@pytest.mark.asyncio
async def test_an_account_without_positions_has_empty_holdings(
    client: httpx.AsyncClient, alice: dict[str, str], account_id: str
) -> None:
    response = await client.get(f"/v1/accounts/{account_id}/holdings", headers=alice)

    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.asyncio
async def test_portfolio_holdings_consolidate_its_accounts_only(
    client: httpx.AsyncClient,
    alice: dict[str, str],
    portfolio_id: str,
    account_id: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    second = await _new_account(client, alice, portfolio_id)
    third = await _new_account(client, alice, portfolio_id)
    elsewhere = await client.post("/v1/portfolios", json={"name": "Elsewhere"}, headers=alice)
    outsider = await _new_account(client, alice, elsewhere.json()["id"])
    await give_current_positions(
        sessions,
        [
            _position(account_id, "TCS", "10", "100", "130", as_of=EARLIER),
            _position(second, "TCS", "30", "120", "140", as_of=LATER, isin="INE467B01029"),
            _position(second, "AAPL", "2", "150", None, exchange="NASDAQ", currency="USD"),
            # Same symbol and exchange, other currency: another line.
            _position(third, "TCS", "1", "1.5", "1.6", currency="USD"),
            _position(outsider, "TCS", "1000", "1", "1"),
        ],
    )

    response = await client.get(f"/v1/portfolios/{portfolio_id}/holdings", headers=alice)

    assert response.status_code == 200
    lines = {(h["symbol"], h["exchange"], h["currency"]): h for h in response.json()}
    assert set(lines) == {("TCS", "NSE", "INR"), ("TCS", "NSE", "USD"), ("AAPL", "NASDAQ", "USD")}
    tcs = lines["TCS", "NSE", "INR"]
    assert tcs["quantity"] == "40"
    assert tcs["average_price"] == "115"  # (10 x 100 + 30 x 120) / 40
    assert tcs["last_price"] == "140"  # the later quote
    assert tcs["market_value"] == "5600"
    assert tcs["isin"] == "INE467B01029"
    assert sorted((a["account_id"], a["quantity"]) for a in tcs["accounts"]) == sorted(
        [(account_id, "10"), (second, "30")]
    )
    assert lines["TCS", "NSE", "USD"]["quantity"] == "1"
    assert [a["account_id"] for a in lines["TCS", "NSE", "USD"]["accounts"]] == [third]
    aapl = lines["AAPL", "NASDAQ", "USD"]
    assert (aapl["quantity"], aapl["average_price"], aapl["last_price"], aapl["market_value"]) == (
        "2",
        "150",
        None,
        None,
    )
    assert outsider not in {a["account_id"] for h in response.json() for a in h["accounts"]}
